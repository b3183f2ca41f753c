// `bundle build`: recipe + lock → a signed, content-addressed bundle directory (an OCI image layout plus
// bundle.json and its signature). Streams every blob through the cache; a rebuild of the same lock fetches nothing.
// The steps, each in its own module: release files (build-release-files), images and their blobs (build-images),
// the signed document and the directory (build-output); this one runs them and leaves the lock as the recipe says.
import type { BundleArch } from '../config/recipe.js';
import { formatImageRef, parseImageRef } from './oci-client.js';
import { writeLock } from './lock-file.js';
import type { BundleDoc } from './format.js';
import { startBuild, type BuildContext, type BuildOptions } from './build-context.js';
import { archUrls, pinReleaseFiles, type PinnedReleaseFiles } from './build-release-files.js';
import { BlobFetcher, fetchMissingBlobs, resolveImages, wantedImages, type ImageWant } from './build-images.js';
import { signedBundle, writeBundleDir } from './build-output.js';

export { BuildError, type BuildEvent, type BuildOptions } from './build-context.js';
export { defaultPopDir } from './build-release-files.js';
export { featureClosure } from './build-images.js';
export { nextBuild } from './build-output.js';

export interface BuildStats {
  /** HTTP requests to registries and file servers. */
  requests: number;
  downloadedBlobs: number;
  downloadedFiles: number;
  /** Payload bytes downloaded (blobs + files). */
  downloadedBytes: number;
}

export interface BuildResult {
  dir: string;
  doc: BundleDoc;
  stats: BuildStats;
  lockPath: string;
  lockWritten: boolean;
}

export async function buildBundle(opts: BuildOptions): Promise<BuildResult> {
  const ctx = startBuild(opts);
  const releaseFiles = await pinReleaseFiles(ctx);
  const { wants, archFeatures } = wantedImages(ctx, releaseFiles.k3sImageRefs);
  const fetcher = new BlobFetcher(ctx);
  const resolved = await resolveImages(ctx, wants, fetcher);
  await fetchMissingBlobs(ctx, resolved, wants, fetcher);
  const bundle = signedBundle(ctx, resolved, releaseFiles.perArch, archFeatures, opts.signingKey);
  await writeBundleDir(ctx, bundle);
  pruneLock(ctx, wants, releaseFiles);
  const lockWritten = ctx.frozen ? false : writeLock(ctx.lockPath, ctx.lock);
  const { client, files } = ctx;
  return {
    dir: ctx.outDir,
    doc: bundle.doc,
    lockPath: ctx.lockPath,
    lockWritten,
    stats: {
      requests: client.stats.requests + files.stats.requests,
      downloadedBlobs: client.stats.blobsFetched,
      downloadedFiles: files.stats.filesFetched,
      downloadedBytes: client.stats.blobBytesFetched + files.stats.bytesFetched,
    },
  };
}

/** Keeps the pins of arches not built this time; drops what the recipe no longer names. */
function pruneLock(ctx: BuildContext, wants: Map<string, ImageWant>, releaseFiles: PinnedReleaseFiles): void {
  const { spec, lock } = ctx;
  const refsInRecipe = new Set<string>([...wants.keys()]);
  for (const f of Object.values(spec.fsm.features)) for (const i of f?.images ?? []) refsInRecipe.add(formatImageRef(parseImageRef(i.ref)));
  for (const r of releaseFiles.k3sImageRefs) refsInRecipe.add(formatImageRef(parseImageRef(r)));
  for (const r of Object.keys(lock.images)) if (!refsInRecipe.has(r)) delete lock.images[r];
  const urlsInRecipe = new Set([
    ...releaseFiles.usedUrls,
    ...Object.keys(spec.arches).flatMap((a) => archUrls(spec, a as BundleArch, releaseFiles.relUrl)),
  ]);
  for (const u of Object.keys(lock.files)) if (!urlsInRecipe.has(u)) delete lock.files[u];
}
