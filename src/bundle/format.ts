// bundle.json: what a bundle holds, per architecture, with every digest and size. It is the signed document;
// everything else in the bundle directory is checked against it.
import fs from 'node:fs';
import path from 'node:path';
import type { BundleArch, FeatureName, RecipeSpec } from '../config/recipe.js';
import { BUNDLE_FILE } from './layout.js';

export const BUNDLE_KIND = 'FsmEdgeBundle';
export const BUNDLE_SCHEMA_VERSION = 1;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export type FileRole = 'k3s-binary' | 'k3s-install-script' | 'k3s-checksums' | 'k3s-image-list' | 'k3s-airgap-images' | 'fsm-chart' | 'pop-script';

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

export interface BundleDoc {
  kind: typeof BUNDLE_KIND;
  schemaVersion: typeof BUNDLE_SCHEMA_VERSION;
  name: string;
  versions: { k3s: string; fsm: string; pipy: string; chart: string };
  recipe: RecipeSpec;
  /** sha256 of index.json, so the unsigned OCI index is covered by the signature too. */
  index: { digest: string; size: number };
  arches: Partial<Record<BundleArch, ArchContent>>;
  /** Distinct blobs in the whole bundle (each stored once however many images or arches share it). */
  totals: { blobs: number; bytes: number };
}

export class BundleFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleFormatError';
  }
}

export function readBundleDoc(dir: string): BundleDoc {
  const file = path.join(dir, BUNDLE_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new BundleFormatError(`${file}: not found — is ${dir} a bundle directory (built by \`fsm-edge bundle build\`)?`);
  }
  let doc: BundleDoc;
  try {
    doc = JSON.parse(text) as BundleDoc;
  } catch (e) {
    throw new BundleFormatError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (doc.kind !== BUNDLE_KIND || doc.schemaVersion !== BUNDLE_SCHEMA_VERSION)
    throw new BundleFormatError(`${file}: not an fsm-edge bundle of schema ${BUNDLE_SCHEMA_VERSION} (kind ${String(doc.kind)})`);
  return doc;
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
