// What recovery takes from an opened backup (briefs/backup-format.md), and where each entry goes on the POP. Only
// the entries named here are ever written, each to a fixed path: a backup's own paths never choose where bytes land.

import { PhaseRefusal } from '../engine/phase.js';
import { K3S_DATA_DIR, K3S_TOKEN_PATH, POP_STATE_DIR } from '../engine/pop-layout.js';

/** The manifest fields recovery reads (a structural subset of backup/archive.ts's BackupManifest). */
export interface RecoveryManifest {
  site: string;
  createdAt: string;
  k3s: { version: string; datastore: 'sqlite' | 'etcd'; nodeName: string; arch: string };
  bundle?: { name: string; digest: string; serial: number } | undefined;
  entries: Array<{ path: string; size: number; sha256: string; mode: number }>;
}

/** An opened backup: decrypted and every entry checked against the manifest before recovery sees it. */
export interface RecoveryBackup {
  manifest: RecoveryManifest;
  entry(path: string): Buffer;
  paths: string[];
  /** sha256 of the encrypted file: the backup's identity in the journal (never the plaintext's). */
  sha256: string;
  /** Where it came from, for messages. */
  file: string;
}

export const ENTRY_TOKEN = 'k3s/token';
export const ENTRY_NODE_PASSWORD = 'k3s/node-password';
export const ENTRY_ETCD_SNAPSHOT = 'datastore/etcd-snapshot';
export const SQLITE_FILES = ['state.db', 'state.db-wal', 'state.db-shm'] as const;
export const entrySqlite = (name: string) => `datastore/sqlite/${name}`;

/** Where k3s itself keeps the server token (secure format) — restored next to the install's token-file. */
export const K3S_SERVER_TOKEN_PATH = `${K3S_DATA_DIR}/server/token`;
export const K3S_NODE_PASSWORD_PATH = '/etc/rancher/node/password';
export const K3S_DB_DIR = `${K3S_DATA_DIR}/server/db`;
/** Recovery's staging area on the POP (0700): the etcd snapshot until k3s has restored it, and the start marker. */
export const POP_RESTORE_DIR = `${POP_STATE_DIR}/restore`;
export const POP_RESTORE_SNAPSHOT = `${POP_RESTORE_DIR}/etcd-snapshot`;
/** Written (with the backup's digest) before the first byte of a datastore: a re-run may overwrite what it finds. */
export const POP_RESTORE_MARKER = `${POP_RESTORE_DIR}/started`;

export interface ParsedToken {
  /** What k3s derives the bootstrap key from: the password part of `K10<ca-hash>::server:<password>`, or the bare token. */
  password: string;
  /** The file k3s wrote (server/token), as backed up. */
  full: string;
}

/** The server token: the secure K10 form or a bare password, nothing else (it is written into files as root). */
export function parseServerToken(raw: Buffer, file: string): ParsedToken {
  const text = raw.toString('utf8').trim();
  const secure = /^K10[0-9a-f]{64}::[A-Za-z0-9._-]+:([A-Za-z0-9._/+=-]+)$/.exec(text);
  if (secure) return { password: secure[1]!, full: text };
  if (/^[A-Za-z0-9._/+=-]{8,}$/.test(text)) return { password: text, full: text };
  throw new PhaseRefusal(
    'restore',
    `backup ${file}: entry ${ENTRY_TOKEN} is not a k3s server token (neither K10<hash>::<user>:<password> nor a bare password)`,
    'take a new backup from a working POP; this one cannot restore its datastore',
  );
}

export interface RestoreFile {
  /** Where it goes on the POP (a fixed path, never one from the backup). */
  path: string;
  data: Buffer;
  mode: number;
  /** The entry it came from, for descriptions. */
  entry: string;
  secret: boolean;
  /** Compressed on the wire (datastore files). */
  gzip?: boolean;
}

/** Every file recovery writes before k3s first starts, from the backup's entries. Refuses a backup that lacks one. */
export function restoreFiles(b: RecoveryBackup): RestoreFile[] {
  const has = (p: string) => b.paths.includes(p);
  const need = (p: string) => {
    if (!has(p))
      throw new PhaseRefusal(
        'restore',
        `backup ${b.file} has no entry ${p}`,
        'take a complete backup with `fsm-edge backup` and recover from it',
      );
    return b.entry(p);
  };
  const token = parseServerToken(need(ENTRY_TOKEN), b.file);
  const nodePassword = need(ENTRY_NODE_PASSWORD);
  if (!/^[A-Za-z0-9._-]+\n?$/.test(nodePassword.toString('utf8')))
    throw new PhaseRefusal('restore', `backup ${b.file}: entry ${ENTRY_NODE_PASSWORD} is not a k3s node password`, 'take a new backup');
  const files: RestoreFile[] = [
    // The install's token-file holds the bare password (k3s.ts writes it without a newline).
    { path: K3S_TOKEN_PATH, data: Buffer.from(token.password), mode: 0o600, entry: ENTRY_TOKEN, secret: true },
    { path: K3S_SERVER_TOKEN_PATH, data: Buffer.from(`${token.full}\n`), mode: 0o600, entry: ENTRY_TOKEN, secret: true },
    { path: K3S_NODE_PASSWORD_PATH, data: nodePassword, mode: 0o600, entry: ENTRY_NODE_PASSWORD, secret: true },
  ];
  if (b.manifest.k3s.datastore === 'etcd') {
    files.push({
      path: POP_RESTORE_SNAPSHOT,
      data: need(ENTRY_ETCD_SNAPSHOT),
      mode: 0o600,
      entry: ENTRY_ETCD_SNAPSHOT,
      secret: false,
      gzip: true,
    });
  } else {
    need(entrySqlite('state.db'));
    for (const name of SQLITE_FILES) {
      const p = entrySqlite(name);
      if (has(p)) files.push({ path: `${K3S_DB_DIR}/${name}`, data: b.entry(p), mode: 0o600, entry: p, secret: false, gzip: true });
    }
  }
  return files;
}
