// LAB STAND-IN support (never imported by src/): tiny synthetic OCI image-layout archives, like the ones
// `ctr images export` writes, for images that cannot be downloaded here (FSM, Pipy, k3s system images).
// Each platform gets its own one-file layer, so an import for the wrong platform is visible.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import zlib from 'node:zlib';
import { normalizeImageRef } from './fsm-images.js';
import { tarOf } from '../images/synthetic.js';

export interface SyntheticImage {
  /** e.g. `flomesh/fsm-controller:1.5.1` (normalized to docker.io/… in the archive). */
  ref: string;
  /** Platforms to include, e.g. ['amd64'] or ['amd64', 'arm64'] (a multi-platform index). */
  archs: string[];
  /** Extra bytes in each layer (to make archives of a given size). Default 0. */
  padBytes?: number;
}

export interface OciArchiveOptions {
  /** Leave out the blobs of these platforms while still listing them in the index (an incomplete archive). */
  dropBlobsFor?: string[];
  /** gzip the whole archive (`.tar.gz`) instead of a plain `.tar`. */
  gzip?: boolean;
}

const sha = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex');

/** Writes one OCI layout tar holding all `images`; returns the file path. Deterministic for the same input. */
export function writeOciArchive(outFile: string, images: SyntheticImage[], opts: OciArchiveOptions = {}): string {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'oci-archive-'));
  try {
    const blobs = path.join(work, 'blobs', 'sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const put = (b: Buffer, platform?: string) => {
      const d = sha(b);
      if (!platform || !opts.dropBlobsFor?.includes(platform)) fs.writeFileSync(path.join(blobs, d), b);
      return { digest: `sha256:${d}`, size: b.length };
    };
    const index: unknown[] = [];
    for (const img of images) {
      const name = normalizeImageRef(img.ref);
      const manifests = img.archs.map((arch) => {
        const content = Buffer.concat([
          Buffer.from(`${name} for linux/${arch} (fsm-edge lab synthetic image)\n`),
          Buffer.alloc(img.padBytes ?? 0),
        ]);
        const layerTar = tarOf({ 'image.txt': content });
        const layerGz = zlib.gzipSync(layerTar, { level: 1 });
        const layer = put(layerGz, arch);
        const config = put(
          Buffer.from(
            JSON.stringify({
              architecture: arch,
              os: 'linux',
              config: { Cmd: ['/image.txt'] },
              rootfs: { type: 'layers', diff_ids: [`sha256:${sha(layerTar)}`] },
            }),
          ),
          arch,
        );
        const manifest = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
            layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
          }),
        );
        return {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...put(manifest, arch),
          platform: { architecture: arch, os: 'linux' },
        };
      });
      const tag = name.slice(name.lastIndexOf(':') + 1);
      const annotations = { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag };
      if (manifests.length === 1) index.push({ ...manifests[0], annotations });
      else {
        const idx = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }));
        index.push({ mediaType: 'application/vnd.oci.image.index.v1+json', ...put(idx), annotations });
      }
    }
    fs.writeFileSync(path.join(work, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    fs.writeFileSync(
      path.join(work, 'index.json'),
      JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: index }),
    );
    fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
    const tar = execFileSync(
      'tar',
      [
        '--sort=name',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '--mtime=@0',
        '--format=posix',
        '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
        '-C',
        work,
        '-cf',
        '-',
        'oci-layout',
        'index.json',
        'blobs',
      ],
      { maxBuffer: 1 << 30 },
    );
    fs.writeFileSync(outFile, opts.gzip ? zlib.gzipSync(tar) : tar);
    return outFile;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
