// Secrets the controller must keep for a site (the k3s token, escrowed for recovery: a datastore restore is
// useless without it). Encrypted with AES-256-GCM under a key that is not stored beside them when the operator
// says so: `FSM_EDGE_STATE_KEY_FILE` points at the 32-byte key (e.g. on a separate volume or from a vault);
// otherwise a key file is created in the state directory (0600) — protection against a copied records
// folder, not against root on this machine.
//
// The key is precious: a new one makes every escrowed token unreadable. So a key is created only while no
// sealed secret exists anywhere in the state directory, and exclusively (two controllers starting at once
// keep one key); each sealed file names the id of its key, so a missing or wrong key is named, not guessed.

import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FsmEdgeError } from '../config/errors.js';
import { readSecretFile } from '../config/secret.js';
import { keyPath, sealedSecretFiles, secretsPath } from './paths.js';
import { writeAtomic } from './write-atomic.js';

const KEY_ENV = 'FSM_EDGE_STATE_KEY_FILE';

interface SealedFile {
  /** 1: before key ids (read only); 2: with `keyId`. */
  version: 1 | 2;
  alg: 'aes-256-gcm';
  keyId?: string;
  iv: string;
  tag: string;
  data: string;
}

/** The state key is missing, wrong or unusable: the operator restores it or points FSM_EDGE_STATE_KEY_FILE at it. */
export class StateKeyError extends FsmEdgeError {
  constructor(message: string, fix: string) {
    super('config', message, { code: 'state-key', fix });
    this.name = 'StateKeyError';
  }
}

/** Names a key without revealing it: a hash of the key under a fixed label, shortened for messages. */
export function stateKeyId(key: Buffer): string {
  return 'sha256:' + createHash('sha256').update('fsm-edge state key id\0').update(key).digest('hex').slice(0, 16);
}

interface StateKey {
  key: Buffer;
  id: string;
  file: string;
  /** How the file was chosen, for messages: `named by FSM_EDGE_STATE_KEY_FILE` or the default. */
  from: string;
}

function keyFileOf(root: string, env: NodeJS.ProcessEnv): { file: string; from: string } {
  const named = env[KEY_ENV];
  return named ? { file: named, from: `named by ${KEY_ENV}` } : { file: keyPath(root), from: `the default: ${KEY_ENV} is not set` };
}

function parseKey(bytes: Buffer, file: string): Buffer {
  const key = bytes.length === 32 ? bytes : Buffer.from(bytes.toString('utf8').trim(), 'base64');
  if (key.length !== 32)
    throw new StateKeyError(`${file}: not a 32-byte key (raw or base64)`, `restore the state key file, or point ${KEY_ENV} at it`);
  return key;
}

/**
 * Creates the key file exclusively (O_EXCL, 0600): if another run created it first, its key is used and never
 * replaced. Returns the key that is in the file afterwards.
 */
export function createStateKeyFile(file: string): Buffer {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  try {
    writeFileSync(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return parseKey(readSecretFile(file), file);
  }
}

function missingKey(root: string, where: { file: string; from: string }, sealed: string[]): StateKeyError {
  const ids = [...new Set(sealed.map(sealedKeyId).filter((id): id is string => id !== undefined))];
  const which = ids.length ? ` (sealed with key ${ids.join(', ')})` : '';
  const list = sealed.map((f) => path.relative(root, f)).join(', ');
  return new StateKeyError(
    `the state key is missing: expected at ${where.file} (${where.from}), but ${sealed.length} site secret file(s) in ${root} are sealed${which}: ${list}. ` +
      'A new key would make them unreadable, so none was created',
    `put the key back at ${where.file}, or set ${KEY_ENV} to the file holding it`,
  );
}

/** The key to seal or open with. `create`: make one when none exists and nothing is sealed yet. */
function loadKey(root: string, env: NodeJS.ProcessEnv, create: boolean): StateKey {
  const where = keyFileOf(root, env);
  if (existsSync(where.file)) {
    const key = parseKey(readSecretFile(where.file), where.file);
    return { key, id: stateKeyId(key), ...where };
  }
  const sealed = sealedSecretFiles(root);
  if (sealed.length) throw missingKey(root, where, sealed);
  if (env[KEY_ENV]) {
    throw new StateKeyError(
      `${KEY_ENV}=${where.file} does not exist`,
      `point ${KEY_ENV} at the state key file, or unset it to use ${keyPath(root)}`,
    );
  }
  if (!create)
    throw new StateKeyError(`the state key ${where.file} does not exist`, `put the key back, or set ${KEY_ENV} to the file holding it`);
  const key = createStateKeyFile(where.file);
  return { key, id: stateKeyId(key), ...where };
}

function readSealed(file: string): SealedFile {
  return JSON.parse(readFileSync(file, 'utf8')) as SealedFile;
}

function sealedKeyId(file: string): string | undefined {
  try {
    return readSealed(file).keyId;
  } catch {
    return undefined;
  }
}

export class SiteSecrets {
  constructor(
    private readonly root: string,
    private readonly site: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  private readAll(): Record<string, string> {
    const file = secretsPath(this.root, this.site);
    if (!existsSync(file)) return {};
    const sealed = readSealed(file);
    const k = loadKey(this.root, this.env, false);
    const fix = `set ${KEY_ENV} to the key file whose id is ${sealed.keyId ?? 'the one it was sealed with'}`;
    if (sealed.keyId && sealed.keyId !== k.id) {
      throw new StateKeyError(
        `the secrets of site ${this.site} (${file}) are sealed with key ${sealed.keyId}, but the state key at ${k.file} (${k.from}) is ${k.id}`,
        fix,
      );
    }
    const d = createDecipheriv('aes-256-gcm', k.key, Buffer.from(sealed.iv, 'base64'));
    d.setAuthTag(Buffer.from(sealed.tag, 'base64'));
    d.setAAD(Buffer.from(this.site));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(Buffer.from(sealed.data, 'base64')), d.final()]);
    } catch {
      throw new StateKeyError(
        `the secrets of site ${this.site} (${file}) do not open with the state key ${k.id} at ${k.file} (${k.from}): another key, or the file was altered or moved from another site`,
        fix,
      );
    }
    return JSON.parse(plain.toString('utf8')) as Record<string, string>;
  }

  has(name: string): boolean {
    return existsSync(secretsPath(this.root, this.site)) && name in this.readAll();
  }

  get(name: string): string | undefined {
    return this.readAll()[name];
  }

  put(name: string, value: string): void {
    const all = { ...this.readAll(), [name]: value };
    const k = loadKey(this.root, this.env, true);
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', k.key, iv);
    c.setAAD(Buffer.from(this.site));
    const data = Buffer.concat([c.update(JSON.stringify(all), 'utf8'), c.final()]);
    const sealed: SealedFile = {
      version: 2,
      alg: 'aes-256-gcm',
      keyId: k.id,
      iv: iv.toString('base64'),
      tag: c.getAuthTag().toString('base64'),
      data: data.toString('base64'),
    };
    writeAtomic(secretsPath(this.root, this.site), JSON.stringify(sealed) + '\n', 0o600);
  }
}
