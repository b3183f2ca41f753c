// Small, real OCI images built in memory (tar layers, gzip, config with correct diff_ids) and pushed to a real
// registry over the distribution API — stand-ins for FSM/k3s images, under their real names and tags.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { gzipSync } from 'node:zlib';

export type SynthArch = 'amd64' | 'arm64' | 'arm';

export interface Blob {
  digest: string;
  size: number;
  mediaType: string;
  /** In memory for small blobs; a file for big ones (pushed by streaming). */
  data?: Buffer;
  file?: string;
}

export interface SynthLayer extends Blob {
  diffId: string;
}

export interface SynthImage {
  arch: SynthArch;
  manifest: Blob & { data: Buffer };
  config: Blob & { data: Buffer };
  layers: SynthLayer[];
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A minimal ustar archive of regular files (what containerd unpacks as a layer). */
export function tarOf(files: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, content] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const byte of h) sum += byte;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    parts.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function layerOf(files: Record<string, string | Buffer>): SynthLayer {
  const raw = tarOf(files);
  const data = gzipSync(raw, { level: 6 });
  return { digest: sha(data), size: data.length, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', data, diffId: sha(raw) };
}

/**
 * A layer of `size` random (incompressible) bytes written to `file` in chunks — never held in memory. It is not a
 * valid tar: it exists to push a big blob through a build.
 */
export function bigBlobLayer(file: string, size: number): SynthLayer {
  const fd = fs.openSync(file, 'w');
  const hash = createHash('sha256');
  const chunk = 4 << 20;
  for (let off = 0; off < size; off += chunk) {
    const b = randomBytes(Math.min(chunk, size - off));
    hash.update(b);
    fs.writeSync(fd, b);
  }
  fs.closeSync(fd);
  const digest = `sha256:${hash.digest('hex')}`;
  return { digest, size, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', file, diffId: digest };
}

export function imageOf(arch: SynthArch, layers: SynthLayer[], variant?: string): SynthImage {
  const config = Buffer.from(
    JSON.stringify({
      architecture: arch,
      os: 'linux',
      ...(variant ? { variant } : {}),
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const cfg = { digest: sha(config), size: config.length, mediaType: 'application/vnd.oci.image.config.v1+json', data: config };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: cfg.mediaType, digest: cfg.digest, size: cfg.size },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }),
  );
  return {
    arch,
    config: cfg,
    layers,
    manifest: { digest: sha(manifest), size: manifest.length, mediaType: 'application/vnd.oci.image.manifest.v1+json', data: manifest },
  };
}

export function indexOf(images: SynthImage[]): Blob & { data: Buffer } {
  const data = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: images.map((i) => ({
        mediaType: i.manifest.mediaType,
        digest: i.manifest.digest,
        size: i.manifest.size,
        platform: { os: 'linux', architecture: i.arch },
      })),
    }),
  );
  return { digest: sha(data), size: data.length, mediaType: 'application/vnd.oci.image.index.v1+json', data };
}

async function pushBlob(registry: string, repo: string, b: Blob): Promise<void> {
  const head = await fetch(`${registry}/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' });
  if (head.status === 200) return;
  const start = await fetch(`${registry}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`push ${repo} ${b.digest}: start upload HTTP ${start.status}`);
  const loc = new URL(start.headers.get('location')!, registry);
  loc.searchParams.set('digest', b.digest);
  const body = b.data ?? (fs.createReadStream(b.file!) as unknown as ReadableStream);
  const put = await fetch(loc, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(b.size) },
    body: body as never,
    duplex: 'half',
  } as RequestInit);
  if (put.status !== 201) throw new Error(`push ${repo} ${b.digest}: PUT HTTP ${put.status} ${await put.text()}`);
}

async function putManifest(registry: string, repo: string, reference: string, m: Blob & { data: Buffer }): Promise<void> {
  const res = await fetch(`${registry}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'Content-Type': m.mediaType },
    body: m.data,
  });
  if (res.status !== 201) throw new Error(`push ${repo}:${reference}: HTTP ${res.status} ${await res.text()}`);
}

/**
 * Pushes `images` as `repo:tag` to the registry at `registry` (`http://127.0.0.1:5000`): a multi-arch index when
 * `index` (default when more than one image), else the single manifest.
 */
export async function pushImage(
  registry: string,
  repo: string,
  tag: string,
  images: SynthImage[],
  opts: { index?: boolean } = {},
): Promise<string> {
  for (const img of images) {
    for (const l of img.layers) await pushBlob(registry, repo, l);
    await pushBlob(registry, repo, img.config);
    await putManifest(registry, repo, img.manifest.digest, img.manifest);
  }
  if (opts.index ?? images.length > 1) {
    const idx = indexOf(images);
    await putManifest(registry, repo, tag, idx);
    return idx.digest;
  }
  await putManifest(registry, repo, tag, images[0]!.manifest);
  return images[0]!.manifest.digest;
}

/** Strip `docker.io/` (the lab registry stands in for it through a mirror) and add `library/` like Docker does. */
export function repoPathOf(ref: string): { repo: string; tag: string } {
  const at = ref.lastIndexOf(':');
  let repo = ref.slice(0, at).replace(/^docker\.io\//, '');
  if (!repo.includes('/')) repo = `library/${repo}`;
  return { repo, tag: ref.slice(at + 1) };
}

/**
 * Stand-ins for a list of real image references, for each arch, all sharing one base layer (as real images
 * share a distro base), each with its own small layer naming the image and arch.
 */
export async function pushStandInImages(registry: string, refs: string[], arches: SynthArch[], salt = ''): Promise<void> {
  const base = new Map(arches.map((a) => [a, layerOf({ 'etc/os-release': `ID=fsm-edge-lab\nARCH=${a}\n` })]));
  for (const ref of refs) {
    const { repo, tag } = repoPathOf(ref);
    const images = arches.map((a) =>
      imageOf(a, [base.get(a)!, layerOf({ 'standin.txt': `lab stand-in for ${ref} (${a})${salt}\n` })], a === 'arm' ? 'v7' : undefined),
    );
    await pushImage(registry, repo, tag, images, { index: true });
  }
}
