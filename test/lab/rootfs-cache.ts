// Cached POP root filesystems, outside the repo (LAB_CACHE). Two stages, each a tar.zst keyed on the inputs
// that shape it, so editing either rebuilds exactly what it affects:
//   debootstrap-<arch>-<k1>.tar.zst   k1 = arch + rootfs-packages.txt + rootfs-debootstrap.sh   (minutes)
//   rootfs-<arch>-<k2>.tar.zst        k2 = k1 + rootfs-prep.sh                                    (seconds)
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { LabArch } from './types.js';
import { LAB_CACHE, LAB_SRC } from './paths.js';
import { arm64Registered, ensureArm64Binfmt, removeArm64Binfmt } from './binfmt.js';
import { run } from './proc.js';

const src = (f: string) => fs.readFileSync(path.join(LAB_SRC, f));
const hash = (...parts: (string | Buffer)[]) => {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
};

export function rootfsCachePaths(arch: LabArch) {
  const k1 = hash(`${arch}\n`, src('rootfs-packages.txt'), src('rootfs-debootstrap.sh'));
  const k2 = hash(k1, src('rootfs-prep.sh'));
  return {
    key: k2,
    debootstrap: path.join(LAB_CACHE, `debootstrap-${arch}-${k1}.tar.zst`),
    rootfs: path.join(LAB_CACHE, `rootfs-${arch}-${k2}.tar.zst`),
  };
}

export interface CacheReport {
  arch: LabArch;
  path: string;
  built: boolean;
  seconds: number;
}

/** Builds the root filesystem cache of `arch` if missing (idempotent; concurrent callers wait on a lock). */
export async function ensureRootfsCache(arch: LabArch, log: (line: string) => void = () => {}): Promise<CacheReport> {
  const t0 = Date.now();
  const p = rootfsCachePaths(arch);
  if (fs.existsSync(p.rootfs)) return { arch, path: p.rootfs, built: false, seconds: 0 };
  fs.mkdirSync(LAB_CACHE, { recursive: true });
  const hadBinfmt = arm64Registered();
  if (arch === 'arm64') await ensureArm64Binfmt();
  try {
    log(`lab cache: building ${path.basename(p.rootfs)} (${arch}; debootstrap takes minutes the first time)`);
    await run('flock', [
      path.join(LAB_CACHE, `${arch}.lock`),
      path.join(LAB_SRC, 'rootfs-build.sh'),
      arch,
      p.debootstrap,
      p.rootfs,
      LAB_CACHE,
    ]);
  } finally {
    if (arch === 'arm64' && !hadBinfmt) removeArm64Binfmt();
  }
  return { arch, path: p.rootfs, built: true, seconds: (Date.now() - t0) / 1000 };
}

/**
 * The unpacked base tree of `arch` (the read-only overlay lower of every POP), next to its tarball in the cache.
 * Unpacked once per cache key (~9 s on disk), so a warm `labUp` unpacks nothing.
 */
export async function ensureRootfsTree(arch: LabArch, log: (line: string) => void = () => {}): Promise<string> {
  const { rootfs } = rootfsCachePaths(arch);
  const tree = rootfs.replace(/\.tar\.zst$/, '.tree');
  if (fs.existsSync(path.join(tree, '.lab-complete'))) return tree;
  await ensureRootfsCache(arch, log);
  await run('flock', [
    path.join(LAB_CACHE, `${arch}.lock`),
    'bash',
    '-ec',
    `[ -f "$2/.lab-complete" ] && exit 0
     rm -rf "$2.part" "$2"; mkdir -p "$2.part"
     tar -C "$2.part" --numeric-owner --xattrs --xattrs-include='*' --zstd -xf "$1"
     touch "$2.part/.lab-complete"; mv "$2.part" "$2"
     # a superseded tree may still be the overlay lower of a running POP (in any mount namespace): keep it then
     for t in "$3"/rootfs-"$4"-*.tree; do
       [ "$t" = "$2" ] && continue
       grep -qsF "$t" /proc/[0-9]*/mountinfo || rm -rf "$t"
     done`,
    'sh',
    rootfs,
    tree,
    LAB_CACHE,
    arch,
  ]);
  return tree;
}
