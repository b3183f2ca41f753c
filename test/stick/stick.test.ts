// The USB stick: its layout and checks (writeStick against a synthetic signed bundle and a release served from
// memory, with tarballs made by the system tar + xz like nodejs.org's), and the sh launcher under dash and busybox.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeRuntimeSchema, type NodeRuntime } from '../../src/config/recipe.js';
import { LAUNCHER_EXIT_UNUSABLE, STICK_LAUNCHER } from '../../src/bundle/stick-launcher.js';
import { runtimeLockPath } from '../../src/bundle/stick-runtime.js';
import { writeStick } from '../../src/bundle/stick.js';
import { writeSyntheticBundle } from '../bundle/synthetic-bundle.js';

const VERSION = 'v20.20.2';
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stick-test-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A node-<v>-linux-<arch>.tar.xz whose bin/node is a shell script naming its arch (or a symlink, for the attack). */
function nodeTarball(dir: string, arch: string, opts: { symlinkNode?: boolean } = {}): Buffer {
  const top = `node-${VERSION}-linux-${arch}`;
  const root = fs.mkdtempSync(path.join(dir, 'tb-'));
  fs.mkdirSync(path.join(root, top, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(root, top, 'LICENSE'), 'Node.js is licensed for use as follows: MIT\n');
  if (opts.symlinkNode) fs.symlinkSync('/etc/shadow', path.join(root, top, 'bin', 'node'));
  else fs.writeFileSync(path.join(root, top, 'bin', 'node'), `#!/bin/sh\necho "runtime ${arch}: $*"\n`, { mode: 0o755 });
  const out = path.join(root, 'out.tar.xz');
  execFileSync('tar', ['-cJf', out, '-C', root, top]);
  return fs.readFileSync(out);
}

interface Release {
  files: Map<string, Buffer>;
  fetchImpl: typeof fetch;
  requests: string[];
}

function release(files: Map<string, Buffer>): Release {
  const requests: string[] = [];
  const fetchImpl = (async (url: string | URL) => {
    requests.push(String(url));
    const name = String(url).replace(/^.*\//, '');
    const body = files.get(name);
    return body ? new Response(new Uint8Array(body)) : new Response('not found', { status: 404 });
  }) as typeof fetch;
  return { files, fetchImpl, requests };
}

function releaseFiles(dir: string, tarballs: Record<string, Buffer>): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const sums: string[] = [];
  for (const [arch, b] of Object.entries(tarballs)) {
    const name = `node-${VERSION}-linux-${arch}.tar.xz`;
    files.set(name, b);
    sums.push(`${sha(b)}  ${name}`);
  }
  files.set('SHASUMS256.txt', Buffer.from(`${sums.join('\n')}\n`));
  void dir;
  return files;
}

function setup(name: string, opts: { tarballs?: Record<string, Buffer>; runtime?: Partial<NodeRuntime> } = {}) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  const b = writeSyntheticBundle(path.join(dir, 'bundle'));
  const keyFile = path.join(dir, 'signing.pub');
  fs.writeFileSync(keyFile, b.publicKey.export({ format: 'pem', type: 'spki' }));
  const cli = path.join(dir, 'fsm-edge.mjs');
  fs.writeFileSync(cli, 'console.log("fsm-edge", process.argv.slice(2).join(" "))\n');
  const rel = release(releaseFiles(dir, opts.tarballs ?? { x64: nodeTarball(dir, 'x64') }));
  const recipePath = path.join(dir, 'recipe.yaml');
  const runtime = NodeRuntimeSchema.parse({
    version: VERSION,
    releaseUrl: 'https://dist.example/{version}',
    arches: ['x64'],
    ...opts.runtime,
  });
  const base = {
    bundleDir: b.dir,
    outDir: path.join(dir, 'stick'),
    trustKeyFiles: [keyFile],
    runtime,
    recipePath,
    cacheDir: path.join(dir, 'cache'),
    cliFile: cli,
    fetchImpl: rel.fetchImpl,
  };
  return { dir, b, keyFile, rel, base, recipePath };
}

describe('writeStick', () => {
  it('writes the layout: launcher, CLI, runtime from the checked tarball, bundle, trust key, README, SHA256SUMS', async () => {
    const s = setup('layout');
    const backup = path.join(s.dir, 'pop1.backup.age');
    fs.writeFileSync(backup, 'age-encryption.org/v1\n-> X25519 stand-in\n');
    const site = path.join(s.dir, 'site.yaml');
    fs.writeFileSync(site, 'kind: Site\n');
    const r = await writeStick({ ...s.base, backups: [backup], sites: [site] });
    const stick = s.base.outDir;
    expect(r.arches).toEqual(['amd64']);
    expect(fs.statSync(stick).mode & 0o777).toBe(0o755);
    expect(r.runtime.checksums.pinnedBy).toBe('first use (now in the runtime lock)');
    expect(fs.readFileSync(path.join(stick, 'runtime/x64/bin/node'), 'utf8')).toContain('runtime x64');
    expect(fs.statSync(path.join(stick, 'runtime/x64/bin/node')).mode & 0o111).toBe(0o111);
    expect(fs.statSync(path.join(stick, 'fsm-edge')).mode & 0o755).toBe(0o755);
    expect(fs.readFileSync(path.join(stick, 'fsm-edge'), 'utf8')).toBe(STICK_LAUNCHER);
    expect(fs.existsSync(path.join(stick, 'runtime/x64/LICENSE'))).toBe(true);
    expect(fs.readFileSync(path.join(stick, 'backups/pop1.backup.age'), 'utf8')).toContain('age-encryption');
    expect(fs.existsSync(path.join(stick, 'sites/site.yaml'))).toBe(true);
    expect(fs.existsSync(path.join(stick, 'trust/signing.pub'))).toBe(true);
    expect(fs.existsSync(path.join(stick, 'bundle/bundle.json.sig'))).toBe(true);
    const readme = fs.readFileSync(path.join(stick, 'README.txt'), 'utf8');
    expect(readme).toContain('sudo ./fsm-edge install --local sites/site.yaml --bundle bundle --trust-key trust/signing.pub');
    expect(readme).toContain(r.trustKeys[0]!.keyId);
    expect(readme).toContain(
      'sudo ./fsm-edge recover --local sites/site.yaml --backup backups/pop1.backup.age --passphrase-file /run/fsm-edge-passphrase --bundle bundle',
    );
    // SHA256SUMS covers every file but itself, with the right digests
    const sums = fs.readFileSync(path.join(stick, 'SHA256SUMS'), 'utf8').trim().split('\n');
    const listed = new Map(sums.map((l) => [l.slice(66), l.slice(0, 64)]));
    expect(listed.get('fsm-edge.mjs')).toBe(sha(fs.readFileSync(path.join(stick, 'fsm-edge.mjs'))));
    expect(listed.get('runtime/x64/bin/node')).toBe(sha(fs.readFileSync(path.join(stick, 'runtime/x64/bin/node'))));
    expect(listed.has('SHA256SUMS')).toBe(false);
    expect(listed.size).toBe(r.files);
    // the first export pinned SHASUMS256.txt in the runtime lock beside the recipe
    expect(fs.readFileSync(runtimeLockPath(s.recipePath), 'utf8')).toContain(`sha256:${sha(s.rel.files.get('SHASUMS256.txt')!)}`);
    expect(fs.readdirSync(s.dir).filter((n) => n.includes('.writing-'))).toEqual([]);
  });

  it('refuses a tarball whose digest is not the one SHASUMS256.txt gives, and writes no stick', async () => {
    const s = setup('bad-digest');
    const good = s.rel.files.get(`node-${VERSION}-linux-x64.tar.xz`)!;
    s.rel.files.set(`node-${VERSION}-linux-x64.tar.xz`, Buffer.concat([good, Buffer.from('tampered')]));
    await expect(writeStick(s.base)).rejects.toThrow(/sha256|digest/i);
    expect(fs.existsSync(s.base.outDir)).toBe(false);
  });

  it('refuses a changed SHASUMS256.txt once the lock (or the recipe) pins it', async () => {
    const s = setup('repinned');
    await writeStick(s.base);
    // the release is replaced: a new tarball and a SHASUMS256.txt that matches it
    const other = releaseFiles(s.dir, { x64: nodeTarball(s.dir, 'x64') });
    other.set('SHASUMS256.txt', Buffer.concat([other.get('SHASUMS256.txt')!, Buffer.from('# moved\n')]));
    for (const [k, v] of other) s.rel.files.set(k, v);
    fs.rmSync(s.base.cacheDir, { recursive: true });
    await expect(writeStick({ ...s.base, outDir: path.join(s.dir, 'stick2') })).rejects.toThrow(
      /SHASUMS256\.txt.*checked against the runtime lock/,
    );
    const pinnedWrong = NodeRuntimeSchema.parse({ ...s.base.runtime, checksumsSha256: 'a'.repeat(64) });
    await expect(writeStick({ ...s.base, runtime: pinnedWrong, outDir: path.join(s.dir, 'stick3') })).rejects.toThrow(/pins/);
  });

  it('takes bin/node only as a regular file: a symlink in the tarball is refused', async () => {
    const dir = path.join(tmp, 'symlink-src');
    fs.mkdirSync(dir, { recursive: true });
    const s = setup('symlink', { tarballs: { x64: nodeTarball(dir, 'x64', { symlinkNode: true }) } });
    await expect(writeStick(s.base)).rejects.toThrow(/not a regular file/);
    expect(fs.existsSync(s.base.outDir)).toBe(false);
  });

  it('refuses a bundle that does not verify against the trust key, before downloading anything', async () => {
    const s = setup('wrong-key');
    const other = path.join(s.dir, 'other.pub');
    fs.writeFileSync(other, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }));
    await expect(writeStick({ ...s.base, trustKeyFiles: [other] })).rejects.toThrow(/not trusted/i);
    expect(s.rel.requests).toEqual([]);
  });

  it('refuses file names that are not plain (a backup called ../x) and a non-empty target', async () => {
    const s = setup('names');
    const odd = path.join(s.dir, '.hidden');
    fs.writeFileSync(odd, 'x');
    await expect(writeStick({ ...s.base, backups: [odd] })).rejects.toThrow(/not a plain file name/);
    fs.mkdirSync(s.base.outDir);
    fs.writeFileSync(path.join(s.base.outDir, 'photo.jpg'), 'x');
    await expect(writeStick(s.base)).rejects.toThrow(/not empty/);
  });
});

// ---- the launcher under dash and busybox sh, with uname -m faked through PATH ----

const SHELLS = [['dash'], ['busybox', 'sh']].filter(([b]) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0);

function fakeStick(name: string): string {
  const dir = path.join(tmp, name);
  for (const arch of ['x64', 'arm64']) {
    fs.mkdirSync(path.join(dir, 'runtime', arch, 'bin'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'runtime', arch, 'bin', 'node'), `#!/bin/sh\necho "node ${arch} $*"\n`, { mode: 0o755 });
  }
  fs.writeFileSync(path.join(dir, 'fsm-edge.mjs'), '// cli\n');
  fs.writeFileSync(path.join(dir, 'fsm-edge'), STICK_LAUNCHER, { mode: 0o755 });
  const sums = ['fsm-edge.mjs', 'runtime/x64/bin/node', 'runtime/arm64/bin/node']
    .map((f) => `${sha(fs.readFileSync(path.join(dir, f)))}  ${f}\n`)
    .join('');
  fs.writeFileSync(path.join(dir, 'SHA256SUMS'), sums);
  return dir;
}

function fakeUname(machine: string): string {
  const bin = fs.mkdtempSync(path.join(tmp, 'bin-'));
  fs.writeFileSync(path.join(bin, 'uname'), `#!/bin/sh\n[ "$1" = -m ] && echo ${machine} && exit 0\nexec /bin/uname "$@"\n`, {
    mode: 0o755,
  });
  return bin;
}

describe.each(SHELLS)('launcher under %s', (...shell) => {
  const launch = (dir: string, machine: string, args: string[], env: Record<string, string> = {}) =>
    spawnSync(shell[0]!, [...shell.slice(1), path.join(dir, 'fsm-edge'), ...args], {
      encoding: 'utf8',
      env: { PATH: `${fakeUname(machine)}:/usr/bin:/bin`, ...env },
    });

  it.each([
    ['x86_64', 'x64'],
    ['amd64', 'x64'],
    ['aarch64', 'arm64'],
    ['arm64', 'arm64'],
  ])('uname -m %s runs runtime/%s with the CLI and the arguments as given', (machine, arch) => {
    const dir = fakeStick(`l-${shell[0]}-${machine}`);
    const r = launch(dir, machine, ['install', '--local', 'a b.yaml']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`node ${arch} ${dir}/fsm-edge.mjs install --local a b.yaml\n`);
    expect(r.status).toBe(0);
  });

  it('names the machine and exits 3 on an arch the stick has no runtime for', () => {
    const r = launch(fakeStick(`l-${shell[0]}-riscv`), 'riscv64', ['--version']);
    expect(r.status).toBe(LAUNCHER_EXIT_UNUSABLE);
    expect(r.stderr).toMatch(/this machine is riscv64.*x86_64.*aarch64/);
    expect(r.stdout).toBe('');
  });

  it('refuses a damaged runtime or CLI (does not run it)', () => {
    const dir = fakeStick(`l-${shell[0]}-damaged`);
    fs.appendFileSync(path.join(dir, 'runtime/arm64/bin/node'), 'echo evil\n');
    const r = launch(dir, 'aarch64', []);
    expect(r.status).toBe(LAUNCHER_EXIT_UNUSABLE);
    expect(r.stderr).toMatch(/runtime\/arm64\/bin\/node is damaged/);
    expect(r.stdout).toBe('');
    fs.appendFileSync(path.join(dir, 'fsm-edge.mjs'), '// changed\n');
    const r2 = launch(dir, 'x86_64', []);
    expect(r2.stderr).toMatch(/fsm-edge\.mjs is damaged/);
    expect(r2.status).toBe(LAUNCHER_EXIT_UNUSABLE);
  });

  it('runs a checked copy of the runtime when the stick gives it no execute bit (noexec, FAT)', () => {
    const dir = fakeStick(`l-${shell[0]}-noexec`);
    fs.chmodSync(path.join(dir, 'runtime/x64/bin/node'), 0o644);
    const r = launch(dir, 'x86_64', ['status'], { TMPDIR: tmp });
    expect(r.stdout).toBe(`node x64 ${dir}/fsm-edge.mjs status\n`);
    expect(r.status).toBe(0);
  });

  it('says so when the runtime for this machine is missing', () => {
    const dir = fakeStick(`l-${shell[0]}-missing`);
    fs.rmSync(path.join(dir, 'runtime/arm64'), { recursive: true });
    const r = launch(dir, 'aarch64', []);
    expect(r.status).toBe(LAUNCHER_EXIT_UNUSABLE);
    expect(r.stderr).toMatch(/runtime\/arm64\/bin\/node is missing/);
  });
});

describe('recipe runtime', () => {
  it('accepts a pinned Node.js 20 release and refuses older ones', () => {
    expect(NodeRuntimeSchema.parse({ version: 'v20.20.2' }).arches).toEqual(['x64', 'arm64']);
    expect(NodeRuntimeSchema.safeParse({ version: 'v18.20.0' }).success).toBe(false);
    expect(NodeRuntimeSchema.safeParse({ version: '20.20.2' }).success).toBe(false);
  });
});
