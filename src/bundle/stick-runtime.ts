// The Node.js runtimes a USB stick carries: the official release tarballs (`node-<v>-linux-<arch>.tar.xz`), pinned
// like k3s — the version in the recipe, the release's SHASUMS256.txt pinned by digest (in the recipe, or in the
// runtime lock beside it at the first export), every tarball checked against that file before a byte of it is
// unpacked, and only `bin/node` and `LICENSE` taken out of it, as regular files.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { NODE_RUNTIME_ARCHES, type NodeRuntime, type NodeRuntimeArch } from '../config/recipe.js';
import { hashFile } from './blob-file.js';
import { emptyLock, type Lock, readLock, RecipeError, writeLock } from './lock-file.js';
import { expandUrl, parseSha256Sums, ReleaseFiles } from './release-files.js';

export const NODE_CHECKSUMS_FILE = 'SHASUMS256.txt';
export const nodeTarballName = (version: string, arch: NodeRuntimeArch) => `node-${version}-linux-${arch}.tar.xz`;
/** `recipe.yaml` → `recipe.runtime.lock.yaml`: the bundle's own lock stays the bundle build's. */
export const runtimeLockPath = (recipePath: string) => recipePath.replace(/(\.ya?ml)?$/, '.runtime.lock.yaml');

export class StickRuntimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StickRuntimeError';
  }
}

export interface NodeTarball {
  arch: NodeRuntimeArch;
  name: string;
  url: string;
  digest: string;
  size: number;
  /** In the cache's blob store. */
  path: string;
}

export interface FetchRuntimesResult {
  version: string;
  checksums: { url: string; digest: string; pinnedBy: 'the recipe' | 'the runtime lock' | 'first use (now in the runtime lock)' };
  tarballs: NodeTarball[];
  lockPath: string;
  lockWritten: boolean;
}

export interface FetchRuntimesOptions {
  runtime: NodeRuntime;
  recipePath: string;
  cacheDir: string;
  arches?: readonly NodeRuntimeArch[];
  fetchImpl?: typeof fetch;
  /** Only the cache; everything pinned. */
  offline?: boolean;
  onFile?: (label: string, state: 'cached' | 'downloaded', size: number) => void;
}

/** Downloads (or finds in the cache) and verifies the Node.js tarballs of the wanted arches. */
export async function fetchNodeRuntimes(o: FetchRuntimesOptions): Promise<FetchRuntimesResult> {
  const { version } = o.runtime;
  const base = expandUrl(o.runtime.releaseUrl, { version }).replace(/\/+$/, '');
  const lockPath = runtimeLockPath(o.recipePath);
  const lock: Lock = readLock(lockPath) ?? emptyLock();
  const files = new ReleaseFiles({ cache: o.cacheDir, fetchImpl: o.fetchImpl, offline: o.offline });

  const sumsUrl = `${base}/${NODE_CHECKSUMS_FILE}`;
  const locked = lock.files[sumsUrl];
  const recipeDigest = o.runtime.checksumsSha256 ? `sha256:${o.runtime.checksumsSha256}` : undefined;
  if (recipeDigest && locked && locked.digest !== recipeDigest)
    throw new RecipeError(
      `${sumsUrl}: the recipe pins ${recipeDigest} but ${lockPath} pins ${locked.digest}`,
      'check which is right, then delete the lock entry',
    );
  if (!recipeDigest && !locked && o.offline)
    throw new StickRuntimeError(`${sumsUrl} is not pinned (recipe runtime.node.checksumsSha256 or ${lockPath}); export once with network`);
  const expect = recipeDigest
    ? { digest: recipeDigest, source: 'the recipe' }
    : locked
      ? { digest: locked.digest, source: 'the runtime lock' }
      : {};
  const sums = await files.get(sumsUrl, `Node.js ${version} ${NODE_CHECKSUMS_FILE}`, expect);
  o.onFile?.(`Node.js ${version} ${NODE_CHECKSUMS_FILE}`, sums.downloaded ? 'downloaded' : 'cached', sums.size);
  const pinnedBy = recipeDigest ? 'the recipe' : locked ? 'the runtime lock' : 'first use (now in the runtime lock)';
  lock.files[sumsUrl] = { digest: sums.digest, size: sums.size };
  const digests = parseSha256Sums(fs.readFileSync(sums.path, 'utf8'));

  const tarballs: NodeTarball[] = [];
  for (const arch of o.arches ?? o.runtime.arches) {
    if (!(NODE_RUNTIME_ARCHES as readonly string[]).includes(arch)) throw new StickRuntimeError(`runtime arch ${arch}: use x64 or arm64`);
    const name = nodeTarballName(version, arch);
    const digest = digests.get(name);
    if (!digest)
      throw new StickRuntimeError(`${sumsUrl} has no line for ${name}; is ${version} a Node.js release with Linux ${arch} builds?`);
    const url = `${base}/${name}`;
    const f = await files.get(url, name, { digest, source: `${NODE_CHECKSUMS_FILE} of Node.js ${version}` });
    o.onFile?.(name, f.downloaded ? 'downloaded' : 'cached', f.size);
    tarballs.push({ arch, name, url, digest: f.digest, size: f.size, path: f.path });
  }
  const lockWritten = o.offline ? false : writeLock(lockPath, lock);
  return { version, checksums: { url: sumsUrl, digest: sums.digest, pinnedBy }, tarballs, lockPath, lockWritten };
}

const run = promisify(execFile);

/**
 * Takes `bin/node` and `LICENSE` out of a verified tarball into `destDir` (→ `destDir/bin/node`, `destDir/LICENSE`).
 * The system `tar` with xz does the unpacking (Node has no xz decoder); only the two named members are extracted,
 * into a fresh directory, and each must come out as a regular file.
 */
export async function extractNodeRuntime(t: NodeTarball, version: string, destDir: string): Promise<{ node: string; digest: string }> {
  const again = await hashFile(t.path);
  if (again.digest !== t.digest) throw new StickRuntimeError(`${t.path}: the cached ${t.name} changed since it was verified; delete it`);
  const top = `node-${version}-linux-${t.arch}`;
  fs.mkdirSync(destDir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(path.resolve(destDir), '.unpack-'));
  try {
    await run('tar', ['-xJf', t.path, '-C', tmp, '--no-same-owner', '--no-same-permissions', `${top}/bin/node`, `${top}/LICENSE`], {
      timeout: 600_000,
      maxBuffer: 1024 * 1024,
    }).catch((e: Error & { stderr?: string }) => {
      throw new StickRuntimeError(`unpacking ${t.name}: ${(e.stderr || e.message).trim()} (needs tar and xz on this machine)`);
    });
    const node = path.join(tmp, top, 'bin', 'node');
    const license = path.join(tmp, top, 'LICENSE');
    for (const f of [node, license])
      if (!fs.lstatSync(f).isFile()) throw new StickRuntimeError(`${t.name}: ${path.relative(tmp, f)} is not a regular file`);
    fs.mkdirSync(path.join(destDir, 'bin'), { recursive: true });
    fs.renameSync(node, path.join(destDir, 'bin', 'node'));
    fs.chmodSync(path.join(destDir, 'bin', 'node'), 0o755);
    fs.renameSync(license, path.join(destDir, 'LICENSE'));
    fs.chmodSync(path.join(destDir, 'LICENSE'), 0o644);
    return { node: path.join(destDir, 'bin', 'node'), digest: (await hashFile(path.join(destDir, 'bin', 'node'))).digest };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
