// The document kinds of one apiVersion, as one union: validation, TypeScript types and the JSON Schema.

import { z } from 'zod';
import { strictObject } from './fields.js';
import { FleetJsonSchemaSource, FleetSchema } from './fleet.js';
import { HubSchema } from './hub.js';
import { RecipeSpecSchema } from './recipe.js';
import { API_VERSION, K8sNameSchema, SiteSchema, SiteSpecDefaultsSchema } from './site.js';

export const RecipeSchema = strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Recipe'),
  metadata: strictObject({ name: K8sNameSchema }),
  spec: RecipeSpecSchema,
}).meta({ description: 'What goes into an airgap bundle (k3s, FSM chart, features, architectures)' });

export type Recipe = z.infer<typeof RecipeSchema>;

export const KIND_SCHEMAS = {
  Site: SiteSchema,
  Fleet: FleetSchema,
  Hub: HubSchema,
  Recipe: RecipeSchema,
} as const;

export type Kind = keyof typeof KIND_SCHEMAS;
export const KINDS = Object.keys(KIND_SCHEMAS) as Kind[];

export type ConfigDocument =
  | z.infer<typeof SiteSchema>
  | z.infer<typeof FleetSchema>
  | z.infer<typeof HubSchema>
  | z.infer<typeof RecipeSchema>;

/** JSON Schema (draft-07) for every kind: `oneOf` with `kind` as the discriminator, for yaml-language-server. */
export function configJsonSchema(): Record<string, unknown> {
  // A Site file may be a Fleet member whose defaults supply ssh, hub.ref, …; so for editors every spec field
  // is optional (types, enums and unknown keys are still checked). `config validate` checks completeness.
  const site = strictObject({
    apiVersion: SiteSchema.shape.apiVersion,
    kind: SiteSchema.shape.kind,
    metadata: SiteSchema.shape.metadata,
    spec: SiteSpecDefaultsSchema,
  }).meta({ description: `${SiteSchema.meta()?.description ?? 'Site'}. Fields a Fleet's defaults supply may be left out.` });
  const union = z.discriminatedUnion('kind', [site, FleetJsonSchemaSource, HubSchema, RecipeSchema]);
  const schema = z.toJSONSchema(union, { target: 'draft-7', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    $schema: schema.$schema,
    $id: 'https://edge.flomesh.io/schemas/v1alpha1/fsm-edge.json',
    title: `fsm-edge configuration (${API_VERSION})`,
    description: 'Site, Fleet, Hub and Recipe documents for fsm-edge. Several documents may share a file, separated by ---.',
    ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== '$schema')),
  };
}
