// The POP side: blobs synced into a content-addressed store, assemble.sh builds k3s' files and image archives
// from it, and a real containerd (`ctr import`, private root/state/socket) accepts the archives.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../../src/bundle/build.js';
import type { BundleDoc } from '../../src/bundle/format.js';
import { parseAssembleOutput, popAssembleCommand, popAssemblePlan, wantedBlobs } from '../../src/bundle/pop.js';
import { waitFor } from '../lab/proc.js';
import { imageOf, layerOf, pushImage, repoPathOf } from '../lab/images/synthetic.js';
import { publishRelease, startLabSource, testKeys, writeRecipe, type LabSource } from './fixture.js';

const K3S_IMAGES = ['docker.io/rancher/mirrored-pause:3.10.2'];
const MESH = { core: ['docker.io/flomesh/fsm-controller:1.5.1'], podLevel: ['docker.io/flomesh/pipy:1.5.12'] };
const ARCHES = ['amd64', 'arm64'] as const;

let src: LabSource;
let doc: BundleDoc;
let bundleDir: string;
let containerd: ChildProcess | undefined;
let sock: string;
const sha = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

function sh(cmd: string): { code: number; stdout: string; stderr: string } {
  try {
    return { code: 0, stdout: execFileSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }), stderr: '' };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, stdout: x.stdout, stderr: x.stderr };
  }
}
const ctr = (...args: string[]) => execFileSync('ctr', ['-a', sock, '-n', 'k8s.io', ...args], { encoding: 'utf8' });

/** What the transport's syncBlobs does, done locally: each wanted blob into <store>/sha256/<hex>. */
function syncLocally(arch: 'amd64' | 'arm64', store: string) {
  fs.mkdirSync(path.join(store, 'sha256'), { recursive: true });
  for (const w of wantedBlobs(bundleDir, doc, arch)) fs.copyFileSync(w.sourcePath, path.join(store, 'sha256', w.digest.slice(7)));
}

function assemble(arch: 'amd64' | 'arm64', name: string, mode: 'apply' | 'check' = 'apply') {
  const store = path.join(src.tmp, `store-${arch}`);
  const root = path.join(src.tmp, name);
  const a = popAssemblePlan(doc, arch);
  const planPath = path.join(src.tmp, `plan-${arch}.txt`);
  fs.writeFileSync(planPath, a.plan);
  return { ...sh(popAssembleCommand(a, { storeDir: store, planPath, root, mode })), root, assembly: a, store };
}

beforeAll(async () => {
  src = await startLabSource();
  publishRelease(src.files, { arches: [...ARCHES], k3sImages: K3S_IMAGES });
  for (const ref of [...K3S_IMAGES, ...MESH.core, ...MESH.podLevel]) {
    const { repo, tag } = repoPathOf(ref);
    const base = layerOf({ 'etc/os-release': 'ID=lab\n' });
    await pushImage(
      src.registry.url,
      repo,
      tag,
      ARCHES.map((a) => imageOf(a, [base, layerOf({ 'standin.txt': `${ref} ${a}\n` })])),
    );
  }
  const recipe = writeRecipe(src, path.join(src.tmp, 'r', 'recipe.yaml'), {
    arches: { amd64: ['core', 'podLevel'], arm64: ['core', 'podLevel'] },
    features: MESH,
  });
  const keys = testKeys();
  const r = await buildBundle({
    recipePath: recipe,
    cacheDir: path.join(src.tmp, 'cache'),
    outDir: path.join(src.tmp, 'bundle'),
    signingKey: keys.privateKey,
  });
  doc = r.doc;
  bundleDir = r.dir;

  // A private containerd (lab.md §5): own root, state, socket; nothing under /var/lib/containerd or /run/containerd.
  const c = path.join(src.tmp, 'containerd');
  for (const d of ['root', 'state', 'tmp', 'opt']) fs.mkdirSync(path.join(c, d), { recursive: true });
  sock = path.join(c, 'containerd.sock');
  fs.writeFileSync(
    path.join(c, 'config.toml'),
    [
      'version = 2',
      `root = "${c}/root"`,
      `state = "${c}/state"`,
      `temp = "${c}/tmp"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${sock}"`,
      '[ttrpc]',
      `  address = "${sock}.ttrpc"`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${c}/opt"`,
      '',
    ].join('\n'),
  );
  containerd = spawn('containerd', ['--config', path.join(c, 'config.toml')], {
    stdio: ['ignore', fs.openSync(path.join(c, 'log'), 'w'), fs.openSync(path.join(c, 'log'), 'a')],
  });
  await waitFor('private containerd', () => fs.existsSync(sock) && sh(`ctr -a ${sock} version`).code === 0, 15000);
});

afterAll(async () => {
  if (containerd?.pid) {
    containerd.kill('SIGTERM');
    await new Promise((r) => containerd!.once('exit', r));
  }
  // containerd leaves overlay mounts of unpacked snapshots only while mounted; unmount anything under tmp first.
  sh(`grep -o " ${src?.tmp}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount`);
  await src?.stop();
});

describe('POP-side assembly from the content-addressed store', () => {
  it('wantedBlobs lists each blob of the arch once with its bundle path', () => {
    const w = wantedBlobs(bundleDir, doc, 'arm64');
    expect(new Set(w.map((b) => b.digest)).size).toBe(w.length);
    expect(w.length).toBe(doc.arches.arm64!.totals.blobs);
    expect(w.reduce((n, b) => n + b.size, 0)).toBe(doc.arches.arm64!.totals.bytes);
    for (const b of w) expect(fs.statSync(b.sourcePath).size).toBe(b.size);
  });

  for (const arch of ARCHES) {
    it(`${arch}: builds k3s files and image archives that ctr import accepts, and is idempotent`, () => {
      syncLocally(arch, path.join(src.tmp, `store-${arch}`));
      const imagesDir = path.join(src.tmp, `root-${arch}`, 'var/lib/rancher/k3s/agent/images');
      fs.mkdirSync(imagesDir, { recursive: true });
      fs.writeFileSync(path.join(imagesDir, 'fsm-edge_stale_1.0_amd64_000000000000.tar'), 'old bundle');
      fs.writeFileSync(path.join(imagesDir, 'someone-else.tar'), 'not ours');

      const dry = assemble(arch, `root-${arch}`, 'check');
      expect(dry.code, dry.stderr).toBe(0);
      expect(parseAssembleOutput(dry.stdout).changed.length).toBe(3 + 3);
      expect(fs.existsSync(path.join(dry.root, 'usr/local/bin/k3s'))).toBe(false);

      const r = assemble(arch, `root-${arch}`);
      expect(r.code, r.stderr).toBe(0);
      const rep = parseAssembleOutput(r.stdout);
      expect(rep.changed.length, r.stdout).toBe(3 + 3);
      expect(rep.removed, r.stdout).toEqual(['/var/lib/rancher/k3s/agent/images/fsm-edge_stale_1.0_amd64_000000000000.tar']);
      expect(fs.existsSync(path.join(imagesDir, 'someone-else.tar'))).toBe(true);
      const bin = doc.arches[arch]!.files.find((f) => f.role === 'k3s-binary')!;
      const k3s = path.join(r.root, 'usr/local/bin/k3s');
      expect(`sha256:${sha(k3s)}`).toBe(bin.digest);
      expect(fs.statSync(k3s).mode & 0o777).toBe(0o755);
      expect(fs.existsSync(path.join(r.root, 'var/lib/fsm-edge/k3s/install.sh'))).toBe(true);
      expect(fs.existsSync(path.join(r.root, 'var/lib/rancher/k3s/server/static/charts/fsm-1.5.1.tgz'))).toBe(true);
      expect(fs.readdirSync(imagesDir).filter((n) => n.startsWith('.'))).toEqual([]);

      const again = assemble(arch, `root-${arch}`);
      expect(again.code, again.stderr).toBe(0);
      expect(parseAssembleOutput(again.stdout)).toEqual({ changed: [], unchanged: rep.changed, removed: [] });

      for (const out of r.assembly.outputs.filter((o) => o.kind === 'image')) {
        const file = path.join(r.root, out.path);
        const args = arch === 'amd64' ? [] : ['--platform', 'linux/arm64'];
        ctr('images', 'import', ...args, file);
      }
      const names = ctr('images', 'ls', '-q').split('\n');
      for (const ref of [...K3S_IMAGES, ...MESH.core, ...MESH.podLevel]) expect(names).toContain(ref);
      // containerd unpacked the layers: the image's files are there for this platform.
      const mnt = path.join(src.tmp, `mnt-${arch}`);
      fs.mkdirSync(mnt, { recursive: true });
      ctr('images', 'mount', '--platform', `linux/${arch}`, MESH.core[0]!, mnt);
      try {
        expect(fs.readFileSync(path.join(mnt, 'standin.txt'), 'utf8')).toBe(`${MESH.core[0]} ${arch}\n`);
      } finally {
        ctr('images', 'unmount', '--rm', mnt);
      }
    });
  }

  // Minimal hosts: only BusyBox's sh, coreutils and tar on PATH (Debian package `busybox`).
  it.skipIf(!fs.existsSync('/usr/bin/busybox'))(
    'runs with nothing but BusyBox (sh, tar, sha256sum, …) and ctr still imports the result',
    () => {
      const bin = path.join(src.tmp, 'busybox-bin');
      fs.mkdirSync(bin, { recursive: true });
      for (const applet of [
        'sh',
        'tar',
        'sha256sum',
        'cut',
        'wc',
        'tr',
        'cp',
        'mv',
        'rm',
        'ln',
        'mkdir',
        'chmod',
        'dirname',
        'basename',
        'grep',
        'cat',
        'printf',
        'echo',
        '[',
      ])
        fs.symlinkSync('/usr/bin/busybox', path.join(bin, applet));
      const a = popAssemblePlan(doc, 'amd64', { images: 'k3s' });
      const planPath = path.join(src.tmp, 'plan-busybox.txt');
      fs.writeFileSync(planPath, a.plan);
      const root = path.join(src.tmp, 'root-busybox');
      const cmd = popAssembleCommand(a, { storeDir: path.join(src.tmp, 'store-amd64'), planPath, root });
      const r = execFileSync(path.join(bin, 'sh'), ['-c', cmd], { encoding: 'utf8', env: { PATH: bin } });
      expect(parseAssembleOutput(r).changed.length).toBe(3 + 1);
      const archive = path.join(root, a.outputs.find((o) => o.kind === 'image')!.path);
      const before = ctr('images', 'ls', '-q');
      ctr('images', 'rm', K3S_IMAGES[0]!);
      expect(ctr('images', 'ls', '-q')).not.toContain(K3S_IMAGES[0]);
      ctr('images', 'import', archive);
      expect(ctr('images', 'ls', '-q')).toBe(before);
    },
  );

  it('refuses a corrupt store blob, naming it, and leaves no partial archive', () => {
    const store = path.join(src.tmp, 'store-amd64');
    const img = doc.arches.amd64!.images[0]!;
    const layer = path.join(store, 'sha256', img.layers[1]!.digest.slice(7));
    const buf = fs.readFileSync(layer);
    buf[0]! ^= 0xff;
    fs.writeFileSync(layer, buf);
    const r = assemble('amd64', 'root-corrupt');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`blob ${img.layers[1]!.digest} in ${store}/sha256 is corrupt`);
    const dir = path.join(r.root, 'var/lib/rancher/k3s/agent/images');
    expect(fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.includes(img.manifest.digest.slice(7, 19))) : []).toEqual([]);
  });
});
