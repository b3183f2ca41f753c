// `bundle diff A B`: what upgrading a POP from bundle A to bundle B sends over its link, per arch: the blobs of B
// the POP does not already hold from A (each once), and which images and files they belong to.
import type { BundleArch } from '../config/recipe.js';
import { archBlobs, readBundleDoc, sumBytes, type ArchContent } from './format.js';

export interface ArchDiff {
  arch: BundleArch;
  /** Bytes and blobs B needs that A does not have: what the link carries. */
  send: { blobs: number; bytes: number };
  /** What the POP already holds and reuses. */
  reuse: { blobs: number; bytes: number };
  /** Blobs of A that B no longer needs (can be pruned from the POP store afterwards). */
  drop: { blobs: number; bytes: number };
  images: Array<{
    ref: string;
    change: 'added' | 'changed' | 'removed';
    newLayers: Array<{ digest: string; size: number }>;
    sendBytes: number;
  }>;
  files: Array<{ name: string; change: 'added' | 'changed' | 'removed'; size: number }>;
}

export interface BundleDiff {
  from: { dir: string; name: string; versions: Record<string, string> };
  to: { dir: string; name: string; versions: Record<string, string> };
  arches: ArchDiff[];
  /** Arches only one side has (a POP of that arch cannot upgrade with B / has nothing in A). */
  onlyIn: { from: BundleArch[]; to: BundleArch[] };
}

export function diffBundles(fromDir: string, toDir: string): BundleDiff {
  const a = readBundleDoc(fromDir);
  const b = readBundleDoc(toDir);
  const archesA = Object.keys(a.arches) as BundleArch[];
  const archesB = Object.keys(b.arches) as BundleArch[];
  const arches: ArchDiff[] = [];
  for (const arch of archesB.filter((x) => archesA.includes(x))) arches.push(diffArch(arch, a.arches[arch]!, b.arches[arch]!));
  return {
    from: { dir: fromDir, name: a.name, versions: a.versions },
    to: { dir: toDir, name: b.name, versions: b.versions },
    arches,
    onlyIn: { from: archesA.filter((x) => !archesB.includes(x)), to: archesB.filter((x) => !archesA.includes(x)) },
  };
}

function diffArch(arch: BundleArch, a: ArchContent, b: ArchContent): ArchDiff {
  const have = archBlobs(a);
  const need = archBlobs(b);
  const send = new Map([...need].filter(([d]) => !have.has(d)));
  const reuse = new Map([...need].filter(([d]) => have.has(d)));
  const drop = new Map([...have].filter(([d]) => !need.has(d)));
  const imagesA = new Map(a.images.map((i) => [i.ref, i]));
  const imagesB = new Map(b.images.map((i) => [i.ref, i]));
  const counted = new Set<string>();
  const images: ArchDiff['images'] = [];
  for (const [ref, img] of imagesB) {
    const old = imagesA.get(ref);
    if (old && old.manifest.digest === img.manifest.digest) continue;
    const newLayers = img.layers.filter((l) => !have.has(l.digest)).map((l) => ({ digest: l.digest, size: l.size }));
    let sendBytes = 0;
    for (const d of [img.manifest, img.config, ...img.layers])
      if (!have.has(d.digest) && !counted.has(d.digest)) {
        counted.add(d.digest);
        sendBytes += d.size;
      }
    images.push({ ref, change: old ? 'changed' : 'added', newLayers, sendBytes });
  }
  for (const ref of imagesA.keys()) if (!imagesB.has(ref)) images.push({ ref, change: 'removed', newLayers: [], sendBytes: 0 });
  const filesA = new Map(a.files.map((f) => [f.name, f]));
  const filesB = new Map(b.files.map((f) => [f.name, f]));
  const files: ArchDiff['files'] = [];
  for (const [n, f] of filesB) {
    const old = filesA.get(n);
    if (!old) files.push({ name: n, change: 'added', size: f.size });
    else if (old.digest !== f.digest) files.push({ name: n, change: 'changed', size: f.size });
  }
  for (const n of filesA.keys()) if (!filesB.has(n)) files.push({ name: n, change: 'removed', size: 0 });
  return {
    arch,
    send: { blobs: send.size, bytes: sumBytes(send) },
    reuse: { blobs: reuse.size, bytes: sumBytes(reuse) },
    drop: { blobs: drop.size, bytes: sumBytes(drop) },
    images,
    files,
  };
}
