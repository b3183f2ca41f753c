// `bundle build`: recipe + lock → a signed, content-addressed bundle directory (an OCI image layout plus
// bundle.json and its signature). Streams every blob through the cache; a rebuild of the same lock fetches nothing.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyObject } from 'node:crypto';
import pLimit from 'p-limit';
import { FEATURES, MESH_ARCHES, type BundleArch, type FeatureName, type Mirror, type RecipeSpec } from '../config/recipe.js';
import { copyBlob, hasBlob, hashFile, removeStale, sha256Of, writeFileAtomic } from './blob-file.js';
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
  type Descriptor,
  type FileRole,
  type ImageGroup,
} from './format.js';
import {
  BUNDLE_FILE,
  INDEX_FILE,
  K3S_IMAGE_LIST,
  OCI_LAYOUT_CONTENT,
  OCI_LAYOUT_FILE,
  POP_ASSEMBLE_SCRIPT,
  SIGNATURE_FILE,
  blobPath,
  cacheDir as defaultCacheDir,
  defaultBundleDir,
  k3sAirgapArchiveName,
  k3sBinaryName,
  k3sChecksumName,
  lockPathFor,
} from './layout.js';
import { OciClient, formatImageRef, parseImageRef, type ImageName } from './oci-client.js';
import { loadRecipe } from '../config/load.js';
import { emptyLock, readLock, writeLock, RecipeError, type Lock } from './lock-file.js';
import { ReleaseFiles, expandUrl, parseImageList, parseSha256Sums } from './release-files.js';
import { signBytes } from './sign.js';

export type BuildEvent =
  | { type: 'file'; label: string; state: 'cached' | 'downloaded'; size: number }
  | { type: 'resolved'; images: number; arches: BundleArch[] }
  | { type: 'plan'; missingBlobs: number; missingBytes: number }
  | { type: 'progress'; bytes: number; totalBytes: number }
  | { type: 'written'; dir: string; blobs: number; bytes: number };

export interface BuildOptions {
  recipePath: string;
  /** Default: beside the recipe (`recipe.lock.yaml`). */
  lockPath?: string;
  /** Default: airgap/bundles/<recipe name>. */
  outDir?: string;
  /** Default: airgap/cache. */
  cacheDir?: string;
  /** Default: every arch the recipe names. */
  arches?: BundleArch[];
  signingKey: KeyObject;
  /** Added to (and overriding) the recipe's mirrors. Mirrors change where bytes come from, never the bundle. */
  mirrors?: Record<string, Mirror>;
  /** Fail instead of resolving anything the lock does not pin. */
  frozen?: boolean;
  /** No network at all: the cache and the lock must hold everything. */
  offline?: boolean;
  concurrency?: number;
  /** Directory of the POP-side files (default: this repository's bundle/pop). */
  popDir?: string;
  fetchImpl?: typeof fetch;
  onEvent?: (e: BuildEvent) => void;
}

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

export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

/** bundle/pop of this repository, found from this module whether it runs from src/ or dist/. */
export function defaultPopDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'bundle', 'pop');
    if (fs.existsSync(path.join(candidate, POP_ASSEMBLE_SCRIPT))) return candidate;
    dir = path.dirname(dir);
  }
  throw new BuildError(`bundle/pop/${POP_ASSEMBLE_SCRIPT} not found near ${fileURLToPath(import.meta.url)}`);
}

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

interface ImageWant {
  ref: string;
  name: ImageName;
  group: ImageGroup;
  features: Set<FeatureName>;
  arches: Set<BundleArch>;
}

export async function buildBundle(opts: BuildOptions): Promise<BuildResult> {
  const loaded = loadRecipe(opts.recipePath);
  const recipe = { name: loaded.metadata.name, spec: loaded.spec };
  const spec = recipe.spec;
  const lockPath = opts.lockPath ?? lockPathFor(opts.recipePath);
  const oldLock = readLock(lockPath);
  const lock: Lock = oldLock ? structuredClone(oldLock) : emptyLock();
  const cache = opts.cacheDir ?? defaultCacheDir();
  const outDir = opts.outDir ?? defaultBundleDir(recipe.name);
  const arches = opts.arches ?? (Object.keys(spec.arches) as BundleArch[]);
  const frozen = opts.frozen || opts.offline;
  const emit = opts.onEvent ?? (() => {});
  for (const a of arches)
    if (!spec.arches[a])
      throw new RecipeError(`${opts.recipePath}: arch ${a} is not in spec.arches (${Object.keys(spec.arches).join(', ')})`);

  // Leftovers of interrupted builds (partial downloads, half-written bundle directories) of dead processes.
  removeStale(path.join(cache, 'blobs', 'sha256'), ['.partial-', '.download-', '.tmp-']);
  removeStale(path.dirname(path.resolve(outDir)), ['.building-', '.old-', '.importing-']);
  const files = new ReleaseFiles({ cache, fetchImpl: opts.fetchImpl, offline: opts.offline });
  const client = new OciClient({
    mirrors: { ...spec.mirrors, ...opts.mirrors },
    fetchImpl: opts.fetchImpl,
    credentials: registryCredentials,
  });
  const limit = pLimit(opts.concurrency ?? 4);

  // ---- release files ----
  const version = spec.k3s.version;
  const relUrl = (name: string) => `${expandUrl(spec.k3s.releaseUrl, { version }).replace(/\/+$/, '')}/${name}`;
  const usedUrls = new Set<string>();
  const pinned = async (
    role: FileRole,
    name: string,
    url: string,
    expect: { digest?: string; source?: string } = {},
  ): Promise<BundleFile & { path: string }> => {
    usedUrls.add(url);
    const locked = lock.files[url];
    if (locked && expect.digest && locked.digest !== expect.digest)
      throw new BuildError(
        `${name} (${url}): the lock file pins ${locked.digest} but ${expect.source} says ${expect.digest}; the release changed — check it, then delete the lock entry`,
      );
    if (!locked && !expect.digest && frozen)
      throw new BuildError(`${name} (${url}) is not pinned in ${lockPath}; run the build without --frozen/--offline to resolve it`);
    const f = await files.get(url, name, locked ? { ...locked, source: 'the lock file' } : expect);
    lock.files[url] = { digest: f.digest, size: f.size };
    emit({ type: 'file', label: name, state: f.downloaded ? 'downloaded' : 'cached', size: f.size });
    return { role, name, digest: f.digest, size: f.size, url, path: f.path };
  };

  const anyMesh = arches.some((a) => (spec.arches[a]?.features.length ?? 0) > 0);
  const shared: Array<BundleFile & { path: string }> = [];
  shared.push(
    await pinned(
      'k3s-install-script',
      'install.sh',
      expandUrl(spec.k3s.installScript.url, { version }),
      sha(spec.k3s.installScript.sha256, 'the recipe'),
    ),
  );
  let k3sImageRefs: string[] = [];
  if (spec.k3s.systemImages === 'registry') {
    const list = await pinned('k3s-image-list', K3S_IMAGE_LIST, relUrl(K3S_IMAGE_LIST));
    shared.push(list);
    const skip = new Set(spec.k3s.skipImages.map((r) => formatImageRef(parseImageRef(r))));
    k3sImageRefs = parseImageList(fs.readFileSync(list.path, 'utf8')).filter((r) => !skip.has(formatImageRef(parseImageRef(r))));
  }
  if (anyMesh) {
    const chartUrl = expandUrl(spec.fsm.chart.url, { version: spec.fsm.version });
    shared.push(
      await pinned('fsm-chart', path.posix.basename(new URL(chartUrl).pathname), chartUrl, sha(spec.fsm.chart.sha256, 'the recipe')),
    );
  }
  shared.push(await popScript(opts.popDir ?? defaultPopDir(), cache));

  const perArchFiles = new Map<BundleArch, BundleFile[]>();
  for (const arch of arches) {
    const sumsName = k3sChecksumName(arch);
    const sumsFile = await pinned('k3s-checksums', sumsName, relUrl(sumsName));
    const sums = parseSha256Sums(fs.readFileSync(sumsFile.path, 'utf8'));
    const fromSums = (n: string) => {
      const d = sums.get(n);
      if (!d) throw new BuildError(`${sumsName} (${sumsFile.url}) has no line for ${n}; is ${version} a complete k3s release?`);
      return { digest: d, source: sumsName };
    };
    const list: BundleFile[] = [strip(sumsFile)];
    const bin = k3sBinaryName(arch);
    list.push(strip(await pinned('k3s-binary', bin, relUrl(bin), fromSums(bin))));
    if (spec.k3s.systemImages === 'archive') {
      const a = k3sAirgapArchiveName(arch, spec.k3s.archiveFormat);
      list.push(strip(await pinned('k3s-airgap-images', a, relUrl(a), fromSums(a))));
    }
    for (const f of shared) if (f.role !== 'fsm-chart' || (spec.arches[arch]?.features.length ?? 0) > 0) list.push(strip(f));
    perArchFiles.set(arch, list);
  }

  // ---- images ----
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
  for (const arch of arches) {
    for (const r of k3sImageRefs) want(r, 'k3s', arch);
    const feats = featureClosure(spec, spec.arches[arch]?.features ?? []);
    if (feats.length && !MESH_ARCHES.includes(arch))
      throw new RecipeError(`${arch}: mesh features need Pipy, which has no 32-bit ARM build`);
    archFeatures.set(arch, feats);
    for (const f of feats) for (const img of spec.fsm.features[f]?.images ?? []) want(img.ref, 'mesh', arch, f);
  }

  const inflight = new Map<string, Promise<void>>();
  const ensureBlob = (name: ImageName, d: Descriptor): Promise<void> => {
    const dest = blobPath(cache, d.digest);
    if (hasBlob(dest, d.size)) return Promise.resolve();
    let p = inflight.get(d.digest);
    if (!p) {
      if (opts.offline)
        return Promise.reject(new BuildError(`blob ${d.digest} of ${formatImageRef(name)} is not in the cache and --offline is set`));
      p = limit(async () => {
        if (hasBlob(dest, d.size)) return;
        await client.fetchBlob(name, d.digest, d.size, dest, (n) => progress(n));
      });
      inflight.set(d.digest, p);
    }
    return p;
  };
  let doneBytes = 0;
  let totalBytes = 0;
  let lastEmit = 0;
  const progress = (n: number) => {
    doneBytes += n;
    const now = Date.now();
    if (now - lastEmit > 250 || doneBytes === totalBytes) {
      lastEmit = now;
      emit({ type: 'progress', bytes: doneBytes, totalBytes });
    }
  };

  const manifestFromCache = (digest: string, size?: number): Buffer | undefined => {
    const p = blobPath(cache, digest);
    return hasBlob(p, size) ? fs.readFileSync(p) : undefined;
  };
  const saveManifest = (digest: string, body: Buffer) => writeFileAtomic(blobPath(cache, digest), body);

  const resolved: Array<BundleImage & { arch: BundleArch }> = [];
  const resolveLimit = pLimit(8);
  await Promise.all(
    [...wants.values()].flatMap((w) =>
      [...w.arches].map((arch) =>
        resolveLimit(async () => {
          const entry = lock.images[w.ref];
          const pin = entry?.platforms[arch];
          let manifest: Descriptor & { body: Buffer };
          let resolvedDigest: string;
          if (pin) {
            const body = manifestFromCache(pin.digest, pin.size) ?? (await fetchManifest(w.name, pin.digest));
            manifest = { mediaType: pin.mediaType, digest: pin.digest, size: pin.size, body };
            resolvedDigest = entry.digest;
          } else {
            if (frozen)
              throw new BuildError(
                `image ${w.ref} (${arch}) is not pinned in ${lockPath}; run the build without --frozen/--offline to resolve it`,
              );
            const r = await client.resolvePlatform(w.name, entry?.digest ?? w.name.tag!, arch, async (digest, size) => {
              await ensureBlob(w.name, { mediaType: '', digest, size });
              return fs.readFileSync(blobPath(cache, digest));
            });
            manifest = { mediaType: r.manifest.mediaType, digest: r.manifest.digest, size: r.manifest.size, body: r.manifest.body };
            resolvedDigest = r.resolvedDigest;
            const e = (lock.images[w.ref] ??= { digest: r.resolvedDigest, platforms: {} });
            e.digest = r.resolvedDigest;
            e.platforms[arch] = { digest: manifest.digest, size: manifest.size, mediaType: manifest.mediaType };
          }
          saveManifest(manifest.digest, manifest.body);
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
        }),
      ),
    ),
  );
  emit({ type: 'resolved', images: wants.size, arches });

  async function fetchManifest(name: ImageName, digest: string): Promise<Buffer> {
    if (opts.offline) throw new BuildError(`manifest ${digest} of ${formatImageRef(name)} is not in the cache and --offline is set`);
    return (await client.getManifest(name, digest)).body;
  }
  async function platformOf(w: ImageWant, config: Descriptor, arch: BundleArch): Promise<BundleImage['platform']> {
    await ensureBlob(w.name, config);
    const c = JSON.parse(fs.readFileSync(blobPath(cache, config.digest), 'utf8')) as {
      os?: string;
      architecture?: string;
      variant?: string;
    };
    const p = { os: c.os ?? 'linux', architecture: c.architecture ?? arch, ...(c.variant ? { variant: c.variant } : {}) };
    return p;
  }

  // ---- blobs ----
  const allBlobs = new Map<string, { size: number; name: ImageName }>();
  for (const img of resolved) {
    const name = wants.get(img.ref)!.name;
    for (const d of [img.config, ...img.layers]) allBlobs.set(d.digest, { size: d.size, name });
  }
  const missing = [...allBlobs].filter(([d, b]) => !hasBlob(blobPath(cache, d), b.size));
  totalBytes = missing.reduce((n, [, b]) => n + b.size, 0);
  doneBytes = 0;
  emit({ type: 'plan', missingBlobs: missing.length, missingBytes: totalBytes });
  await Promise.all(missing.map(([digest, b]) => ensureBlob(b.name, { mediaType: '', digest, size: b.size })));

  // ---- the bundle ----
  const byArch = new Map<BundleArch, BundleImage[]>();
  for (const { arch, ...img } of resolved) (byArch.get(arch) ?? byArch.set(arch, []).get(arch)!).push(img);
  const archesDoc: Partial<Record<BundleArch, ArchContent>> = {};
  const everything = new Map<string, number>();
  for (const arch of [...arches].sort()) {
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
    name: recipe.name,
    build: nextBuild(cache),
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
  const sig = signBytes(docBytes, opts.signingKey);

  const staging = `${outDir}.building-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(path.join(staging, 'blobs', 'sha256'), { recursive: true });
  const oldDir = fs.existsSync(outDir) ? outDir : undefined;
  for (const [digest, size] of everything) {
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
  fs.writeFileSync(path.join(staging, INDEX_FILE), indexBytes);
  fs.writeFileSync(path.join(staging, BUNDLE_FILE), docBytes);
  fs.writeFileSync(path.join(staging, SIGNATURE_FILE), JSON.stringify(sig, null, 2) + '\n');
  if (oldDir) {
    const trash = `${outDir}.old-${process.pid}`;
    fs.renameSync(oldDir, trash);
    fs.renameSync(staging, outDir);
    fs.rmSync(trash, { recursive: true, force: true });
  } else {
    fs.mkdirSync(path.dirname(outDir), { recursive: true });
    fs.renameSync(staging, outDir);
  }
  emit({ type: 'written', dir: outDir, blobs: doc.totals.blobs, bytes: doc.totals.bytes });

  // ---- lock: keep pins for arches not built this time, drop what the recipe no longer names ----
  const refsInRecipe = new Set<string>([...wants.keys()]);
  for (const f of Object.values(spec.fsm.features)) for (const i of f?.images ?? []) refsInRecipe.add(formatImageRef(parseImageRef(i.ref)));
  for (const r of k3sImageRefs) refsInRecipe.add(formatImageRef(parseImageRef(r)));
  for (const r of Object.keys(lock.images)) if (!refsInRecipe.has(r)) delete lock.images[r];
  const urlsInRecipe = new Set([...usedUrls, ...Object.keys(spec.arches).flatMap((a) => archUrls(spec, a as BundleArch, relUrl))]);
  for (const u of Object.keys(lock.files)) if (!urlsInRecipe.has(u)) delete lock.files[u];
  const lockWritten = frozen ? false : writeLock(lockPath, lock);

  return {
    dir: outDir,
    doc,
    lockPath,
    lockWritten,
    stats: {
      requests: client.stats.requests + files.stats.requests,
      downloadedBlobs: client.stats.blobsFetched,
      downloadedFiles: files.stats.filesFetched,
      downloadedBytes: client.stats.blobBytesFetched + files.stats.bytesFetched,
    },
  };
}

function archUrls(spec: RecipeSpec, arch: BundleArch, relUrl: (n: string) => string): string[] {
  const out = [relUrl(k3sChecksumName(arch)), relUrl(k3sBinaryName(arch))];
  if (spec.k3s.systemImages === 'archive') out.push(relUrl(k3sAirgapArchiveName(arch, spec.k3s.archiveFormat)));
  return out;
}

function chartVersion(spec: RecipeSpec): string {
  const m = /-(\d+\.\d+\.\d+[^/]*)\.tgz$/.exec(spec.fsm.chart.url);
  return m ? m[1]! : spec.fsm.version.replace(/^v/, '');
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const sha = (hex: string | undefined, source: string) => (hex ? { digest: `sha256:${hex}`, source } : {});
const strip = ({ path: _p, ...f }: BundleFile & { path: string }): BundleFile => f;

/** The POP-side script ships inside every bundle, content-addressed like everything else. */
async function popScript(popDir: string, cache: string): Promise<BundleFile & { path: string }> {
  const src = path.join(popDir, POP_ASSEMBLE_SCRIPT);
  const { digest, size } = await hashFile(src);
  const dest = blobPath(cache, digest);
  if (!hasBlob(dest, size)) copyBlob(src, dest);
  return { role: 'pop-script', name: POP_ASSEMBLE_SCRIPT, digest, size, url: '', path: dest };
}

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

/** Registry credentials from the environment: FSM_EDGE_REGISTRY_<HOST>_USER / _PASSWORD (host upper-cased, non-alnum → _). */
function registryCredentials(registry: string): { username: string; password: string } | undefined {
  const key = registry.toUpperCase().replace(/[^A-Z0-9]/g, '_');
  const username = process.env[`FSM_EDGE_REGISTRY_${key}_USER`];
  const password = process.env[`FSM_EDGE_REGISTRY_${key}_PASSWORD`];
  return username && password ? { username, password } : undefined;
}
