// The fsm-edge backup file (contract: briefs/backup-format.md): one age-encrypted, uncompressed POSIX tar whose
// first entry is manifest.json. age (not our own crypto) so that a technician with Debian's `age` CLI can open it
// without fsm-edge. Everything is assembled and checked in memory: the plaintext holds the server token and the
// node password, so it never touches the controller's disk.

import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Decrypter, Encrypter } from 'age-encryption';
import { Header, Parser, type ReadEntry } from 'tar';
import { z } from 'zod';
import { FsmEdgeError } from '../config/errors.js';

export const BACKUP_FORMAT = 'fsm-edge-backup/v1';
export const MANIFEST_PATH = 'manifest.json';
/** Extension of a backup file: `<site>-<YYYYMMDDTHHMMSSZ>.fsm-edge-backup.age`. */
export const BACKUP_SUFFIX = '.fsm-edge-backup.age';

const ENTRY_PATH = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

/** A path inside the archive: relative, `/`-separated, no `..`, no empty or dot segments, fits a ustar name. */
export function isSafeEntryPath(p: string): boolean {
  return p.length <= 100 && ENTRY_PATH.test(p) && !p.split('/').some((s) => s === '..' || s === '.');
}

const EntrySchema = z.object({
  path: z.string().refine(isSafeEntryPath, 'a relative path without .., at most 100 characters'),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  mode: z.number().int().min(0).max(0o777),
});

export const BackupManifestSchema = z.object({
  format: z.literal(BACKUP_FORMAT),
  site: z.string().min(1),
  createdAt: z.string().min(1),
  source: z.enum(['controller', 'scheduled']),
  k3s: z.object({
    version: z.string(),
    datastore: z.enum(['sqlite', 'etcd']),
    nodeName: z.string().min(1),
    arch: z.string(),
  }),
  bundle: z.object({ name: z.string(), digest: z.string(), serial: z.number().int() }).optional(),
  pause: z.object({ controlPlaneMs: z.number().nonnegative() }).optional(),
  entries: z.array(EntrySchema),
});
export type BackupManifest = z.infer<typeof BackupManifestSchema>;
export type BackupEntryInfo = BackupManifest['entries'][number];

export interface BackupEntryData {
  path: string;
  data: Buffer;
  mode: number;
}

export interface BackupKeys {
  /** X25519 recipients (`age1…`). */
  recipients: string[];
  /** A recovery passphrase (scrypt). age allows it only as the file's sole recipient. */
  passphrase?: string;
  /** scrypt work factor (log2) for a passphrase; age's default 18 when absent. */
  scryptLogN?: number;
}

export interface OpenedBackup {
  manifest: BackupManifest;
  /** The bytes of one listed entry (digest already checked); throws for a path that is not in the manifest. */
  entry(path: string): Buffer;
  /** Every entry path in manifest order (manifest.json not included). */
  paths: string[];
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The backup file name for a site at a time: `<site>-20261129T100000Z.fsm-edge-backup.age`. */
export function backupFileName(site: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
  return `${site}-${stamp}${BACKUP_SUFFIX}`;
}

function tarBlock(p: string, size: number, mode: number, mtime: Date): Buffer {
  const h = new Header({ path: p, mode, size, type: 'File', mtime, uid: 0, gid: 0, uname: 'root', gname: 'root' });
  const block = Buffer.alloc(512);
  h.encode(block, 0);
  return block;
}

/** The plaintext tar (manifest first) in memory. Exported for tests and for the POP-side writer's checks. */
export function packBackupTar(manifest: BackupManifest, entries: BackupEntryData[]): Buffer {
  const mtime = new Date(manifest.createdAt);
  const when = Number.isNaN(mtime.getTime()) ? new Date(0) : mtime;
  const parts: Buffer[] = [];
  const add = (p: string, data: Buffer, mode: number) => {
    parts.push(tarBlock(p, data.length, mode, when), data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  };
  add(MANIFEST_PATH, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), 0o600);
  for (const e of entries) add(e.path, e.data, e.mode);
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Builds the manifest's entry list (sizes and digests) and validates the whole manifest. */
export function completeManifest(manifest: Omit<BackupManifest, 'entries'>, entries: BackupEntryData[]): BackupManifest {
  const seen = new Set<string>();
  for (const e of entries) {
    if (!isSafeEntryPath(e.path) || e.path === MANIFEST_PATH) {
      throw new FsmEdgeError('failed', `backup entry path ${JSON.stringify(e.path)} is not allowed`, {
        fix: 'entry paths are relative, without .. and at most 100 characters (an fsm-edge bug if you see this)',
      });
    }
    if (seen.has(e.path)) throw new FsmEdgeError('failed', `backup entry ${e.path} is listed twice`);
    seen.add(e.path);
  }
  const full = {
    ...manifest,
    entries: entries.map((e) => ({ path: e.path, size: e.data.length, sha256: sha256(e.data), mode: e.mode & 0o777 })),
  };
  return BackupManifestSchema.parse(full);
}

/** age-encrypts a plaintext with the keys (X25519 recipients, or one passphrase). */
export async function ageEncrypt(plain: Uint8Array, keys: BackupKeys): Promise<Uint8Array> {
  const enc = new Encrypter();
  if (keys.passphrase !== undefined && keys.recipients.length > 0) {
    throw new FsmEdgeError('usage', 'a backup takes either age recipients or a passphrase, not both', {
      fix:
        'age allows a passphrase only as the sole recipient; to give a technician a passphrase as well, ' +
        'encrypt an age identity with the passphrase (age -p) and add its recipient',
    });
  }
  if (keys.passphrase !== undefined) {
    if (keys.passphrase.length === 0) throw new FsmEdgeError('usage', 'the backup passphrase is empty');
    enc.setPassphrase(keys.passphrase);
    if (keys.scryptLogN !== undefined) enc.setScryptWorkFactor(keys.scryptLogN);
  } else {
    if (keys.recipients.length === 0) {
      throw new FsmEdgeError('usage', 'a backup needs at least one age recipient or a passphrase', {
        fix: 'pass --recipient age1…, --recipients-file FILE, --passphrase-file FILE, or set backup.recipients in the site',
      });
    }
    for (const r of keys.recipients) {
      try {
        enc.addRecipient(r);
      } catch (e) {
        throw new FsmEdgeError('config', `age recipient ${r.slice(0, 12)}… is not valid: ${(e as Error).message}`, {
          fix: 'a recipient is the age1… line that age-keygen prints as "public key"',
        });
      }
    }
  }
  return enc.encrypt(plain);
}

/**
 * Writes one backup file: manifest (entries filled in) + entries → tar in memory → age → `out` (0600, written
 * to a temporary name then renamed so a crash never leaves a half file under the final name).
 */
export async function writeBackupArchive(
  out: string,
  manifest: Omit<BackupManifest, 'entries'>,
  entries: Array<{ path: string; data: Buffer; mode: number }>,
  keys: BackupKeys,
): Promise<{ bytes: number; sha256: string }> {
  const full = completeManifest(manifest, entries);
  const sealed = await ageEncrypt(packBackupTar(full, entries), keys);
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.partial`);
  try {
    await fs.writeFile(tmp, sealed, { mode: 0o600 });
    await fs.rename(tmp, out);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
  return { bytes: sealed.length, sha256: sha256(sealed) };
}

const bad = (file: string, msg: string, fix?: string) =>
  new FsmEdgeError('config', `backup ${file}: ${msg}`, { code: 'backup', ...(fix ? { fix } : {}) });

/** Decrypts an age file in memory, naming a wrong key and a truncated or damaged file apart. */
export async function ageDecrypt(file: string, sealed: Uint8Array, key: { identities?: string[]; passphrase?: string }) {
  const dec = new Decrypter();
  const ids = key.identities ?? [];
  if (ids.length === 0 && key.passphrase === undefined) {
    throw new FsmEdgeError('usage', `backup ${file}: no identity or passphrase given to open it`, {
      fix: 'pass --identity FILE (an age key file) or --passphrase-file FILE',
    });
  }
  for (const id of ids) {
    try {
      dec.addIdentity(id);
    } catch (e) {
      throw bad(file, `an identity is not a valid age secret key: ${(e as Error).message}`);
    }
  }
  if (key.passphrase !== undefined) dec.addPassphrase(key.passphrase);
  if (!Buffer.from(sealed.subarray(0, 22)).toString('latin1').startsWith('age-encryption.org/v1\n')) {
    throw bad(file, 'not an age file (no age-encryption.org/v1 header)', 'is this an fsm-edge backup file?');
  }
  try {
    return Buffer.from(await dec.decrypt(sealed));
  } catch (e) {
    const msg = (e as Error).message;
    if (/no identity matched/i.test(msg)) {
      throw bad(file, 'no identity/passphrase opens it', 'use the passphrase or an age identity of a recipient the backup was made for');
    }
    if (/header|stanza|version|non-ASCII/i.test(msg)) throw bad(file, `the age header is damaged: ${msg}`);
    throw bad(file, `the file is truncated or damaged (${msg})`, 'copy the backup file again from where it was made');
  }
}

export interface TarEntry {
  path: string;
  /** tar's entry type: `File`, `Directory`, `SymbolicLink`, … */
  type: string;
  mode: number;
  data: Buffer;
}

/** Parses an in-memory tar without touching the disk; every entry as it is (the caller decides what to accept). */
export async function readTarEntries(file: string, plain: Buffer): Promise<TarEntry[]> {
  return readTar(file, plain);
}

async function readTar(file: string, plain: Buffer): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const pending: Promise<void>[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      const chunks: Buffer[] = [];
      pending.push(
        new Promise((resolve, reject) => {
          entry.on('data', (c: Buffer) => chunks.push(c));
          entry.on('end', () => {
            out.push({ path: entry.path, type: entry.type, mode: entry.mode ?? 0o600, data: Buffer.concat(chunks) });
            resolve();
          });
          entry.on('error', reject);
        }),
      );
    },
  });
  const done = new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', reject);
    parser.on('warn', (_code: string, message: string | Error) => reject(new Error(String(message))));
  });
  parser.end(plain);
  try {
    await done;
    await Promise.all(pending);
  } catch (e) {
    throw bad(file, `the archive inside is not a valid tar: ${(e as Error).message}`);
  }
  return out;
}

/**
 * Opens a backup: decrypts in memory, reads the manifest (first entry), and checks every entry against it:
 * each listed entry present once with its size and digest, nothing unlisted, no link or special file, no path
 * with `..` or a leading `/`. Throws FsmEdgeError (kind `config`) naming the bad entry.
 */
export async function openBackupArchive(file: string, key: { identities?: string[]; passphrase?: string }): Promise<OpenedBackup> {
  let sealed: Buffer;
  try {
    sealed = await fs.readFile(file);
  } catch (e) {
    throw bad(file, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const plain = await ageDecrypt(file, sealed, key);
  const raw = await readTar(file, plain);
  const first = raw[0];
  if (!first || first.path !== MANIFEST_PATH || first.type !== 'File') {
    throw bad(file, `the first entry is not ${MANIFEST_PATH}`, 'this is not an fsm-edge backup');
  }
  let manifest: BackupManifest;
  try {
    manifest = BackupManifestSchema.parse(JSON.parse(first.data.toString('utf8')));
  } catch (e) {
    throw bad(file, `${MANIFEST_PATH} is not a valid ${BACKUP_FORMAT} manifest: ${(e as Error).message.slice(0, 400)}`);
  }
  const listed = new Map(manifest.entries.map((e) => [e.path, e]));
  if (listed.size !== manifest.entries.length) throw bad(file, `${MANIFEST_PATH} lists an entry twice`);
  const data = new Map<string, Buffer>();
  for (const r of raw.slice(1)) {
    const name = JSON.stringify(r.path);
    if (!isSafeEntryPath(r.path)) throw bad(file, `entry ${name}: path refused (absolute, .. or not a plain name)`);
    if (r.type !== 'File' && r.type !== 'OldFile') throw bad(file, `entry ${r.path}: a ${r.type}, not a regular file`);
    const want = listed.get(r.path);
    if (!want) throw bad(file, `entry ${r.path}: not listed in ${MANIFEST_PATH}`);
    if (data.has(r.path)) throw bad(file, `entry ${r.path}: appears twice`);
    if (r.data.length !== want.size) {
      throw bad(file, `entry ${r.path}: size ${r.data.length} bytes, the manifest says ${want.size}`);
    }
    if (sha256(r.data) !== want.sha256) throw bad(file, `entry ${r.path}: digest mismatch`);
    data.set(r.path, r.data);
  }
  for (const e of manifest.entries) if (!data.has(e.path)) throw bad(file, `entry ${e.path}: listed but missing`);
  return {
    manifest,
    paths: manifest.entries.map((e) => e.path),
    entry(p: string): Buffer {
      const b = data.get(p);
      if (!b) throw bad(file, `entry ${p}: not in this backup`);
      return b;
    },
  };
}
