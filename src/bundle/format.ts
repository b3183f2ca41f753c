// bundle.json: what a bundle holds, per architecture, with every digest and size. It is the signed document;
// everything else in the bundle directory is checked against it. Its bytes are parsed only through
// BundleDocSchema: a name in it becomes a file name on a POP that runs as root, so every field is typed and
// every name is a basename from a strict alphabet.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { FsmEdgeError } from '../config/errors.js';
import {
  BundleArchSchema,
  FeatureNameSchema,
  RecipeSpecSchema,
  type BundleArch,
  type FeatureName,
  type RecipeSpec,
} from '../config/recipe.js';
import { BUNDLE_FILE } from './layout.js';
import { formatImageRef, parseImageRef } from './oci-client.js';

export const BUNDLE_KIND = 'FsmEdgeBundle';
export const BUNDLE_SCHEMA_VERSION = 1;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export const FILE_ROLES = [
  'k3s-binary',
  'k3s-install-script',
  'k3s-checksums',
  'k3s-image-list',
  'k3s-airgap-images',
  'fsm-chart',
  'pop-script',
] as const;
export type FileRole = (typeof FILE_ROLES)[number];

export interface BundleFile {
  role: FileRole;
  /** File name as published (`k3s-arm64`, `fsm-1.5.1.tgz`, …). */
  name: string;
  digest: string;
  size: number;
  /** Where it came from (empty for files the bundle carries from this repository). */
  url: string;
}

export type ImageGroup = 'k3s' | 'mesh';

export interface BundleImage {
  /** Normalised reference, `docker.io/flomesh/pipy:1.5.12`. */
  ref: string;
  group: ImageGroup;
  /** Mesh features that need it (empty for k3s system images). */
  features: FeatureName[];
  /** Digest the tag resolved to (an index for multi-arch images, else the manifest itself). */
  resolvedDigest: string;
  platform: { os: string; architecture: string; variant?: string };
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  /** manifest + config + layers. */
  size: number;
}

export interface ArchContent {
  features: FeatureName[];
  files: BundleFile[];
  images: BundleImage[];
  /** Distinct blobs this architecture needs, and their bytes: what a POP of this arch receives. */
  totals: { blobs: number; bytes: number };
}

/** When and in which order bundles were built: a POP refuses to go back to an older one (see compareBundleAge). */
export interface BundleBuild {
  /** ISO 8601 UTC time of the build. */
  createdAt: string;
  /**
   * Orders the bundles of one builder: milliseconds since the epoch at build time, but always above the last
   * serial that builder (its cache directory) issued, so a clock stepped back cannot make a newer bundle look older.
   */
  serial: number;
}

export interface BundleDoc {
  kind: typeof BUNDLE_KIND;
  schemaVersion: typeof BUNDLE_SCHEMA_VERSION;
  name: string;
  build: BundleBuild;
  versions: { k3s: string; fsm: string; pipy: string; chart: string };
  recipe: RecipeSpec;
  /** sha256 of index.json, so the unsigned OCI index is covered by the signature too. */
  index: { digest: string; size: number };
  arches: Partial<Record<BundleArch, ArchContent>>;
  /** Distinct blobs in the whole bundle (each stored once however many images or arches share it). */
  totals: { blobs: number; bytes: number };
}

// ---- the schema: what a bundle.json may contain, field by field ----

/** A name that becomes one path component on a POP: no `/`, no `..`, no leading dot or dash, no shell characters. */
export const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$/;
export const SafeNameSchema = z
  .string()
  .regex(SAFE_NAME, 'a plain file name: letters, digits and . _ + - (at most 201, starting with a letter or digit)')
  .refine((s) => !s.includes('..'), 'a plain file name: `..` is not allowed');
export const DigestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'a digest `sha256:<64 lowercase hex digits>`');
export const SizeSchema = z
  .number()
  .int('a whole number of bytes')
  .nonnegative('a size in bytes (not negative)')
  .max(Number.MAX_SAFE_INTEGER);
const Token = (max: number) =>
  z.string().regex(new RegExp(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,${max - 1}}$`), `letters, digits and . _ + - (at most ${max})`);
const MediaTypeSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9.+/_-]{0,254}$/, 'a media type like application/vnd.oci.image.layer.v1.tar+gzip');
const PlatformPart = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,31}$/, 'lowercase letters, digits and . _ - (at most 32)');
const UrlSchema = z.union([
  z.literal(''),
  z
    .string()
    .max(2048)
    .regex(/^https?:\/\/[^\s"'\\]+$/, 'an http(s) URL without spaces or quotes'),
]);

/** A normalised image reference (`registry/repository:tag[@sha256:…]`), exactly as `formatImageRef` writes it. */
export const BundleImageRefSchema = z
  .string()
  .max(512)
  .regex(
    /^[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?(\/[a-z0-9]+([._-]+[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$/,
    'a normalised image reference like docker.io/flomesh/pipy:1.5.12',
  )
  .refine((s) => {
    try {
      return formatImageRef(parseImageRef(s)) === s;
    } catch {
      return false;
    }
  }, 'not in normalised form (registry/repository:tag, as bundle build writes it)');

const DescriptorSchema = z.strictObject({ mediaType: MediaTypeSchema, digest: DigestSchema, size: SizeSchema });
const TotalsSchema = z.strictObject({ blobs: SizeSchema, bytes: SizeSchema });

const BundleFileSchema = z.strictObject({
  role: z.enum(FILE_ROLES),
  name: SafeNameSchema,
  digest: DigestSchema,
  size: SizeSchema,
  url: UrlSchema,
});

const BundleImageSchema = z.strictObject({
  ref: BundleImageRefSchema,
  group: z.enum(['k3s', 'mesh']),
  features: z.array(FeatureNameSchema),
  resolvedDigest: DigestSchema,
  platform: z.strictObject({ os: PlatformPart, architecture: PlatformPart, variant: PlatformPart.optional() }),
  manifest: DescriptorSchema,
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema),
  size: SizeSchema,
});

const ArchContentSchema = z.strictObject({
  features: z.array(FeatureNameSchema),
  files: z.array(BundleFileSchema),
  images: z.array(BundleImageSchema),
  totals: TotalsSchema,
});

const BundleBuildSchema = z.strictObject({
  createdAt: z.iso.datetime({ message: 'an ISO 8601 UTC time like 2026-01-31T12:00:00.000Z' }),
  serial: z.number().int().positive('a positive whole number').max(Number.MAX_SAFE_INTEGER),
});

/** The whole of bundle.json. Anything else — an unknown key, a name with a `/`, a size that is not a count — is refused. */
export const BundleDocSchema: z.ZodType<BundleDoc> = z
  .strictObject({
    kind: z.literal(BUNDLE_KIND),
    schemaVersion: z.literal(BUNDLE_SCHEMA_VERSION),
    name: SafeNameSchema,
    build: BundleBuildSchema,
    versions: z.strictObject({ k3s: Token(128), fsm: Token(128), pipy: Token(128), chart: Token(128) }),
    recipe: RecipeSpecSchema,
    index: z.strictObject({ digest: DigestSchema, size: SizeSchema }),
    arches: z.partialRecord(BundleArchSchema, ArchContentSchema),
    totals: TotalsSchema,
  })
  .superRefine((doc, ctx) => {
    // The totals and sizes are what sync and the progress bars trust: they must add up, and one digest has one size.
    const sizeOf = new Map<string, number>();
    const all = new Map<string, number>();
    for (const [arch, c] of Object.entries(doc.arches)) {
      if (!c) continue;
      const at = ['arches', arch];
      const seen = (digest: string, size: number, where: PropertyKey[]) => {
        const known = sizeOf.get(digest);
        if (known !== undefined && known !== size)
          ctx.addIssue({
            code: 'custom',
            path: [...at, ...where, 'size'],
            message: `${digest} is ${known} bytes elsewhere in the bundle, here ${size}`,
          });
        sizeOf.set(digest, size);
      };
      for (const [i, f] of c.files.entries()) seen(f.digest, f.size, ['files', i]);
      c.images.forEach((img, i) => {
        seen(img.manifest.digest, img.manifest.size, ['images', i, 'manifest']);
        seen(img.config.digest, img.config.size, ['images', i, 'config']);
        for (const [j, l] of img.layers.entries()) seen(l.digest, l.size, ['images', i, 'layers', j]);
        const sum = img.manifest.size + img.config.size + img.layers.reduce((n, l) => n + l.size, 0);
        if (img.size !== sum)
          ctx.addIssue({
            code: 'custom',
            path: [...at, 'images', i, 'size'],
            message: `${img.size}, but manifest + config + layers are ${sum} bytes`,
          });
      });
      const names = new Set<string>();
      c.files.forEach((f, i) => {
        if (names.has(f.name)) ctx.addIssue({ code: 'custom', path: [...at, 'files', i, 'name'], message: `${f.name} is listed twice` });
        names.add(f.name);
      });
      const blobs = archBlobs(c);
      if (c.totals.blobs !== blobs.size || c.totals.bytes !== sumBytes(blobs))
        ctx.addIssue({
          code: 'custom',
          path: [...at, 'totals'],
          message: `says ${c.totals.blobs} blobs, ${c.totals.bytes} bytes; the content adds up to ${blobs.size} blobs, ${sumBytes(blobs)} bytes`,
        });
      for (const [d, s] of blobs) all.set(d, s);
    }
    if (doc.totals.blobs !== all.size || doc.totals.bytes !== sumBytes(all))
      ctx.addIssue({
        code: 'custom',
        path: ['totals'],
        message: `says ${doc.totals.blobs} blobs, ${doc.totals.bytes} bytes; the arches add up to ${all.size} blobs, ${sumBytes(all)} bytes`,
      });
  });

/** A bundle.json outside the schema: the bundle is refused (a rebuild with this fsm-edge makes a valid one). */
export class BundleFormatError extends FsmEdgeError {
  constructor(
    message: string,
    /** The first offending field, `arches.amd64.files[3].name` (when the document parsed as JSON). */
    readonly field?: string,
  ) {
    super('refused', message, {
      code: 'bundle',
      fix: 'rebuild the bundle with `fsm-edge bundle build`, or use an intact copy from its builder',
    });
    this.name = 'BundleFormatError';
  }
}

/** `arches.amd64.files[3].name` from a zod issue path. */
export function fieldPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : `${out ? '.' : ''}${String(k)}`;
  return out || '(document)';
}

/**
 * Parses exactly these bytes as bundle.json. `where` names the file in messages. Call it only on bytes whose
 * signature was checked (readVerifiedBundle does both); unverified callers only display what it returns.
 */
export function parseBundleDoc(bytes: Buffer | string, where = BUNDLE_FILE): BundleDoc {
  let data: unknown;
  try {
    data = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (e) {
    throw new BundleFormatError(`${where}: not valid JSON (${(e as Error).message})`);
  }
  const head = data as { kind?: unknown; schemaVersion?: unknown } | null;
  if (typeof head !== 'object' || head === null || head.kind !== BUNDLE_KIND || head.schemaVersion !== BUNDLE_SCHEMA_VERSION)
    throw new BundleFormatError(`${where}: not an fsm-edge bundle of schema ${BUNDLE_SCHEMA_VERSION} (kind ${String(head?.kind)})`);
  if ((data as { build?: unknown }).build === undefined)
    throw new BundleFormatError(
      `${where}: build: missing — the bundle was made by an older fsm-edge (no build time and serial); rebuild it with \`fsm-edge bundle build\``,
      'build',
    );
  const r = BundleDocSchema.safeParse(data);
  if (!r.success) {
    const first = r.error.issues[0]!;
    const field = fieldPath(first.path);
    const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more problem(s))` : '';
    throw new BundleFormatError(
      `${where}: ${field}: ${first.message}${more} — not a bundle this fsm-edge accepts; rebuild it with \`fsm-edge bundle build\``,
      field,
    );
  }
  return r.data;
}

/** bundle.json of `dir`, parsed and schema-checked but NOT signature-checked: for display (inspect, diff, lists). */
export function readBundleDoc(dir: string): BundleDoc {
  const file = path.join(dir, BUNDLE_FILE);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    throw new BundleFormatError(`${file}: not found — is ${dir} a bundle directory (built by \`fsm-edge bundle build\`)?`);
  }
  return parseBundleDoc(bytes, file);
}

/** Negative when `a` was built before `b`, 0 for the same build, positive when `a` is newer (by build serial). */
export function compareBundleAge(a: BundleDoc, b: BundleDoc): number {
  return compareBuilds(a.build, b.build);
}

/** compareBundleAge on the stamps alone (e.g. one recorded in a POP's journal). */
export function compareBuilds(a: BundleBuild, b: BundleBuild): number {
  return Math.sign(a.serial - b.serial) || Math.sign(Date.parse(a.createdAt) - Date.parse(b.createdAt));
}

export function archContent(doc: BundleDoc, arch: BundleArch): ArchContent {
  const c = doc.arches[arch];
  if (!c)
    throw new BundleFormatError(
      `bundle ${doc.name} has no ${arch} content (it holds ${Object.keys(doc.arches).join(', ')}); build it with --arch ${arch}`,
    );
  return c;
}

/** Every blob one architecture needs (files, manifests, configs, layers), each once, in a stable order. */
export function archBlobs(content: ArchContent): Map<string, number> {
  const m = new Map<string, number>();
  for (const f of content.files) m.set(f.digest, f.size);
  for (const i of content.images) {
    m.set(i.manifest.digest, i.manifest.size);
    m.set(i.config.digest, i.config.size);
    for (const l of i.layers) m.set(l.digest, l.size);
  }
  return m;
}

export function sumBytes(blobs: Map<string, number>): number {
  let n = 0;
  for (const s of blobs.values()) n += s;
  return n;
}
