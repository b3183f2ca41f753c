// The images of a bundle: which ones each arch needs (k3s system images, the FSM features' images), each resolved
// to its platform manifest (pinned in the lock), and every blob they name fetched into the cache once.
import fs from 'node:fs';
import { FEATURES, MESH_ARCHES, type BundleArch, type FeatureName, type RecipeSpec } from '../config/recipe.js';
import { hasBlob, writeFileAtomic } from './blob-file.js';
import type { BundleImage, Descriptor, ImageGroup } from './format.js';
import { blobPath } from './layout.js';
import { RecipeError } from './lock-file.js';
import { formatImageRef, parseImageRef, type ImageName } from './oci-client.js';
import pLimit from 'p-limit';
import { BuildError, type BuildContext } from './build-context.js';

export interface ImageWant {
  ref: string;
  name: ImageName;
  group: ImageGroup;
  features: Set<FeatureName>;
  arches: Set<BundleArch>;
}

export type ResolvedImage = BundleImage & { arch: BundleArch };

/** The features an arch carries, with what they require, in the recipe's canonical order. */
export function featureClosure(spec: RecipeSpec, wanted: FeatureName[]): FeatureName[] {
  const out = new Set<FeatureName>();
  const add = (f: FeatureName) => {
    if (out.has(f)) return;
    out.add(f);
    for (const r of spec.fsm.features[f]?.requires ?? []) add(r);
  };
  wanted.forEach(add);
  if (out.size && spec.fsm.features.core) out.add('core');
  return FEATURES.filter((f) => out.has(f));
}

/** Every image the arches need (by normalised ref), and the features each arch carries. */
export function wantedImages(
  ctx: BuildContext,
  k3sImageRefs: string[],
): { wants: Map<string, ImageWant>; archFeatures: Map<BundleArch, FeatureName[]> } {
  const { spec } = ctx;
  const wants = new Map<string, ImageWant>();
  const want = (ref: string, group: ImageGroup, arch: BundleArch, feature?: FeatureName) => {
    const name = parseImageRef(ref);
    const key = formatImageRef(name);
    let w = wants.get(key);
    if (!w) wants.set(key, (w = { ref: key, name, group, features: new Set(), arches: new Set() }));
    w.arches.add(arch);
    if (feature) w.features.add(feature);
  };
  const archFeatures = new Map<BundleArch, FeatureName[]>();
  for (const arch of ctx.arches) {
    for (const r of k3sImageRefs) want(r, 'k3s', arch);
    const feats = featureClosure(spec, spec.arches[arch]?.features ?? []);
    if (feats.length && !MESH_ARCHES.includes(arch))
      throw new RecipeError(`${arch}: mesh features need Pipy, which has no 32-bit ARM build`);
    archFeatures.set(arch, feats);
    for (const f of feats) for (const img of spec.fsm.features[f]?.images ?? []) want(img.ref, 'mesh', arch, f);
  }
  return { wants, archFeatures };
}

/** Fetches blobs into the cache: each digest once however many images share it, bounded, with progress events. */
export class BlobFetcher {
  private readonly inflight = new Map<string, Promise<void>>();
  private doneBytes = 0;
  private totalBytes = 0;
  private lastEmit = 0;

  constructor(private readonly ctx: BuildContext) {}

  ensure(name: ImageName, d: Descriptor): Promise<void> {
    const { ctx } = this;
    const dest = blobPath(ctx.cache, d.digest);
    if (hasBlob(dest, d.size)) return Promise.resolve();
    let p = this.inflight.get(d.digest);
    if (!p) {
      if (ctx.opts.offline)
        return Promise.reject(new BuildError(`blob ${d.digest} of ${formatImageRef(name)} is not in the cache and --offline is set`));
      p = ctx.limit(async () => {
        if (hasBlob(dest, d.size)) return;
        await ctx.client.fetchBlob(name, d.digest, d.size, dest, (n) => this.progress(n));
      });
      this.inflight.set(d.digest, p);
    }
    return p;
  }

  /** Progress from here on counts against `totalBytes` (the blobs still missing). */
  startCounting(totalBytes: number): void {
    this.totalBytes = totalBytes;
    this.doneBytes = 0;
  }

  private progress(n: number): void {
    this.doneBytes += n;
    const now = Date.now();
    if (now - this.lastEmit > 250 || this.doneBytes === this.totalBytes) {
      this.lastEmit = now;
      this.ctx.emit({ type: 'progress', bytes: this.doneBytes, totalBytes: this.totalBytes });
    }
  }
}

/** Each wanted image, for each arch it is wanted on: its platform manifest, config and layers (pinned in the lock). */
export async function resolveImages(ctx: BuildContext, wants: Map<string, ImageWant>, fetcher: BlobFetcher): Promise<ResolvedImage[]> {
  const { lock, cache } = ctx;
  const resolved: ResolvedImage[] = [];
  const resolveLimit = pLimit(8);
  const fetchManifest = async (name: ImageName, digest: string): Promise<Buffer> => {
    if (ctx.opts.offline) throw new BuildError(`manifest ${digest} of ${formatImageRef(name)} is not in the cache and --offline is set`);
    return (await ctx.client.getManifest(name, digest)).body;
  };
  const platformOf = async (w: ImageWant, config: Descriptor, arch: BundleArch): Promise<BundleImage['platform']> => {
    await fetcher.ensure(w.name, config);
    const c = JSON.parse(fs.readFileSync(blobPath(cache, config.digest), 'utf8')) as {
      os?: string;
      architecture?: string;
      variant?: string;
    };
    return { os: c.os ?? 'linux', architecture: c.architecture ?? arch, ...(c.variant ? { variant: c.variant } : {}) };
  };
  const resolveOne = async (w: ImageWant, arch: BundleArch) => {
    const entry = lock.images[w.ref];
    const pin = entry?.platforms[arch];
    let manifest: Descriptor & { body: Buffer };
    let resolvedDigest: string;
    if (pin) {
      const body = manifestFromCache(cache, pin.digest, pin.size) ?? (await fetchManifest(w.name, pin.digest));
      manifest = { mediaType: pin.mediaType, digest: pin.digest, size: pin.size, body };
      resolvedDigest = entry.digest;
    } else {
      if (ctx.frozen)
        throw new BuildError(
          `image ${w.ref} (${arch}) is not pinned in ${ctx.lockPath}; run the build without --frozen/--offline to resolve it`,
        );
      const r = await ctx.client.resolvePlatform(w.name, entry?.digest ?? w.name.tag!, arch, async (digest, size) => {
        await fetcher.ensure(w.name, { mediaType: '', digest, size });
        return fs.readFileSync(blobPath(cache, digest));
      });
      manifest = { mediaType: r.manifest.mediaType, digest: r.manifest.digest, size: r.manifest.size, body: r.manifest.body };
      resolvedDigest = r.resolvedDigest;
      const e = (lock.images[w.ref] ??= { digest: r.resolvedDigest, platforms: {} });
      e.digest = r.resolvedDigest;
      e.platforms[arch] = { digest: manifest.digest, size: manifest.size, mediaType: manifest.mediaType };
    }
    writeFileAtomic(blobPath(cache, manifest.digest), manifest.body);
    const m = JSON.parse(manifest.body.toString('utf8')) as { config?: Descriptor; layers?: Descriptor[] };
    if (!m.config || !Array.isArray(m.layers))
      throw new BuildError(`image ${w.ref} (${arch}): manifest ${manifest.digest} has no config/layers`);
    // From the image config in both paths, so a fresh resolve and a locked rebuild write the same bundle.json.
    const platform = await platformOf(w, m.config, arch);
    if (platform.architecture !== arch || platform.os !== 'linux')
      throw new BuildError(
        `image ${w.ref}: the manifest ${manifest.digest} chosen for linux/${arch} is for ${platform.os}/${platform.architecture}; delete its lock entry to resolve it again`,
      );
    const layers = m.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }));
    const config = { mediaType: m.config.mediaType, digest: m.config.digest, size: m.config.size };
    resolved.push({
      arch,
      ref: w.ref,
      group: w.group,
      features: FEATURES.filter((f) => w.features.has(f)),
      resolvedDigest,
      platform,
      manifest: { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size },
      config,
      layers,
      size: manifest.size + config.size + layers.reduce((n, l) => n + l.size, 0),
    });
  };
  await Promise.all([...wants.values()].flatMap((w) => [...w.arches].map((arch) => resolveLimit(() => resolveOne(w, arch)))));
  ctx.emit({ type: 'resolved', images: wants.size, arches: ctx.arches });
  return resolved;
}

/** Fetches every config and layer blob the resolved images name that the cache does not hold yet. */
export async function fetchMissingBlobs(
  ctx: BuildContext,
  resolved: ResolvedImage[],
  wants: Map<string, ImageWant>,
  fetcher: BlobFetcher,
): Promise<void> {
  const allBlobs = new Map<string, { size: number; name: ImageName }>();
  for (const img of resolved) {
    const name = wants.get(img.ref)!.name;
    for (const d of [img.config, ...img.layers]) allBlobs.set(d.digest, { size: d.size, name });
  }
  const missing = [...allBlobs].filter(([d, b]) => !hasBlob(blobPath(ctx.cache, d), b.size));
  const totalBytes = missing.reduce((n, [, b]) => n + b.size, 0);
  fetcher.startCounting(totalBytes);
  ctx.emit({ type: 'plan', missingBlobs: missing.length, missingBytes: totalBytes });
  await Promise.all(missing.map(([digest, b]) => fetcher.ensure(b.name, { mediaType: '', digest, size: b.size })));
}

function manifestFromCache(cache: string, digest: string, size?: number): Buffer | undefined {
  const p = blobPath(cache, digest);
  return hasBlob(p, size) ? fs.readFileSync(p) : undefined;
}
