// The bundle itself: bundle.json (what each arch carries), the OCI index, the signature, and the directory
// written beside the old one and swapped in with renames, so a reader never sees half of either.
import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { BundleArch, FeatureName, RecipeSpec } from '../config/recipe.js';
import { copyBlob, hasBlob, hashFile, sha256Of, writeFileAtomic } from './blob-file.js';
import {
  BUNDLE_KIND,
  BUNDLE_SCHEMA_VERSION,
  archBlobs,
  parseBundleDoc,
  sumBytes,
  type ArchContent,
  type BundleBuild,
  type BundleDoc,
  type BundleFile,
  type BundleImage,
} from './format.js';
import { BUNDLE_FILE, INDEX_FILE, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE, SIGNATURE_FILE, blobPath } from './layout.js';
import { parseImageRef } from './oci-client.js';
import { signBytes } from './sign.js';
import { BuildError, type BuildContext } from './build-context.js';
import type { ResolvedImage } from './build-images.js';

export interface SignedBundle {
  doc: BundleDoc;
  docBytes: Buffer;
  indexBytes: Buffer;
  signature: ReturnType<typeof signBytes>;
  /** Every blob of every arch: digest → size. */
  blobs: Map<string, number>;
}

/** bundle.json and the OCI index for what was resolved, checked as a POP will check it, then signed. */
export function signedBundle(
  ctx: BuildContext,
  resolved: ResolvedImage[],
  perArchFiles: Map<BundleArch, BundleFile[]>,
  archFeatures: Map<BundleArch, FeatureName[]>,
  signingKey: KeyObject,
): SignedBundle {
  const { spec } = ctx;
  const byArch = new Map<BundleArch, BundleImage[]>();
  for (const { arch, ...img } of resolved) (byArch.get(arch) ?? byArch.set(arch, []).get(arch)!).push(img);
  const archesDoc: Partial<Record<BundleArch, ArchContent>> = {};
  const everything = new Map<string, number>();
  for (const arch of [...ctx.arches].sort()) {
    const images = (byArch.get(arch) ?? []).sort((a, b) => (a.group === b.group ? cmp(a.ref, b.ref) : a.group === 'k3s' ? -1 : 1));
    const content: ArchContent = {
      features: archFeatures.get(arch) ?? [],
      files: (perArchFiles.get(arch) ?? []).sort((a, b) => cmp(a.role + a.name, b.role + b.name)),
      images,
      totals: { blobs: 0, bytes: 0 },
    };
    const blobs = archBlobs(content);
    content.totals = { blobs: blobs.size, bytes: sumBytes(blobs) };
    for (const [d, s] of blobs) everything.set(d, s);
    archesDoc[arch] = content;
  }

  const indexDoc = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: Object.values(archesDoc).flatMap((c) =>
      c!.images.map((i) => ({
        mediaType: i.manifest.mediaType,
        digest: i.manifest.digest,
        size: i.manifest.size,
        platform: i.platform,
        annotations: { 'io.containerd.image.name': i.ref, 'org.opencontainers.image.ref.name': parseImageRef(i.ref).tag ?? '' },
      })),
    ),
  };
  const indexBytes = Buffer.from(JSON.stringify(indexDoc, null, 2) + '\n');
  const { mirrors: _mirrors, ...recipeForDoc } = spec;
  const doc: BundleDoc = {
    kind: BUNDLE_KIND,
    schemaVersion: BUNDLE_SCHEMA_VERSION,
    name: ctx.recipeName,
    build: nextBuild(ctx.cache),
    versions: { k3s: spec.k3s.version, fsm: spec.fsm.version, pipy: spec.fsm.pipyVersion, chart: chartVersion(spec) },
    recipe: { ...recipeForDoc, mirrors: {} } as RecipeSpec,
    index: { digest: sha256Of(indexBytes), size: indexBytes.length },
    arches: archesDoc,
    totals: { blobs: everything.size, bytes: sumBytes(everything) },
  };
  const docBytes = Buffer.from(JSON.stringify(doc, null, 2) + '\n');
  // Sign only what every POP will accept: the same schema check verify applies (e.g. a chart URL with an odd file name).
  try {
    parseBundleDoc(docBytes);
  } catch (e) {
    throw new BuildError(`refusing to sign ${BUNDLE_FILE}: ${(e as Error).message.replace(/^bundle\.json: /, '')}`);
  }
  return { doc, docBytes, indexBytes, signature: signBytes(docBytes, signingKey), blobs: everything };
}

/** Writes the bundle directory beside the old one (if any) and swaps it in. */
export async function writeBundleDir(ctx: BuildContext, b: SignedBundle): Promise<void> {
  const { outDir, cache } = ctx;
  const staging = `${outDir}.building-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(path.join(staging, 'blobs', 'sha256'), { recursive: true });
  const oldDir = fs.existsSync(outDir) ? outDir : undefined;
  for (const [digest, size] of b.blobs) {
    const src = blobPath(cache, digest);
    if (!hasBlob(src, size)) throw new BuildError(`internal: blob ${digest} missing from the cache ${cache}`);
    // Rebuilding in place: a blob the previous bundle already holds (and that still hashes right) is hard-linked
    // into the new one instead of copied; the old directory goes away at the swap, so nothing is shared for long.
    const old = oldDir ? blobPath(oldDir, digest) : undefined;
    if (old && hasBlob(old, size) && (await hashFile(old)).digest === digest) {
      try {
        fs.linkSync(old, blobPath(staging, digest));
        continue;
      } catch {
        /* another filesystem: copy */
      }
    }
    copyBlob(src, blobPath(staging, digest));
  }
  fs.writeFileSync(path.join(staging, OCI_LAYOUT_FILE), OCI_LAYOUT_CONTENT);
  fs.writeFileSync(path.join(staging, INDEX_FILE), b.indexBytes);
  fs.writeFileSync(path.join(staging, BUNDLE_FILE), b.docBytes);
  fs.writeFileSync(path.join(staging, SIGNATURE_FILE), JSON.stringify(b.signature, null, 2) + '\n');
  if (oldDir) {
    const trash = `${outDir}.old-${process.pid}`;
    fs.renameSync(oldDir, trash);
    fs.renameSync(staging, outDir);
    fs.rmSync(trash, { recursive: true, force: true });
  } else {
    fs.mkdirSync(path.dirname(outDir), { recursive: true });
    fs.renameSync(staging, outDir);
  }
  ctx.emit({ type: 'written', dir: outDir, blobs: b.doc.totals.blobs, bytes: b.doc.totals.bytes });
}

function chartVersion(spec: RecipeSpec): string {
  const m = /-(\d+\.\d+\.\d+[^/]*)\.tgz$/.exec(spec.fsm.chart.url);
  return m ? m[1]! : spec.fsm.version.replace(/^v/, '');
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The build stamp. serial = milliseconds since the epoch, raised above the last serial this cache directory
 * issued (kept in `<cache>/build-serial`), so bundles of one builder are strictly ordered even if its clock
 * steps back. Builders sharing a cache share the counter; separate builders rely on their clocks being sane.
 */
export function nextBuild(cache: string, now = new Date()): BundleBuild {
  const file = path.join(cache, BUILD_SERIAL_FILE);
  let last = 0;
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    if (Number.isSafeInteger(n) && n > 0) last = n;
  } catch {
    /* first build with this cache */
  }
  const serial = Math.max(now.getTime(), last + 1);
  writeFileAtomic(file, `${serial}\n`);
  return { createdAt: now.toISOString(), serial };
}
const BUILD_SERIAL_FILE = 'build-serial';
