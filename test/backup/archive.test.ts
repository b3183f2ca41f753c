// The backup file contract (briefs/backup-format.md): written by us, opened by us and by Debian's `age` CLI;
// every entry checked against the manifest; wrong keys, truncation, tampering and path tricks refused by name.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { Header } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BackupManifest,
  backupFileName,
  completeManifest,
  openBackupArchive,
  packBackupTar,
  writeBackupArchive,
} from '../../src/backup/archive.js';
import { FsmEdgeError } from '../../src/config/errors.js';

const HAVE_AGE = spawnSync('age', ['--version']).status === 0;
const LOW_SCRYPT = 10; // the format is the same at any work factor; 18 (the default) costs seconds per test

const manifest: Omit<BackupManifest, 'entries'> = {
  format: 'fsm-edge-backup/v1',
  site: 'pop-a',
  createdAt: '2026-11-29T10:00:00Z',
  source: 'controller',
  k3s: { version: 'v1.37.1+k3s1', datastore: 'sqlite', nodeName: 'pop-a', arch: 'amd64' },
  pause: { controlPlaneMs: 812 },
};
const entries = [
  { path: 'k3s/token', data: Buffer.from('K10abc::server:secret-token-value\n'), mode: 0o600 },
  { path: 'k3s/node-password', data: Buffer.from('node-password-value\n'), mode: 0o600 },
  { path: 'datastore/sqlite/state.db', data: Buffer.alloc(70_000, 7), mode: 0o600 },
];

let dir: string;
let identity: string;
let recipient: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backup-archive-'));
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function expectRefused(p: Promise<unknown>, re: RegExp) {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(FsmEdgeError);
  expect((e as FsmEdgeError).kind).toBe('config');
  expect((e as Error).message).toMatch(re);
}

/** Re-seals a tampered plaintext with the same recipient, as an attacker with the public key could. */
async function reseal(file: string, plain: Uint8Array) {
  const enc = new Encrypter();
  enc.addRecipient(recipient);
  fs.writeFileSync(file, await enc.encrypt(plain));
}
async function decryptWithLib(file: string): Promise<Buffer> {
  const dec = new Decrypter();
  dec.addIdentity(identity);
  return Buffer.from(await dec.decrypt(fs.readFileSync(file)));
}
function tarFile(p: string, data: Buffer, type: 'File' | 'SymbolicLink' = 'File', linkpath?: string): Buffer {
  const h = new Header({
    path: p,
    mode: 0o600,
    size: type === 'File' ? data.length : 0,
    type,
    mtime: new Date(0),
    ...(linkpath ? { linkpath } : {}),
  });
  const block = Buffer.alloc(512);
  h.encode(block, 0);
  if (type !== 'File') return block;
  return Buffer.concat([block, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

describe('backup archive', () => {
  it('names the file <site>-<UTC stamp>.fsm-edge-backup.age', () => {
    expect(backupFileName('pop-a', new Date('2026-11-29T10:00:00.123Z'))).toBe('pop-a-20261129T100000Z.fsm-edge-backup.age');
  });

  it('round-trips with an X25519 identity: manifest first, digests listed, entries intact, file 0600', async () => {
    const out = path.join(dir, 'x.age');
    const r = await writeBackupArchive(out, manifest, entries, { recipients: [recipient] });
    expect(r.bytes).toBe(fs.statSync(out).size);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(out).subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    expect(fs.readFileSync(out).includes(Buffer.from('secret-token-value'))).toBe(false);
    const opened = await openBackupArchive(out, { identities: [identity] });
    expect(opened.paths).toEqual(entries.map((e) => e.path));
    expect(opened.entry('k3s/token').toString()).toContain('secret-token-value');
    expect(opened.manifest.entries[0]).toMatchObject({ path: 'k3s/token', size: entries[0]!.data.length, mode: 0o600 });
    expect(opened.manifest.entries[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(() => opened.entry('k3s/other')).toThrow(/not in this backup/);
  });

  it.skipIf(!HAVE_AGE)('Debian age CLI decrypts it with the identity file; the tar lists manifest.json first', async () => {
    const out = path.join(dir, 'cli.age');
    await writeBackupArchive(out, manifest, entries, { recipients: [recipient] });
    const keyFile = path.join(dir, 'key.txt');
    fs.writeFileSync(keyFile, `${identity}\n`, { mode: 0o600 });
    const plain = execFileSync('age', ['-d', '-i', keyFile, out]);
    const listing = execFileSync('tar', ['-t'], { input: plain }).toString().trim().split('\n');
    expect(listing).toEqual(['manifest.json', 'k3s/token', 'k3s/node-password', 'datastore/sqlite/state.db']);
    const m = JSON.parse(execFileSync('tar', ['-xO', 'manifest.json'], { input: plain }).toString()) as BackupManifest;
    expect(m.format).toBe('fsm-edge-backup/v1');
    expect(m.entries.map((e) => e.path)).toEqual(entries.map((e) => e.path));
  });

  it.skipIf(!HAVE_AGE)('a file the age CLI encrypted to our recipient opens with our reader', async () => {
    const plain = packBackupTar(completeManifest(manifest, entries), entries);
    const out = path.join(dir, 'from-cli.age');
    execFileSync('age', ['-r', recipient, '-o', out], { input: plain });
    const opened = await openBackupArchive(out, { identities: [identity] });
    expect(opened.entry('k3s/node-password').toString()).toBe('node-password-value\n');
  });

  it.skipIf(!HAVE_AGE || spawnSync('script', ['--version']).status !== 0)(
    'Debian age CLI decrypts a passphrase backup (passphrase typed on a pty)',
    async () => {
      const out = path.join(dir, 'pass.age');
      const pass = 'correct horse battery staple';
      await writeBackupArchive(out, manifest, entries, { recipients: [], passphrase: pass, scryptLogN: LOW_SCRYPT });
      const plainOut = path.join(dir, 'pass.tar');
      // age reads a passphrase only from the terminal: `script` gives it one, the passphrase goes to its stdin.
      const r = spawnSync('script', ['-qec', `age -d -o ${plainOut} ${out}`, '/dev/null'], {
        input: `${pass}\n`,
        timeout: 60_000,
      });
      expect(r.status, r.stdout.toString() + r.stderr.toString()).toBe(0);
      expect(execFileSync('tar', ['-tf', plainOut]).toString().split('\n')[0]).toBe('manifest.json');
      fs.rmSync(plainOut);
    },
  );

  it('opens a passphrase backup; a wrong passphrase or a wrong identity is refused as such', async () => {
    const out = path.join(dir, 'p.age');
    await writeBackupArchive(out, manifest, entries, { recipients: [], passphrase: 'right one', scryptLogN: LOW_SCRYPT });
    const opened = await openBackupArchive(out, { passphrase: 'right one' });
    expect(opened.entry('k3s/token').toString()).toContain('secret-token-value');
    await expectRefused(openBackupArchive(out, { passphrase: 'wrong one' }), /p\.age: no identity\/passphrase opens it/);
    const other = await generateX25519Identity();
    const x = path.join(dir, 'x2.age');
    await writeBackupArchive(x, manifest, entries, { recipients: [recipient] });
    await expectRefused(openBackupArchive(x, { identities: [other] }), /no identity\/passphrase opens it/);
  });

  it('refuses recipients and a passphrase together (age allows a passphrase only alone)', async () => {
    await expect(
      writeBackupArchive(path.join(dir, 'both.age'), manifest, entries, { recipients: [recipient], passphrase: 'x' }),
    ).rejects.toThrow(/either age recipients or a passphrase/);
    expect(fs.existsSync(path.join(dir, 'both.age'))).toBe(false);
  });

  it('a truncated file is refused as truncated', async () => {
    const out = path.join(dir, 't.age');
    await writeBackupArchive(out, manifest, entries, { recipients: [recipient] });
    const full = fs.readFileSync(out);
    fs.writeFileSync(out, full.subarray(0, full.length - 1000));
    await expectRefused(openBackupArchive(out, { identities: [identity] }), /t\.age: the file is truncated or damaged/);
    fs.writeFileSync(out, full.subarray(0, 40));
    await expectRefused(openBackupArchive(out, { identities: [identity] }), /t\.age: /);
  });

  it('a corrupted entry is named (digest mismatch), and so is a size mismatch', async () => {
    const out = path.join(dir, 'c.age');
    await writeBackupArchive(out, manifest, entries, { recipients: [recipient] });
    const plain = await decryptWithLib(out);
    const at = plain.indexOf(Buffer.from('node-password-value'));
    plain[at] = (plain[at] ?? 0) ^ 0x20;
    await reseal(out, plain);
    await expectRefused(openBackupArchive(out, { identities: [identity] }), /entry k3s\/node-password: digest mismatch/);
  });

  it('refuses an entry the manifest does not list, a missing one, a link, and a path with .. or a leading /', async () => {
    const full = completeManifest(manifest, entries.slice(0, 1));
    const man = tarFile('manifest.json', Buffer.from(JSON.stringify(full)));
    const token = tarFile('k3s/token', entries[0]!.data);
    const end = Buffer.alloc(1024);
    const cases: Array<[string, Buffer, RegExp]> = [
      ['unlisted', Buffer.concat([man, token, tarFile('k3s/extra', Buffer.from('x')), end]), /entry k3s\/extra: not listed/],
      ['missing', Buffer.concat([man, end]), /entry k3s\/token: listed but missing/],
      [
        'link',
        Buffer.concat([man, tarFile('k3s/token', Buffer.alloc(0), 'SymbolicLink', '/etc/shadow'), end]),
        /k3s\/token: a SymbolicLink/,
      ],
      ['dotdot', Buffer.concat([man, token, tarFile('k3s/../../etc/cron.d/x', Buffer.from('x')), end]), /path refused/],
      ['absolute', Buffer.concat([man, token, tarFile('/etc/cron.d/x', Buffer.from('x')), end]), /path refused/],
      ['no manifest first', Buffer.concat([token, man, end]), /first entry is not manifest.json/],
    ];
    for (const [name, plain, re] of cases) {
      const out = path.join(dir, `${name.replace(/ /g, '-')}.age`);
      await reseal(out, plain);
      await expectRefused(openBackupArchive(out, { identities: [identity] }), re);
    }
  });

  it('refuses to write an entry path with .. (confinement on the writing side too)', async () => {
    await expect(
      writeBackupArchive(path.join(dir, 'w.age'), manifest, [{ path: '../x', data: Buffer.from('x'), mode: 0o600 }], {
        recipients: [recipient],
      }),
    ).rejects.toThrow(/not allowed/);
  });
});
