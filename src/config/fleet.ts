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

/** A number of sites, or a share of them as a percentage string ("25%"). */
export const SiteCountSchema = z
  .union([z.int().min(0), z.string().regex(/^(100|[1-9]?[0-9])(\.[0-9]+)?%$/, 'expected a whole number or a percentage such as "25%"')])
  .meta({ description: 'A number of sites, or a percentage string such as "25%"' });

export const CanarySchema = z
  .union([
    z.int().min(1).meta({ description: 'The first N sites of the fleet, in the order it lists them' }),
    strictObject({
      matchLabels: z
        .record(z.string(), z.string())
        .refine((m) => Object.keys(m).length > 0, 'give at least one label')
        .meta({
          description: 'Sites whose labels include all of these',
        }),
    }),
  ])
  .meta({ description: 'The sites rolled out first, alone; any failure among them stops the rollout' });

export const RolloutSchema = strictObject({
  parallel: z.int().min(1).max(256).default(4).meta({ description: 'POPs installed at the same time (within a wave)' }),
  maxFailures: SiteCountSchema.default(0).meta({
    description: 'Failed POPs tolerated over the whole rollout (a count, or a percentage of the fleet) before it stops starting new ones',
  }),
  maxFailuresPerWave: SiteCountSchema.optional().meta({
    description: 'Failed POPs tolerated within one wave (a count, or a percentage of the wave); the canary tolerates none',
  }),
  canary: CanarySchema.optional(),
  waves: z
    .array(SiteCountSchema.refine((v) => v !== 0 && v !== '0%', 'a wave needs at least one site'))
    .min(1)
    .optional()
    .meta({ description: 'Wave sizes after the canary (counts or percentages of the remaining sites); the last size repeats' }),
  soak: z.int().min(0).max(86_400).optional().meta({
    description: 'Seconds to wait after a wave passes its gate before its sites are checked again (a dry run must plan no change)',
  }),
}).meta({ description: 'How a fleet rollout proceeds: canary, waves, failure budget, soak' });

export type RolloutPolicy = z.infer<typeof RolloutSchema>;
export type SiteCount = z.infer<typeof SiteCountSchema>;

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
