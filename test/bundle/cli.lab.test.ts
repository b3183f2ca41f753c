// `fsm-edge bundle …` end to end through the CLI entry point: exit codes 0/1/2, --json documents, messages.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { imageOf, layerOf, pushImage, repoPathOf } from '../lab/images/synthetic.js';
import { publishRelease, startLabSource, writeRecipe, type LabSource } from './fixture.js';

let src: LabSource;
const REF = 'docker.io/flomesh/fsm-controller:1.5.1';

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'fsm-edge', ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { ...process.env, NO_COLOR: '1', LAB_KEY: fs.existsSync(key()) ? fs.readFileSync(key(), 'utf8') : '' },
  });
  return { code, stdout, stderr };
}
const key = () => path.join(src.tmp, 'keys', 'signing.key');

beforeAll(async () => {
  src = await startLabSource();
  publishRelease(src.files, { arches: ['amd64', 'arm64'], k3sImages: [] });
  const { repo, tag } = repoPathOf(REF);
  await pushImage(src.registry.url, repo, tag, [imageOf('amd64', [layerOf({ a: '1' })]), imageOf('arm64', [layerOf({ a: '2' })])]);
  writeRecipe(src, path.join(src.tmp, 'r', 'recipe.yaml'), { arches: { amd64: ['core'], arm64: ['core'] }, features: { core: [REF] } });
});
afterAll(async () => {
  await src?.stop();
});

describe('fsm-edge bundle (CLI)', () => {
  const bundle = () => path.join(src.tmp, 'out');

  it('keygen, then build signs with a key from the environment and prints one JSON document', async () => {
    const k = await cli('bundle', 'keygen', '--out', key(), '--json');
    expect(k.code).toBe(0);
    expect(JSON.parse(k.stdout)).toMatchObject({ ok: true, privateKeyFile: key(), publicKeyFile: `${key()}.pub` });
    expect(k.stdout).not.toContain('PRIVATE KEY');

    const b = await cli(
      'bundle',
      'build',
      '--recipe',
      path.join(src.tmp, 'r', 'recipe.yaml'),
      '--out',
      bundle(),
      '--cache',
      path.join(src.tmp, 'cache'),
      '--signing-key',
      'env:LAB_KEY',
      '--json',
    );
    expect(b.code, b.stderr).toBe(0);
    const doc = JSON.parse(b.stdout);
    expect(doc).toMatchObject({ ok: true, dir: bundle(), name: 'lab', lockWritten: true });
    expect(Object.keys(doc.arches)).toEqual(['amd64', 'arm64']);
    expect(b.stderr).toMatch(/wrote .*out: \d+ blobs/);
  });

  it('verify passes with the right key and names the bad file with exit 1 otherwise', async () => {
    const ok = await cli('bundle', 'verify', bundle(), '--trust-key', `${key()}.pub`);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/signature by sha256:[a-f0-9]{64}; \d+ blobs/);
    await cli('bundle', 'keygen', '--out', path.join(src.tmp, 'keys', 'other.key'));
    const foreign = await cli('bundle', 'verify', bundle(), '--trust-key', path.join(src.tmp, 'keys', 'other.key.pub'), '--json');
    expect(foreign.code).toBe(1);
    expect(JSON.parse(foreign.stdout).error.message).toMatch(/bundle\.json\.sig: signed by key sha256:\w+, which is not trusted/);
  });

  it('inspect --json and diff of a bundle with itself (nothing to send)', async () => {
    const i = await cli('bundle', 'inspect', bundle(), '--json');
    expect(i.code).toBe(0);
    expect(JSON.parse(i.stdout).arches[0].images[0]).toMatchObject({ ref: REF, platform: 'linux/amd64' });
    const d = await cli('bundle', 'diff', bundle(), bundle());
    expect(d.code).toBe(0);
    expect(d.stdout).toMatch(/amd64: send 0 B in 0 blobs/);
  });

  it('bad input exits 2: no signing key, key material on the command line, invalid recipe, unknown arch', async () => {
    const recipe = path.join(src.tmp, 'r', 'recipe.yaml');
    expect((await cli('bundle', 'build', '--recipe', recipe)).code).toBe(2);
    const raw = await cli('bundle', 'build', '--recipe', recipe, '--signing-key', '-----BEGIN PRIVATE KEY-----');
    expect(raw.code).toBe(2);
    expect(raw.stderr).toMatch(/env:NAME or file:PATH/);
    const bad = path.join(src.tmp, 'r', 'bad.yaml');
    fs.writeFileSync(
      bad,
      fs.readFileSync(recipe, 'utf8').replace('amd64:\n      features:\n        - core', 'arm:\n      features:\n        - core'),
    );
    const r = await cli('bundle', 'build', '--recipe', bad, '--signing-key', 'env:LAB_KEY');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/spec\.arches\.arm\.features: arm can carry k3s only/);
    expect((await cli('bundle', 'build', '--recipe', recipe, '--signing-key', 'env:LAB_KEY', '--arch', 'riscv64')).code).toBe(2);
  });

  it('export --split and import --trust-key round-trip', async () => {
    const tar = path.join(src.tmp, 'usb', 'b.tar');
    const e = await cli('bundle', 'export', bundle(), '--out', tar, '--split', '64K', '--json');
    expect(e.code, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).files.length).toBeGreaterThan(1);
    const i = await cli('bundle', 'import', tar, '--out', path.join(src.tmp, 'back'), '--trust-key', `${key()}.pub`);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/blobs verified/);
  });
});
