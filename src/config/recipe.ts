// Recipe: what goes into an airgap bundle. Owned by the bundle work (src/bundle/); the config model
// includes it in the document union. Placeholder until the bundle issue fills in its fields.
import { z } from 'zod';

export const RecipeSpecSchema = z.object({}).passthrough();
export type RecipeSpec = z.infer<typeof RecipeSpecSchema>;
