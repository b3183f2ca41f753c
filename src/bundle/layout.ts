// Every path of the bundle format, the build cache and the POP side, in one place.
import path from 'node:path';
import type { BundleArch } from '../config/recipe.js';

export const OCI_LAYOUT_FILE = 'oci-layout';
export const INDEX_FILE = 'index.json';
export const BUNDLE_FILE = 'bundle.json';
export const SIGNATURE_FILE = 'bundle.json.sig';
export const OCI_LAYOUT_CONTENT = '{"imageLayoutVersion":"1.0.0"}';

/** Where `bundle build` keeps its cache and writes bundles, relative to the working directory. */
export const AIRGAP_DIR = 'airgap';
export const cacheDir = (airgap = AIRGAP_DIR) => path.join(airgap, 'cache');
export const bundlesDir = (airgap = AIRGAP_DIR) => path.join(airgap, 'bundles');
export const defaultBundleDir = (name: string, airgap = AIRGAP_DIR) => path.join(bundlesDir(airgap), name);

/** `blobs/sha256/<hex>` under a bundle or the cache: the same layout, so blobs move between them unchanged. */
export function blobPath(root: string, digest: string): string {
  return path.join(root, 'blobs', 'sha256', hexOf(digest));
}
export const blobRelPath = (digest: string) => `blobs/sha256/${hexOf(digest)}`;

/** Cache: which digest a URL or an image tag resolved to (only used when the lock has no answer yet). */
export const cacheRefsDir = (cache: string) => path.join(cache, 'refs');

export function hexOf(digest: string): string {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m) throw new Error(`not a sha256 digest: ${digest}`);
  return m[1]!;
}
export const isDigest = (s: string) => /^sha256:[a-f0-9]{64}$/.test(s);

/** The lock file sits beside the recipe: `recipe.yaml` → `recipe.lock.yaml`. */
export function lockPathFor(recipePath: string): string {
  const dir = path.dirname(recipePath);
  const base = path.basename(recipePath).replace(/\.ya?ml$/, '');
  return path.join(dir, `${base}.lock.yaml`);
}

/** The POP-side files every bundle carries (source tree: `bundle/pop/`). */
export const POP_ASSEMBLE_SCRIPT = 'assemble.sh';

// ---- k3s release asset names (k3s scripts/validate-artifacts, install.sh setup_verify_arch) ----
export function k3sBinaryName(arch: BundleArch): string {
  return arch === 'amd64' ? 'k3s' : arch === 'arm64' ? 'k3s-arm64' : 'k3s-armhf';
}
export const k3sChecksumName = (arch: BundleArch) => `sha256sum-${arch}.txt`;
export const k3sAirgapArchiveName = (arch: BundleArch, ext: string) => `k3s-airgap-images-${arch}.${ext}`;
export const K3S_IMAGE_LIST = 'k3s-images.txt';

// ---- The POP ----
/** fsm-edge's own state on a POP (journal, lock, blob store); the engine's pop-layout.ts lists every POP path. */
export const POP_STATE_DIR = '/var/lib/fsm-edge';
export const POP_STORE_DIR = `${POP_STATE_DIR}/store`;
export const POP_K3S_BINARY = '/usr/local/bin/k3s';
export const POP_INSTALL_SCRIPT = `${POP_STATE_DIR}/k3s/install.sh`;
export const POP_K3S_IMAGES_DIR = '/var/lib/rancher/k3s/agent/images';
export const POP_STATIC_CHARTS_DIR = '/var/lib/rancher/k3s/server/static/charts';
/** Our image archives in agent/images start with this, so stale ones from an older bundle can be removed. */
export const POP_ARCHIVE_PREFIX = 'fsm-edge_';
