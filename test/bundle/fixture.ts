// A lab "internet" for bundle tests: the real registry (docker-registry) standing in for docker.io through a
// mirror, and the real file server standing in for GitHub releases and the chart repo.
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { startFileServer, type FileServerHandle } from '../lab/fileserver.js';
import { startRegistry, type RegistryHandle } from '../lab/registry.js';

export const K3S_VERSION = 'v1.37.1+k3s1';
export type TestArch = 'amd64' | 'arm64';

export interface LabSource {
  registry: RegistryHandle;
  files: FileServerHandle;
  /** Scratch directory for this test file (recipes, caches, bundles). */
  tmp: string;
  stop(): Promise<void>;
}

export async function startLabSource(): Promise<LabSource> {
  const registry = await startRegistry();
  const files = await startFileServer();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fsm-edge-bundle-'));
  return {
    registry,
    files,
    tmp,
    stop: async () => {
      await registry.stop();
      await files.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const binaryName = (a: string) => (a === 'amd64' ? 'k3s' : a === 'arm64' ? 'k3s-arm64' : 'k3s-armhf');

export interface ReleaseOptions {
  arches: TestArch[];
  k3sImages: string[];
  version?: string;
  /** Publish a binary whose bytes do not match its sha256sum line. */
  corruptBinary?: TestArch;
  /** Replace the k3s binaries with these files (stand-ins); default: random bytes. */
  binaries?: Partial<Record<TestArch, string>>;
  installScript?: string;
  chart?: string;
}

/** Writes a k3s release (binaries, sha256sum-<arch>.txt, k3s-images.txt, install.sh) and the FSM chart. */
export function publishRelease(files: FileServerHandle, opts: ReleaseOptions): void {
  const version = opts.version ?? K3S_VERSION;
  const rel = path.join(files.root, 'k3s', version);
  fs.mkdirSync(rel, { recursive: true });
  for (const arch of opts.arches) {
    const bin = binaryName(arch);
    const src = opts.binaries?.[arch];
    const data = src
      ? fs.readFileSync(src)
      : Buffer.concat([Buffer.from(`#!/bin/sh\necho k3s ${version} ${arch}\n`), randomBytes(64 * 1024)]);
    fs.writeFileSync(path.join(rel, bin), data);
    const listed = opts.corruptBinary === arch ? sha256(Buffer.concat([data, Buffer.from('x')])) : sha256(data);
    fs.writeFileSync(
      path.join(rel, `sha256sum-${arch}.txt`),
      `${sha256(`airgap-${arch}`)}  k3s-airgap-images-${arch}.tar.zst\n${listed}  ${bin}\n`,
    );
  }
  fs.writeFileSync(path.join(rel, 'k3s-images.txt'), opts.k3sImages.join('\n') + '\n');
  fs.writeFileSync(
    path.join(rel, 'install.sh'),
    opts.installScript ? fs.readFileSync(opts.installScript) : `#!/bin/sh\necho install ${version}\n`,
  );
  fs.mkdirSync(path.join(files.root, 'charts'), { recursive: true });
  fs.writeFileSync(path.join(files.root, 'charts', 'fsm-1.5.1.tgz'), opts.chart ? fs.readFileSync(opts.chart) : randomBytes(8 * 1024));
}

export interface RecipeOptions {
  name?: string;
  arches: Partial<Record<'amd64' | 'arm64' | 'arm', string[]>>;
  /** Feature → image refs (each feature requires core when it is not core). */
  features: Record<string, string[]>;
  version?: string;
}

/** A Recipe pointing at the lab registry (as the docker.io mirror) and the lab file server. */
export function writeRecipe(src: LabSource, file: string, opts: RecipeOptions): string {
  const features = Object.fromEntries(
    Object.entries(opts.features).map(([f, refs]) => [
      f,
      { description: `${f} (lab)`, requires: f === 'core' ? [] : ['core'], images: refs.map((ref) => ({ ref })) },
    ]),
  );
  const doc = {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Recipe',
    metadata: { name: opts.name ?? 'lab' },
    spec: {
      arches: Object.fromEntries(Object.entries(opts.arches).map(([a, f]) => [a, { features: f }])),
      mirrors: { 'docker.io': { endpoints: [src.registry.url], upstream: false } },
      k3s: {
        version: opts.version ?? K3S_VERSION,
        releaseUrl: `${src.files.url}/k3s/{version}`,
        installScript: { url: `${src.files.url}/k3s/{version}/install.sh` },
        systemImages: 'registry',
      },
      fsm: { version: 'v1.5.1', pipyVersion: '1.5.12', chart: { url: `${src.files.url}/charts/fsm-1.5.1.tgz` }, features },
    },
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, YAML.stringify(doc));
  return file;
}

export function testKeys(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

/** Every regular file under dir/blobs/sha256 with its size. */
export function blobFiles(dir: string): Map<string, number> {
  const d = path.join(dir, 'blobs', 'sha256');
  return new Map(fs.readdirSync(d).map((n) => [`sha256:${n}`, fs.statSync(path.join(d, n)).size]));
}
