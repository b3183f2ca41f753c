// bundle build against the real registry and file server: dedup, rebuild from cache, failure naming, verify,
// diff, export/import.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../../src/bundle/build.js';
import { diffBundles } from '../../src/bundle/diff.js';
import { exportBundle, importBundle } from '../../src/bundle/export.js';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { compareBundleAge } from '../../src/bundle/format.js';
import { verifyBundle, VerifyError } from '../../src/bundle/verify.js';
import { imageOf, layerOf, pushImage, repoPathOf, type SynthImage, type SynthLayer } from '../lab/images/synthetic.js';
import { K3S_VERSION, blobFiles, publishRelease, startLabSource, testKeys, writeRecipe, type LabSource } from './fixture.js';

const K3S_IMAGES = ['docker.io/rancher/mirrored-pause:3.10.2', 'docker.io/rancher/klipper-helm:v0.13.1-build20260715'];
const MESH = { core: ['docker.io/flomesh/fsm-controller:1.5.1'], podLevel: ['docker.io/flomesh/pipy:1.5.12'] };
const ARCHES = ['amd64', 'arm64'] as const;

let src: LabSource;
const keys = testKeys();
const pushed = new Map<string, SynthImage[]>();
let common: SynthLayer;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Every image: [per-arch base (shared by all images of that arch), one layer shared by both arches, its own layer]. */
async function pushAll(salt: Record<string, string> = {}) {
  common = layerOf({ 'usr/share/common.txt': 'arch-independent data shared by every image and arch\n' });
  const base = Object.fromEntries(ARCHES.map((a) => [a, layerOf({ 'etc/os-release': `ID=lab\nARCH=${a}\n` })]));
  for (const ref of [...K3S_IMAGES, ...MESH.core, ...MESH.podLevel]) {
    const images = ARCHES.map((a) => imageOf(a, [base[a]!, common, layerOf({ 'standin.txt': `${ref} ${a}${salt[ref] ?? ''}\n` })]));
    const { repo, tag } = repoPathOf(ref);
    await pushImage(src.registry.url, repo, tag, images);
    pushed.set(ref, images);
  }
}

function recipe(name: string, arches: readonly ('amd64' | 'arm64')[] = ARCHES) {
  return writeRecipe(src, path.join(src.tmp, name, 'recipe.yaml'), {
    name,
    arches: Object.fromEntries(arches.map((a) => [a, ['core', 'podLevel']])),
    features: MESH,
  });
}

beforeAll(async () => {
  src = await startLabSource();
  publishRelease(src.files, { arches: [...ARCHES], k3sImages: K3S_IMAGES });
  await pushAll();
});
afterAll(async () => {
  await src?.stop();
});

describe('bundle build (lab registry + file server)', () => {
  const cache = () => path.join(src.tmp, 'cache');
  const out = () => path.join(src.tmp, 'bundles', 'a');

  it('stores every blob once across images and arches, and a rebuild downloads nothing', async () => {
    const r = await buildBundle({ recipePath: recipe('a'), cacheDir: cache(), outDir: out(), signingKey: keys.privateKey });

    // Expected: image blobs (manifests, configs, layers — base per arch, `common` once) + release files.
    const expected = new Map<string, number>();
    for (const images of pushed.values())
      for (const i of images) for (const b of [i.manifest, i.config, ...i.layers]) expected.set(b.digest, b.size);
    const rel = path.join(src.files.root, 'k3s', K3S_VERSION);
    const fileDigest = (p: string) => {
      const d = fs.readFileSync(p);
      expected.set(sha(d), d.length);
    };
    for (const f of ['k3s', 'k3s-arm64', 'sha256sum-amd64.txt', 'sha256sum-arm64.txt', 'k3s-images.txt', 'install.sh'])
      fileDigest(path.join(rel, f));
    fileDigest(path.join(src.files.root, 'charts', 'fsm-1.5.1.tgz'));
    fileDigest('bundle/pop/assemble.sh');

    const onDisk = blobFiles(r.dir);
    const bytes = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    // 4 images × 2 arches × (manifest + config + own layer) + 2 bases + 1 common + 8 files
    expect(expected.size).toBe(4 * 2 * 3 + 2 + 1 + 8);
    expect([...onDisk.keys()].sort()).toEqual([...expected.keys()].sort());
    expect(bytes(onDisk)).toBe(bytes(expected));
    expect(r.doc.totals).toEqual({ blobs: expected.size, bytes: bytes(expected) });
    // The shared layer is counted in both arches but stored once.
    expect(r.doc.arches.amd64!.images.every((i) => i.layers.some((l) => l.digest === common.digest))).toBe(true);
    expect(r.doc.arches.arm64!.images.every((i) => i.layers.some((l) => l.digest === common.digest))).toBe(true);
    expect(r.stats.downloadedBytes).toBeGreaterThan(0);
    expect(r.lockWritten).toBe(true);

    const sig1 = fs.readFileSync(path.join(r.dir, 'bundle.json.sig'), 'utf8');
    // Leftovers of a killed build (pid 4194304 is above Linux's pid_max, so never alive) are cleaned up.
    const stale = [`${out()}.building-4194304`, path.join(cache(), 'blobs', 'sha256', `${'a'.repeat(64)}.partial-4194304`)];
    fs.mkdirSync(stale[0]!);
    fs.writeFileSync(stale[1]!, 'half a layer');
    const again = await buildBundle({ recipePath: recipe('a'), cacheDir: cache(), outDir: out(), signingKey: keys.privateKey });
    expect(again.stats).toEqual({ requests: 0, downloadedBlobs: 0, downloadedFiles: 0, downloadedBytes: 0 });
    expect(again.lockWritten).toBe(false);
    for (const p of stale) expect(fs.existsSync(p)).toBe(false);
    // Same lock → the same bundle content; only the build stamp moves on (a later build has a higher serial).
    const { build: b1, ...content1 } = r.doc;
    const { build: b2, ...content2 } = again.doc;
    expect(content2).toEqual(content1);
    expect(compareBundleAge(again.doc, r.doc)).toBeGreaterThan(0);
    expect(b2.serial).toBeGreaterThan(b1.serial);
    expect(fs.readFileSync(path.join(again.dir, 'bundle.json.sig'), 'utf8')).not.toBe(sig1);
    await verifyBundle(again.dir, { trustedKeys: [keys.publicKey] });
  });

  it('inspect reports versions and per-arch images with sizes', () => {
    const r = inspectBundle(out());
    expect(r.versions).toMatchObject({ k3s: K3S_VERSION, fsm: 'v1.5.1', pipy: '1.5.12' });
    expect(r.arches.map((a) => a.arch)).toEqual(['amd64', 'arm64']);
    const pause = r.arches[1]!.images.find((i) => i.ref === K3S_IMAGES[0]);
    const img = pushed.get(K3S_IMAGES[0]!)![1]!;
    expect(pause).toMatchObject({ platform: 'linux/arm64', layers: 3, group: 'k3s' });
    expect(pause!.size).toBe(img.manifest.size + img.config.size + img.layers.reduce((n, l) => n + l.size, 0));
  });

  it('fails naming the image and platform when an image lacks an arm64 manifest', async () => {
    const ref = 'docker.io/flomesh/fsm-injector:1.5.1';
    const { repo, tag } = repoPathOf(ref);
    await pushImage(src.registry.url, repo, tag, [imageOf('amd64', [layerOf({ a: 'amd64 only' })])], { index: true });
    const file = writeRecipe(src, path.join(src.tmp, 'noarm', 'recipe.yaml'), {
      arches: { amd64: ['core'], arm64: ['core'] },
      features: { core: [ref] },
    });
    await expect(
      buildBundle({ recipePath: file, cacheDir: cache(), outDir: path.join(src.tmp, 'bundles', 'noarm'), signingKey: keys.privateKey }),
    ).rejects.toThrow(/image docker\.io\/flomesh\/fsm-injector:1\.5\.1 has no linux\/arm64 manifest \(it has: linux\/amd64\)/);
    expect(fs.existsSync(path.join(src.tmp, 'bundles', 'noarm'))).toBe(false);
  });

  it('fails when a release file does not match the release sha256sum file', async () => {
    const v = 'v1.37.0+k3s1';
    publishRelease(src.files, { arches: [...ARCHES], k3sImages: K3S_IMAGES, version: v, corruptBinary: 'arm64' });
    const file = writeRecipe(src, path.join(src.tmp, 'badsum', 'recipe.yaml'), {
      arches: { amd64: [], arm64: [] },
      features: MESH,
      version: v,
    });
    await expect(
      buildBundle({ recipePath: file, cacheDir: cache(), outDir: path.join(src.tmp, 'bundles', 'badsum'), signingKey: keys.privateKey }),
    ).rejects.toThrow(
      /k3s-arm64 from http:\/\/127\.0\.0\.1:\d+\/k3s\/v1\.37\.0%2Bk3s1\/k3s-arm64 \(checked against sha256sum-arm64\.txt\): sha256: expected sha256:[a-f0-9]{64}, got sha256:[a-f0-9]{64}/,
    );
  });

  it('builds 32-bit arm with k3s only, from arm/v7 manifests', async () => {
    const v = 'v1.36.0+k3s1';
    const armImages = ['docker.io/rancher/mirrored-pause:3.10.1'];
    publishRelease(src.files, { arches: ['amd64'], k3sImages: armImages, version: v });
    // k3s publishes sha256sum-arm.txt for k3s-armhf; the fixture only knows amd64/arm64 names, so add arm by hand.
    const rel = path.join(src.files.root, 'k3s', v);
    fs.writeFileSync(path.join(rel, 'k3s-armhf'), 'armhf binary');
    fs.writeFileSync(path.join(rel, 'sha256sum-arm.txt'), `${sha(Buffer.from('armhf binary')).slice(7)}  k3s-armhf\n`);
    const { repo, tag } = repoPathOf(armImages[0]!);
    const v7 = imageOf('arm', [layerOf({ 'standin.txt': 'arm v7' })], 'v7');
    await pushImage(src.registry.url, repo, tag, [imageOf('amd64', [layerOf({ 'standin.txt': 'amd64' })]), v7]);
    const file = writeRecipe(src, path.join(src.tmp, 'arm', 'recipe.yaml'), {
      name: 'arm',
      arches: { arm: [] },
      features: MESH,
      version: v,
    });
    const r = await buildBundle({
      recipePath: file,
      cacheDir: cache(),
      outDir: path.join(src.tmp, 'bundles', 'arm'),
      signingKey: keys.privateKey,
    });
    expect(Object.keys(r.doc.arches)).toEqual(['arm']);
    expect(r.doc.arches.arm!.features).toEqual([]);
    expect(r.doc.arches.arm!.files.map((f) => f.name).sort()).toEqual([
      'assemble.sh',
      'install.sh',
      'k3s-armhf',
      'k3s-images.txt',
      'sha256sum-arm.txt',
    ]);
    expect(r.doc.arches.arm!.images.map((i) => [i.ref, i.manifest.digest, i.platform])).toEqual([
      [armImages[0], v7.manifest.digest, { os: 'linux', architecture: 'arm', variant: 'v7' }],
    ]);
  });

  describe('verify names the first bad file', () => {
    const copy = (name: string) => {
      const d = path.join(src.tmp, 'tamper', name);
      fs.rmSync(d, { recursive: true, force: true });
      fs.cpSync(out(), d, { recursive: true });
      return d;
    };
    const failure = async (dir: string, trusted = [keys.publicKey]) => {
      try {
        await verifyBundle(dir, { trustedKeys: trusted });
      } catch (e) {
        expect(e).toBeInstanceOf(VerifyError);
        return e as VerifyError;
      }
      throw new Error('verify passed on a tampered bundle');
    };

    it('a flipped byte in a layer blob', async () => {
      const d = copy('flip');
      const layer = inspectBundle(d).arches[0]!.images[0]!;
      const doc = JSON.parse(fs.readFileSync(path.join(d, 'bundle.json'), 'utf8'));
      const digest: string = doc.arches.amd64.images.find((i: { ref: string }) => i.ref === layer.ref).layers[2].digest;
      const p = path.join(d, 'blobs', 'sha256', digest.slice(7));
      const buf = fs.readFileSync(p);
      buf[Math.floor(buf.length / 2)]! ^= 0x01;
      fs.writeFileSync(p, buf);
      const e = await failure(d);
      expect(e.file).toBe(`blobs/sha256/${digest.slice(7)}`);
      expect(e.message).toMatch(/corrupt/);
    });

    it('an edited bundle.json', async () => {
      const d = copy('edit');
      const p = path.join(d, 'bundle.json');
      fs.writeFileSync(p, fs.readFileSync(p, 'utf8').replace('"v1.5.1"', '"v1.5.2"'));
      const e = await failure(d);
      expect(e.file).toBe('bundle.json');
      expect(e.message).toMatch(/changed after signing/);
    });

    it('a missing signature', async () => {
      const d = copy('nosig');
      fs.rmSync(path.join(d, 'bundle.json.sig'));
      expect((await failure(d)).file).toBe('bundle.json.sig');
    });

    it('a signature by a foreign key', async () => {
      const foreign = testKeys();
      const e = await failure(out(), [foreign.publicKey]);
      expect(e.file).toBe('bundle.json.sig');
      expect(e.message).toMatch(/not trusted/);
    });

    it('a missing blob and an edited index.json', async () => {
      const d = copy('missing');
      const doc = JSON.parse(fs.readFileSync(path.join(d, 'bundle.json'), 'utf8'));
      const cfg: string = doc.arches.arm64.images[0].config.digest;
      fs.rmSync(path.join(d, 'blobs', 'sha256', cfg.slice(7)));
      expect((await failure(d)).file).toBe(`blobs/sha256/${cfg.slice(7)}`);
      const d2 = copy('index');
      fs.appendFileSync(path.join(d2, 'index.json'), ' ');
      expect((await failure(d2)).file).toBe('index.json');
    });
  });

  it('diff between two bundles reports only the changed layers', async () => {
    const changed = MESH.podLevel[0]!;
    const before = pushed.get(changed)!;
    await pushAll({ [changed]: ' v2' });
    const after = pushed.get(changed)!;
    // B: same recipe, its own lock (starts from A's lock minus the changed image, as `bundle build` would re-resolve it).
    const bRecipe = recipe('b');
    const lockA = fs.readFileSync(path.join(src.tmp, 'a', 'recipe.lock.yaml'), 'utf8');
    fs.writeFileSync(path.join(src.tmp, 'b', 'recipe.lock.yaml'), lockA);
    const YAML = (await import('yaml')).default;
    const lock = YAML.parse(lockA);
    delete lock.images[changed];
    fs.writeFileSync(path.join(src.tmp, 'b', 'recipe.lock.yaml'), YAML.stringify(lock));
    const b = await buildBundle({
      recipePath: bRecipe,
      cacheDir: cache(),
      outDir: path.join(src.tmp, 'bundles', 'b'),
      signingKey: keys.privateKey,
    });
    // Only the changed image's own layer, config and manifest were fetched (per arch); manifests are not counted as blobs.
    expect(b.stats.downloadedBlobs).toBe(2 * 2);

    const d = diffBundles(out(), b.dir);
    expect(d.arches.map((a) => a.arch)).toEqual(['amd64', 'arm64']);
    for (const [i, a] of d.arches.entries()) {
      const img = after[i]!;
      expect(a.images).toEqual([
        {
          ref: changed,
          change: 'changed',
          newLayers: [{ digest: img.layers[2]!.digest, size: img.layers[2]!.size }],
          sendBytes: img.manifest.size + img.config.size + img.layers[2]!.size,
        },
      ]);
      expect(a.send).toEqual({ blobs: 3, bytes: img.manifest.size + img.config.size + img.layers[2]!.size });
      expect(a.drop.blobs).toBe(3);
      expect(a.files).toEqual([]);
      expect(before[i]!.layers[0]!.digest).toBe(img.layers[0]!.digest);
    }
  });

  it('exports to FAT32-sized parts and imports back to a bundle that verifies', async () => {
    const tarFile = path.join(src.tmp, 'usb', 'lab.tar');
    const partSize = 64 * 1024;
    const e = await exportBundle(out(), tarFile, { partSize });
    expect(e.files.length).toBeGreaterThan(1);
    expect(e.files.every((f) => f.size <= partSize)).toBe(true);
    const back = await importBundle(tarFile, path.join(src.tmp, 'imported'));
    expect(back.parts).toBe(e.files.length);
    const v = await verifyBundle(back.dir, { trustedKeys: [keys.publicKey] });
    expect(v.blobs).toBe(inspectBundle(out()).totals.blobs);
    // A damaged part is named before anything is unpacked.
    const p1 = e.files[1]!.path;
    const buf = fs.readFileSync(p1);
    buf[10]! ^= 0xff;
    fs.writeFileSync(p1, buf);
    await expect(importBundle(tarFile, path.join(src.tmp, 'imported2'))).rejects.toThrow(`${p1}: sha256 does not match`);
  });
});
