// readVerifiedBundle / `bundle verify` on bundles written in the test: the schema refuses documents a valid
// signature cannot make safe, and the returned document is the one whose bytes were signed.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readVerifiedBundle, verifyBundle, verifyBundleContent, VerifyError } from '../../src/bundle/verify.js';
import { parseBundleDoc, BundleFormatError } from '../../src/bundle/format.js';
import { popAssemblePlan } from '../../src/bundle/pop.js';
import { main } from '../../src/cli/main.js';
import { writeSyntheticBundle } from './synthetic-bundle.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-verify-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const ESCAPE = '../../../../etc/cron.d/x';
const chartIndex = (files: Array<{ role: string }>) => files.findIndex((f) => f.role === 'fsm-chart');

describe('readVerifiedBundle', () => {
  it('returns the verified bytes, their digest, the parsed document, signer and payload totals', async () => {
    const b = writeSyntheticBundle(path.join(tmp, 'ok'));
    const v = await readVerifiedBundle(b.dir, { trustedKeys: [b.publicKey] });
    expect(v.bytes.equals(b.bytes)).toBe(true);
    expect(v.digest).toBe(sha(b.bytes));
    expect(v.doc).toEqual(b.doc);
    expect(v.signer).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(v.blobs).toBe(b.doc.totals.blobs);
    expect(v.payloadBytes).toBe(b.doc.totals.bytes);
    expect(await verifyBundle(b.dir, { trustedKeys: [b.publicKey] })).toEqual({
      dir: b.dir,
      name: 'synthetic',
      signer: v.signer,
      blobs: v.blobs,
      bytes: v.payloadBytes,
      arches: ['amd64'],
    });
  });

  it('keeps the signed document when bundle.json is swapped on disk during the blob check', async () => {
    const b = writeSyntheticBundle(path.join(tmp, 'swap'));
    // The attacker's document: a valid bundle by the same key, but a different one (other bytes, other names).
    const other = writeSyntheticBundle(path.join(tmp, 'swap-other'), {
      keys: { privateKey: b.privateKey, publicKey: b.publicKey },
      mutate: (d) => (d.name = 'swapped'),
    });
    let swapped = false;
    const v = await readVerifiedBundle(b.dir, {
      trustedKeys: [b.publicKey],
      onProgress: () => {
        if (swapped) return;
        fs.copyFileSync(path.join(other.dir, 'bundle.json'), path.join(b.dir, 'bundle.json'));
        swapped = true;
      },
    });
    expect(swapped).toBe(true);
    expect(fs.readFileSync(path.join(b.dir, 'bundle.json')).equals(other.bytes)).toBe(true);
    expect(v.doc.name).toBe('synthetic');
    expect(v.doc).toEqual(b.doc);
    expect(v.bytes.equals(b.bytes)).toBe(true);
    expect(v.digest).toBe(sha(b.bytes));
  });

  it('verifies the document first (arches: []) and the blobs later against that same document', async () => {
    const b = writeSyntheticBundle(path.join(tmp, 'two-step'));
    const v = await readVerifiedBundle(b.dir, { trustedKeys: [b.publicKey], arches: [] });
    expect({ blobs: v.blobs, payloadBytes: v.payloadBytes }).toEqual({ blobs: 0, payloadBytes: 0 });
    // bundle.json replaced by garbage afterwards: the blob check uses the carried document, not the file.
    fs.writeFileSync(path.join(b.dir, 'bundle.json'), '{}');
    expect(await verifyBundleContent(b.dir, v.doc, { arches: ['amd64'] })).toEqual({
      blobs: b.doc.totals.blobs,
      payloadBytes: b.doc.totals.bytes,
      arches: ['amd64'],
    });
    const layer = b.doc.arches.amd64!.images[0]!.layers[0]!.digest.slice(7);
    fs.writeFileSync(path.join(b.dir, 'blobs', 'sha256', layer), 'LAYER BYTES');
    await expect(verifyBundleContent(b.dir, v.doc, { arches: ['amd64'] })).rejects.toThrow(`blobs/sha256/${layer}: content hashes to`);
  });

  it('refuses a bundle re-signed by its own key whose file name leaves its directory, naming the field', async () => {
    const b = writeSyntheticBundle(path.join(tmp, 'escape'), {
      mutate: (d) => {
        const files = d.arches.amd64!.files;
        files[chartIndex(files)]!.name = ESCAPE;
      },
    });
    const i = chartIndex(b.doc.arches.amd64!.files);
    const err = await readVerifiedBundle(b.dir, { trustedKeys: [b.publicKey] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerifyError);
    expect((err as VerifyError).file).toBe('bundle.json');
    expect((err as Error).message).toContain(`bundle.json: arches.amd64.files[${i}].name: a plain file name`);
    expect((err as Error).message).toContain('signature by sha256:');
    // The plan generator refuses it too (defence in depth for callers holding an unchecked document).
    expect(() => popAssemblePlan(b.doc, 'amd64')).toThrow(/not a plain file name/);
  });

  it('`bundle verify` exits 1 and prints the field path', async () => {
    const b = writeSyntheticBundle(path.join(tmp, 'cli'), {
      mutate: (d) => {
        const files = d.arches.amd64!.files;
        files[chartIndex(files)]!.name = ESCAPE;
      },
    });
    const keyFile = path.join(tmp, 'cli.pub');
    fs.writeFileSync(keyFile, b.publicKey.export({ format: 'pem', type: 'spki' }));
    let stdout = '';
    let stderr = '';
    const code = await main(['node', 'fsm-edge', 'bundle', 'verify', b.dir, '--trust-key', keyFile], {
      stdout: { write: (s: string) => ((stdout += s), true) } as never,
      stderr: { write: (s: string) => ((stderr += s), true) } as never,
      env: { ...process.env, NO_COLOR: '1' },
    });
    expect(code).toBe(1);
    expect(stdout + stderr).toContain(`bundle.json: arches.amd64.files[${chartIndex(b.doc.arches.amd64!.files)}].name:`);
  });

  it('refuses other unsafe or inconsistent documents, each naming its field', () => {
    const b = writeSyntheticBundle(path.join(tmp, 'schema'));
    const bad = (edit: (d: Record<string, any>) => void): string => {
      const d = JSON.parse(b.bytes.toString('utf8'));
      edit(d);
      try {
        parseBundleDoc(JSON.stringify(d));
      } catch (e) {
        expect(e).toBeInstanceOf(BundleFormatError);
        return (e as BundleFormatError).message;
      }
      throw new Error('accepted');
    };
    expect(bad((d) => (d.arches.amd64.files[0].name = 'a/b'))).toMatch(/^bundle\.json: arches\.amd64\.files\[0\]\.name: /);
    expect(bad((d) => (d.arches.amd64.files[0].name = '..'))).toMatch(/files\[0\]\.name/);
    expect(bad((d) => (d.arches.amd64.files[0].digest = 'sha256:xyz'))).toMatch(/files\[0\]\.digest: a digest `sha256:/);
    expect(bad((d) => (d.arches.amd64.files[0].size = -1))).toMatch(/files\[0\]\.size/);
    expect(bad((d) => (d.arches.amd64.files[0].size = 1.5))).toMatch(/files\[0\]\.size/);
    expect(bad((d) => (d.arches.amd64.files[0].role = 'cron-job'))).toMatch(/files\[0\]\.role/);
    expect(bad((d) => (d.arches.riscv = d.arches.amd64))).toMatch(/^bundle\.json: arches: /);
    expect(bad((d) => (d.arches.amd64.images[0].ref = 'docker.io/x/../y:1'))).toMatch(/images\[0\]\.ref/);
    expect(bad((d) => (d.arches.amd64.images[0].ref = 'flomesh/pipy:1.5.12'))).toMatch(/images\[0\]\.ref: not in normalised form/);
    expect(bad((d) => (d.arches.amd64.images[0].platform.os = 'linux x'))).toMatch(/images\[0\]\.platform\.os/);
    expect(bad((d) => (d.arches.amd64.images[0].manifest.mediaType = 'a b'))).toMatch(/images\[0\]\.manifest\.mediaType/);
    expect(bad((d) => (d.arches.amd64.totals.bytes += 1))).toMatch(/arches\.amd64\.totals: says/);
    expect(bad((d) => (d.name = '../x'))).toMatch(/^bundle\.json: name: /);
    expect(bad((d) => (d.extra = 1))).toMatch(/^bundle\.json: \(document\): /);
    expect(bad((d) => delete d.build)).toMatch(/^bundle\.json: build: /);
    expect(bad((d) => (d.build.serial = 0))).toMatch(/^bundle\.json: build\.serial: /);
    expect(bad((d) => (d.build.createdAt = 'yesterday'))).toMatch(/^bundle\.json: build\.createdAt: /);
  });
});
