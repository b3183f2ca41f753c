// A small, complete, signed bundle written directly (no registry, no network): real blobs, index.json, oci-layout,
// a bundle.json that passes the schema and its signature. For unit tests of verify, the schema and assembly.
// `mutate` edits the document before it is signed, so a test can make a bundle "re-signed by its own key".
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BundleDoc, BundleFile, BundleImage } from '../../src/bundle/format.js';
import { archBlobs, sumBytes } from '../../src/bundle/format.js';
import { signBytes } from '../../src/bundle/sign.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface SyntheticBundle {
  dir: string;
  doc: BundleDoc;
  bytes: Buffer;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface SyntheticOptions {
  keys?: { privateKey: KeyObject; publicKey: KeyObject };
  build?: BundleDoc['build'];
  /** Change the document before it is signed (the signature stays valid). */
  mutate?: (doc: BundleDoc) => void;
}

export function writeSyntheticBundle(dir: string, opts: SyntheticOptions = {}): SyntheticBundle {
  const keys = opts.keys ?? generateKeyPairSync('ed25519');
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (data: Buffer | string) => {
    const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
    fs.writeFileSync(path.join(dir, 'blobs', 'sha256', sha(b).slice(7)), b);
    return { digest: sha(b), size: b.length };
  };
  const file = (role: BundleFile['role'], name: string, data: string, url = ''): BundleFile => ({ role, name, ...put(data), url });
  const files: BundleFile[] = [
    file('k3s-binary', 'k3s', '#!/bin/sh\necho k3s stand-in\n', 'https://example.invalid/k3s'),
    file('k3s-install-script', 'install.sh', '#!/bin/sh\necho install\n', 'https://example.invalid/install.sh'),
    file('fsm-chart', 'fsm-1.5.1.tgz', 'chart bytes', 'https://example.invalid/fsm-1.5.1.tgz'),
    file('pop-script', 'assemble.sh', fs.readFileSync(new URL('../../bundle/pop/assemble.sh', import.meta.url), 'utf8')),
  ];
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...put('layer bytes') };
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', ...put('{"architecture":"amd64","os":"linux"}') };
  const manifest = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...put(JSON.stringify({ schemaVersion: 2, config, layers: [layer] })),
  };
  const image: BundleImage = {
    ref: 'docker.io/flomesh/fsm-controller:1.5.1',
    group: 'mesh',
    features: ['core'],
    resolvedDigest: manifest.digest,
    platform: { os: 'linux', architecture: 'amd64' },
    manifest,
    config,
    layers: [layer],
    size: manifest.size + config.size + layer.size,
  };
  const content = { features: ['core' as const], files, images: [image], totals: { blobs: 0, bytes: 0 } };
  const blobs = archBlobs(content);
  content.totals = { blobs: blobs.size, bytes: sumBytes(blobs) };
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
  fs.writeFileSync(path.join(dir, 'index.json'), index);
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const doc: BundleDoc = {
    kind: 'FsmEdgeBundle',
    schemaVersion: 1,
    name: 'synthetic',
    build: opts.build ?? { createdAt: '2026-01-31T12:00:00.000Z', serial: 1769860800000 },
    versions: { k3s: 'v1.37.1+k3s1', fsm: 'v1.5.1', pipy: '1.5.12', chart: '1.5.1' },
    recipe: {
      arches: { amd64: { features: ['core'] } },
      mirrors: {},
      k3s: {
        version: 'v1.37.1+k3s1',
        releaseUrl: 'https://example.invalid/k3s/{version}',
        installScript: { url: 'https://example.invalid/install.sh' },
        systemImages: 'registry',
        archiveFormat: 'tar.zst',
        skipImages: [],
      },
      fsm: {
        version: 'v1.5.1',
        pipyVersion: '1.5.12',
        chart: { url: 'https://example.invalid/fsm-1.5.1.tgz' },
        features: { core: { description: 'core', values: {}, requires: [], images: [{ ref: image.ref, valuesKeys: [] }] } },
      },
    },
    index: { digest: sha(index), size: index.length },
    arches: { amd64: content },
    totals: { ...content.totals },
  };
  opts.mutate?.(doc);
  return signDoc(dir, doc, keys);
}

/** Writes `doc` as bundle.json and signs those bytes with `keys` (what a builder holding the key can always do). */
export function signDoc(dir: string, doc: BundleDoc, keys: { privateKey: KeyObject; publicKey: KeyObject }): SyntheticBundle {
  const bytes = Buffer.from(JSON.stringify(doc, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'bundle.json'), bytes);
  fs.writeFileSync(path.join(dir, 'bundle.json.sig'), JSON.stringify(signBytes(bytes, keys.privateKey)));
  return { dir, doc, bytes, ...keys };
}

export interface DocStubOptions {
  name: string;
  arches: Array<'amd64' | 'arm64' | 'arm'>;
  /** Payload bytes of each arch (default 222 298 112). */
  bytes?: number;
  /** Distinct blobs of each arch (default 41, at least 3). */
  blobs?: number;
  fsm?: string;
  build?: BundleDoc['build'];
}

/**
 * A schema-valid bundle.json with no blobs behind it (for lists that read only the document and its signature,
 * like the wizard's). Each arch holds one image whose manifest, config and layers add up to `blobs` and `bytes`.
 */
export function bundleDocStub(opts: DocStubOptions): BundleDoc {
  const bytes = opts.bytes ?? 222_298_112;
  const count = Math.max(3, opts.blobs ?? 41);
  const d = (i: number) => sha(`stub-${i}`);
  const layers = Array.from({ length: count - 2 }, (_, i) => ({
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: d(i + 2),
    size: i ? 1 : bytes - (count - 1),
  }));
  const image: BundleImage = {
    ref: 'docker.io/flomesh/fsm-controller:1.5.1',
    group: 'mesh',
    features: ['core'],
    resolvedDigest: d(0),
    platform: { os: 'linux', architecture: 'amd64' },
    manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(0), size: 1 },
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d(1), size: 1 },
    layers,
    size: bytes,
  };
  const base = writeSyntheticDocOnly();
  const content = { features: ['core' as const], files: [], images: [image], totals: { blobs: count, bytes } };
  return {
    ...base,
    name: opts.name,
    build: opts.build ?? base.build,
    versions: { ...base.versions, fsm: opts.fsm ?? '1.5.1', chart: opts.fsm ?? '1.5.1' },
    arches: Object.fromEntries(opts.arches.map((a) => [a, structuredClone(content)])),
    totals: { blobs: count, bytes },
  };
}

let stubBase: BundleDoc | undefined;
function writeSyntheticDocOnly(): BundleDoc {
  if (!stubBase) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-stub-'));
    stubBase = writeSyntheticBundle(dir).doc;
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return structuredClone(stubBase);
}
