// `kind: Fleet` — many POPs: shared defaults, the sites (inline or by file glob) and a rollout policy.

import { z } from 'zod';
import { strictObject } from './fields.js';
import { API_VERSION, K8sNameSchema, MetadataSchema, SiteSpecDefaultsSchema } from './site.js';

export const SiteFileRefSchema = strictObject({
  file: z
    .string()
    .min(1)
    .meta({ description: 'Glob of Site files, relative to this Fleet file (e.g. sites/*.yaml); must match at least one file' }),
});

/** An inline site: a Site document whose apiVersion and kind may be left out. */
export const InlineSiteSchema = strictObject({
  apiVersion: z.literal(API_VERSION).optional(),
  kind: z.literal('Site').optional(),
  metadata: MetadataSchema,
  // Checked in full after the fleet's defaults are merged in; here only its shape must be a mapping.
  spec: z.record(z.string(), z.unknown()).meta({ description: 'Site spec; merged over the fleet defaults' }),
});

export const RolloutSchema = strictObject({
  parallel: z.int().min(1).max(256).default(4).meta({ description: 'POPs installed at the same time' }),
  maxFailures: z.int().min(0).default(0).meta({ description: 'Failed POPs tolerated before the rollout stops' }),
}).meta({ description: 'How a fleet install proceeds (used by the unattended rollout)' });

function fleetSchema(inlineSite: typeof InlineSiteSchema | typeof InlineSiteJsonSchema) {
  return strictObject({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('Fleet'),
    metadata: strictObject({ name: K8sNameSchema, labels: MetadataSchema.shape.labels }),
    spec: strictObject({
      defaults: SiteSpecDefaultsSchema.optional(),
      sites: z
        .array(z.union([SiteFileRefSchema, inlineSite]))
        .min(1, 'a fleet needs at least one site')
        .meta({ description: 'Inline Site documents or {file: glob} references to Site files' }),
      rollout: RolloutSchema.prefault({}),
    }),
  }).meta({ description: 'A set of POPs with shared defaults' });
}

// For editors: an inline site's spec is described as a Site spec; at load time it is checked after merging.
const InlineSiteJsonSchema = InlineSiteSchema.extend({ spec: SiteSpecDefaultsSchema });

export const FleetSchema = fleetSchema(InlineSiteSchema);
export const FleetJsonSchemaSource = fleetSchema(InlineSiteJsonSchema);

export type Fleet = z.infer<typeof FleetSchema>;
