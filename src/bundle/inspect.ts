// `bundle inspect`: versions, per-arch files and images with sizes, totals and the signer.
import fs from 'node:fs';
import path from 'node:path';
import type { BundleArch } from '../config/recipe.js';
import { readBundleDoc, type BundleDoc } from './format.js';
import { SIGNATURE_FILE } from './layout.js';
import type { SignatureDoc } from './sign.js';

export interface InspectReport {
  dir: string;
  name: string;
  versions: BundleDoc['versions'];
  /** When it was built and its serial (a POP refuses a bundle older than the one it runs). */
  build: BundleDoc['build'];
  /** Key id the signature names (not checked here: `verifyBundle` does that). */
  signer: string | null;
  totals: BundleDoc['totals'];
  arches: Array<{
    arch: BundleArch;
    features: string[];
    totals: { blobs: number; bytes: number };
    files: Array<{ role: string; name: string; size: number; digest: string }>;
    images: Array<{ ref: string; group: string; platform: string; layers: number; size: number; manifest: string }>;
  }>;
}

export function inspectBundle(dir: string): InspectReport {
  const doc = readBundleDoc(dir);
  let signer: string | null = null;
  try {
    signer = (JSON.parse(fs.readFileSync(path.join(dir, SIGNATURE_FILE), 'utf8')) as SignatureDoc).keyId;
  } catch {
    signer = null;
  }
  return {
    dir,
    name: doc.name,
    versions: doc.versions,
    build: doc.build,
    signer,
    totals: doc.totals,
    arches: (Object.keys(doc.arches) as BundleArch[]).map((arch) => {
      const c = doc.arches[arch]!;
      return {
        arch,
        features: c.features,
        totals: c.totals,
        files: c.files.map((f) => ({ role: f.role, name: f.name, size: f.size, digest: f.digest })),
        images: c.images.map((i) => ({
          ref: i.ref,
          group: i.group,
          platform: `${i.platform.os}/${i.platform.architecture}${i.platform.variant ? `/${i.platform.variant}` : ''}`,
          layers: i.layers.length,
          size: i.size,
          manifest: i.manifest.digest,
        })),
      };
    }),
  };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** Human rendering: one block per arch, images in a column layout. */
export function renderInspect(r: InspectReport): string {
  const lines: string[] = [];
  lines.push(`bundle ${r.name}  (${r.dir})`);
  lines.push(`  built ${r.build.createdAt}   serial ${r.build.serial}`);
  lines.push(`  k3s ${r.versions.k3s}   fsm ${r.versions.fsm} (chart ${r.versions.chart})   pipy ${r.versions.pipy}`);
  lines.push(
    r.signer ? `  signature key ${r.signer} (checked by \`fsm-edge bundle verify --trust-key\`)` : '  unsigned (no bundle.json.sig)',
  );
  lines.push(`  ${r.totals.blobs} blobs, ${formatBytes(r.totals.bytes)} stored once across ${r.arches.length} arch(es)`);
  for (const a of r.arches) {
    lines.push('');
    lines.push(
      `${a.arch}: ${formatBytes(a.totals.bytes)} in ${a.totals.blobs} blobs   features: ${a.features.join(', ') || 'none (k3s only)'}`,
    );
    lines.push('  files');
    for (const f of a.files) lines.push(`    ${f.name.padEnd(30)} ${formatBytes(f.size).padStart(10)}  ${f.role}`);
    lines.push('  images');
    const w = Math.max(10, ...a.images.map((i) => i.ref.length));
    for (const i of a.images)
      lines.push(`    ${i.ref.padEnd(w)} ${formatBytes(i.size).padStart(10)}  ${String(i.layers).padStart(2)} layers  ${i.group}`);
  }
  return lines.join('\n');
}
