// Recipe: what goes into an airgap bundle (kind `Recipe`). Owned by the bundle work (src/bundle/); the config
// model includes it in the document union. One schema gives validation, TS types and JSON Schema.
import { z } from 'zod';
import { strictObject } from './fields.js';

export const BUNDLE_ARCHES = ['amd64', 'arm64', 'arm'] as const;
export const BundleArchSchema = z.enum(BUNDLE_ARCHES);
export type BundleArch = z.infer<typeof BundleArchSchema>;

/** Architectures Pipy (and so every FSM data-plane image) is built for. Pipy has no 32-bit ARM build. */
export const MESH_ARCHES: readonly BundleArch[] = ['amd64', 'arm64'];

export const FEATURES = ['core', 'podLevel', 'nodeLevel', 'ingress', 'gateway', 'egress', 'multicluster', 'observability'] as const;
export const FeatureNameSchema = z.enum(FEATURES);
export type FeatureName = z.infer<typeof FeatureNameSchema>;

const sha256Hex = z.string().regex(/^[a-f0-9]{64}$/, 'a sha256 as 64 lowercase hex digits');

/** `registry/repo:tag` (registry defaults to docker.io). Floating `latest` tags are refused: bundles are pinned. */
export const ImageRefSchema = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._\-/:]*(:[\w][\w.-]{0,127})(@sha256:[a-f0-9]{64})?$/,
    'an image reference with a tag, e.g. docker.io/flomesh/pipy:1.5.12',
  )
  .refine((s) => !/:latest(@|$)/.test(s), 'floating tag `latest` cannot be pinned; name a version');

export const RecipeImageSchema = strictObject({
  ref: ImageRefSchema,
  /** Helm values keys of the FSM chart that select this image (registry/name/tag). */
  valuesKeys: z.array(z.string()).default([]),
  /** When the image is pulled at run time, for people reading the recipe. */
  when: z.string().optional(),
});
export type RecipeImage = z.infer<typeof RecipeImageSchema>;

export const FeatureSchema = strictObject({
  description: z.string(),
  /** Chart values that turn the feature on (what the installer sets). */
  values: z.record(z.string(), z.unknown()).default({}),
  /** Features this one needs in the bundle too. */
  requires: z.array(FeatureNameSchema).default([]),
  images: z.array(RecipeImageSchema).default([]),
});
export type Feature = z.infer<typeof FeatureSchema>;

export const FileSourceSchema = strictObject({
  /** URL; `{version}` is replaced by the URL-encoded release version. */
  url: z.string().min(1),
  /** Expected sha256 when the publisher gives none in a checksum file (else the lock file pins it). */
  sha256: sha256Hex.optional(),
});
export type FileSource = z.infer<typeof FileSourceSchema>;

export const MirrorSchema = strictObject({
  /** Tried in order before the registry itself: `https://host[:port]` or `http://` for plain HTTP. */
  endpoints: z.array(z.string().regex(/^https?:\/\/[^/\s]+\/?$/, 'http(s)://host[:port]')).min(1),
  /** Fall back to the registry's own endpoint when no mirror has the content. */
  upstream: z.boolean().default(true),
});
export type Mirror = z.infer<typeof MirrorSchema>;

export const K3sSourceSchema = strictObject({
  version: z.string().regex(/^v\d+\.\d+\.\d+\+k3s\d+$/, 'a k3s release like v1.37.1+k3s1'),
  /** Base URL of the release assets (binary, sha256sum-<arch>.txt, k3s-images.txt, airgap archives). */
  releaseUrl: z.string().default('https://github.com/k3s-io/k3s/releases/download/{version}'),
  installScript: FileSourceSchema,
  /**
   * `registry`: pull every image of the release's `k3s-images.txt` through the OCI API, so its layers are
   * shared and an upgrade sends only changed layers. `archive`: ship the release's airgap image archive as is.
   */
  systemImages: z.enum(['registry', 'archive']).default('registry'),
  /** Extension of the airgap archive in `archive` mode (k3s publishes all three). */
  archiveFormat: z.enum(['tar', 'tar.gz', 'tar.zst']).default('tar.zst'),
  /** Image references from k3s-images.txt to leave out (e.g. traefik when every site disables it). */
  skipImages: z.array(z.string()).default([]),
});

export const FsmSourceSchema = strictObject({
  version: z.string().regex(/^v\d+\.\d+\.\d+$/, 'an FSM release like v1.5.1'),
  pipyVersion: z.string().regex(/^\d+\.\d+\.\d+$/),
  chart: FileSourceSchema,
  features: z.partialRecord(FeatureNameSchema, FeatureSchema),
});

export const ArchPlanSchema = strictObject({
  /** Mesh features this architecture's bundle carries (`core` is implied by any other). Empty = k3s only. */
  features: z.array(FeatureNameSchema).default([]),
});

/** Node.js's own names for the architectures it publishes Linux builds for (`uname -m`: x86_64, aarch64). */
export const NODE_RUNTIME_ARCHES = ['x64', 'arm64'] as const;
export type NodeRuntimeArch = (typeof NODE_RUNTIME_ARCHES)[number];

/**
 * The Node.js release a USB stick carries (`fsm-edge bundle export --with-runtime`), pinned like k3s: the version
 * here; the digest of the release's SHASUMS256.txt in the recipe or, at the first export, in the runtime lock
 * beside it; each `node-<version>-linux-<arch>.tar.xz` checked against that SHASUMS256.txt.
 */
export const NodeRuntimeSchema = strictObject({
  version: z
    .string()
    .regex(/^v\d+\.\d+\.\d+$/, 'a Node.js release like v20.20.2')
    .refine((v) => Number(v.slice(1).split('.')[0]) >= 20, 'fsm-edge needs Node.js 20 or newer'),
  /** Base URL of the release: `{version}/node-{version}-linux-{x64,arm64}.tar.xz` and `SHASUMS256.txt` live there. */
  releaseUrl: z.string().default('https://nodejs.org/dist/{version}'),
  /** sha256 of that release's SHASUMS256.txt (pins every tarball); omitted: the first export pins it in the lock. */
  checksumsSha256: sha256Hex.optional(),
  arches: z.array(z.enum(NODE_RUNTIME_ARCHES)).min(1).default(['x64', 'arm64']),
});
export type NodeRuntime = z.infer<typeof NodeRuntimeSchema>;

export const RecipeSpecSchema = strictObject({
  arches: z.partialRecord(BundleArchSchema, ArchPlanSchema),
  /** Registry host (`docker.io`, `ghcr.io`, …) → mirrors. The lab maps docker.io to its local registry. */
  mirrors: z.record(z.string(), MirrorSchema).default({}),
  k3s: K3sSourceSchema,
  fsm: FsmSourceSchema,
  /** What a USB stick carries besides the bundle (on-site install and recovery without a controller). */
  runtime: strictObject({ node: NodeRuntimeSchema }).optional(),
}).superRefine((spec, ctx) => {
  if (Object.keys(spec.arches).length === 0)
    ctx.addIssue({ code: 'custom', path: ['arches'], message: 'name at least one architecture (amd64, arm64, arm)' });
  for (const [arch, plan] of Object.entries(spec.arches)) {
    if (!plan) continue;
    if (!MESH_ARCHES.includes(arch as BundleArch) && plan.features.length > 0)
      ctx.addIssue({
        code: 'custom',
        path: ['arches', arch, 'features'],
        message: `${arch} can carry k3s only: Pipy (the FSM proxy) has no 32-bit ARM build, so mesh features (${plan.features.join(', ')}) cannot run there`,
      });
    for (const f of plan.features)
      if (!spec.fsm.features[f])
        ctx.addIssue({ code: 'custom', path: ['arches', arch, 'features'], message: `feature ${f} is not defined under fsm.features` });
  }
  for (const [name, f] of Object.entries(spec.fsm.features))
    for (const r of f?.requires ?? [])
      if (!spec.fsm.features[r])
        ctx.addIssue({ code: 'custom', path: ['fsm', 'features', name, 'requires'], message: `requires undefined feature ${r}` });
});
export type RecipeSpec = z.infer<typeof RecipeSpecSchema>;
