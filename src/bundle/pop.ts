// How a POP consumes a bundle. The controller syncs one arch's blobs into the POP's content-addressed store
// (`wantedBlobs` → Host.syncBlobs), so the link carries each blob once; then `bundle/pop/assemble.sh` (itself a
// blob of the bundle) builds from the store the files k3s needs, following a plan made here.
import { shellQuote } from '../transport/remote-command.js';
import path from 'node:path';
import type { BlobWant } from '../transport/host.js';
import type { BundleArch } from '../config/recipe.js';
import { SAFE_NAME, archBlobs, archContent, type BundleDoc, type BundleImage, type ImageGroup } from './format.js';
import {
  POP_ARCHIVE_PREFIX,
  POP_INSTALL_SCRIPT,
  POP_K3S_BINARY,
  POP_K3S_IMAGES_DIR,
  POP_STATIC_CHARTS_DIR,
  POP_STORE_DIR,
  blobPath,
  hexOf,
} from './layout.js';
import { parseImageRef } from './oci-client.js';

/** Every blob the POP of `arch` needs, each once, small first (manifests before layers), with its bundle path. */
export function wantedBlobs(bundleDir: string, doc: BundleDoc, arch: BundleArch): BlobWant[] {
  const blobs = archBlobs(archContent(doc, arch));
  return [...blobs]
    .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))
    .map(([digest, size]) => ({ digest, size, sourcePath: blobPath(bundleDir, digest) }));
}

export interface PopPaths {
  k3sBinary: string;
  installScript: string;
  imagesDir: string;
  chartsDir: string;
}
export const DEFAULT_POP_PATHS: PopPaths = {
  k3sBinary: POP_K3S_BINARY,
  installScript: POP_INSTALL_SCRIPT,
  imagesDir: POP_K3S_IMAGES_DIR,
  chartsDir: POP_STATIC_CHARTS_DIR,
};

export interface PopAssembleOptions {
  /** Which image archives to write: k3s needs its system images at first boot, the mesh ones can follow. */
  images?: 'all' | ImageGroup;
  paths?: Partial<PopPaths>;
  /**
   * Remove our archives from older bundles (`fsm-edge_*.tar` not in this plan) so k3s does not import them again.
   * Default: only when the plan writes every image (`images: 'all'`), so a partial plan never removes the rest.
   */
  prune?: boolean;
}

export interface PopAssembly {
  /** The plan file's content (put it on the POP, e.g. with Host.writeFile). */
  plan: string;
  /** Digest of assemble.sh in the store. */
  scriptDigest: string;
  /** What the plan writes: path on the POP → what it is. */
  outputs: Array<{ kind: 'file' | 'image'; path: string; what: string }>;
}

/** The archive file name for one image: versioned by manifest digest, so k3s re-imports exactly on change. */
export function archiveName(img: BundleImage, arch: BundleArch): string {
  const n = parseImageRef(img.ref);
  const repo = `${n.registry === 'docker.io' ? '' : `${n.registry}-`}${n.repository}`.replace(/[^A-Za-z0-9.-]+/g, '-');
  const tag = (n.tag ?? 'untagged').replace(/[^A-Za-z0-9.-]+/g, '-');
  return `${POP_ARCHIVE_PREFIX}${repo}_${tag}_${arch}_${hexOf(img.manifest.digest).slice(0, 12)}.tar`;
}

/** The OCI index.json of a one-image layout: the name containerd (and k3s) tag the import with. */
export function imageIndexJson(img: BundleImage): string {
  const tag = parseImageRef(img.ref).tag ?? '';
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: img.manifest.mediaType,
        digest: img.manifest.digest,
        size: img.manifest.size,
        platform: img.platform,
        annotations: { 'io.containerd.image.name': img.ref, 'org.opencontainers.image.ref.name': tag },
      },
    ],
  });
}

export function popAssemblePlan(doc: BundleDoc, arch: BundleArch, opts: PopAssembleOptions = {}): PopAssembly {
  const c = archContent(doc, arch);
  const p = { ...DEFAULT_POP_PATHS, ...opts.paths };
  const lines = ['fsm-edge-plan 1'];
  const outputs: PopAssembly['outputs'] = [];
  for (const f of c.files) {
    let dest: string | undefined;
    let fileMode = '0644';
    if (f.role === 'k3s-binary') [dest, fileMode] = [p.k3sBinary, '0755'];
    else if (f.role === 'k3s-install-script') [dest, fileMode] = [p.installScript, '0755'];
    else if (f.role === 'fsm-chart') dest = inDir(p.chartsDir, f.name);
    else if (f.role === 'k3s-airgap-images') dest = inDir(p.imagesDir, f.name);
    if (!dest) continue;
    lines.push(`file ${hexOf(f.digest)} ${f.size} ${fileMode} ${safePath(dest)}`);
    outputs.push({ kind: 'file', path: dest, what: `${f.role} ${f.name}` });
  }
  const group = opts.images ?? 'all';
  for (const img of c.images) {
    if (group !== 'all' && img.group !== group) continue;
    const dest = path.posix.join(p.imagesDir, archiveName(img, arch));
    lines.push(`image ${safePath(dest)} ${imageIndexJson(img)}`);
    for (const d of [img.manifest, img.config, ...img.layers]) lines.push(`blob ${hexOf(d.digest)} ${d.size}`);
    outputs.push({ kind: 'image', path: dest, what: img.ref });
  }
  if (opts.prune ?? group === 'all') lines.push(`prune ${safePath(p.imagesDir)} ${POP_ARCHIVE_PREFIX}`);
  const script = c.files.find((f) => f.role === 'pop-script');
  if (!script) throw new Error(`bundle ${doc.name} (${arch}) carries no assemble.sh; rebuild it with this fsm-edge`);
  return { plan: lines.join('\n') + '\n', scriptDigest: script.digest, outputs };
}

export interface PopCommandOptions {
  /** Default /var/lib/fsm-edge/store. */
  storeDir?: string;
  /** Where the plan was written on the POP. */
  planPath: string;
  /** `check` reports what would change and changes nothing. */
  mode?: 'apply' | 'check';
  /** Prefix for every output path (tests, chroots). Default `/`. */
  root?: string;
}

/** The command line that runs assemble.sh from the store (no secrets in it, so it is safe in argv and logs). */
export function popAssembleCommand(assembly: Pick<PopAssembly, 'scriptDigest'>, opts: PopCommandOptions): string {
  const store = opts.storeDir ?? POP_STORE_DIR;
  const script = `${store.replace(/\/+$/, '')}/sha256/${hexOf(assembly.scriptDigest)}`;
  return ['sh', script, opts.mode ?? 'apply', store, opts.planPath, opts.root ?? '/'].map(shellQuote).join(' ');
}

export interface AssembleReport {
  changed: string[];
  unchanged: string[];
  removed: string[];
}

/** Parses assemble.sh's stdout. */
export function parseAssembleOutput(stdout: string): AssembleReport {
  const r: AssembleReport = { changed: [], unchanged: [], removed: [] };
  for (const line of stdout.split('\n')) {
    const m = /^(changed|unchanged|would-change|removed|would-remove) (file|image) (.+)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === 'changed' || m[1] === 'would-change') r.changed.push(m[3]!);
    else if (m[1] === 'unchanged') r.unchanged.push(m[3]!);
    else r.removed.push(m[3]!);
  }
  return r;
}

/** `dir/name` for a name from bundle.json, which must be a plain file name (the schema already checked it). */
function inDir(dir: string, name: string): string {
  if (!SAFE_NAME.test(name) || name.includes('..') || path.posix.basename(name) !== name)
    throw new Error(`bundle file name ${JSON.stringify(name)} is not a plain file name; refusing to place it in ${dir}`);
  return path.posix.join(dir, name);
}

function safePath(p: string): string {
  if (!/^\/[A-Za-z0-9._+@/-]+$/.test(p)) throw new Error(`POP path ${p} must be absolute and contain no spaces or shell characters`);
  return p;
}
