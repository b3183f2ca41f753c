// Secrets the controller must keep for a site (the k3s token, escrowed for recovery: a datastore restore is
// useless without it). Encrypted with AES-256-GCM under a key that is not stored beside them when the operator
// says so: `FSM_EDGE_STATE_KEY_FILE` points at the 32-byte key (e.g. on a separate volume or from a vault);
// otherwise a key file is created in the state directory (0600) — protection against a copied records
// folder, not against root on this machine.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { keyPath, secretsPath } from './paths.js';
import { writeAtomic } from './write-atomic.js';

interface SealedFile {
  version: 1;
  alg: 'aes-256-gcm';
  iv: string;
  tag: string;
  data: string;
}

function loadKey(root: string, env: NodeJS.ProcessEnv): Buffer {
  const file = env.FSM_EDGE_STATE_KEY_FILE || keyPath(root);
  if (existsSync(file)) {
    const k = readFileSync(file);
    const key = k.length === 32 ? k : Buffer.from(k.toString('utf8').trim(), 'base64');
    if (key.length !== 32) throw new Error(`${file}: not a 32-byte key (raw or base64)`);
    return key;
  }
  if (env.FSM_EDGE_STATE_KEY_FILE) throw new Error(`FSM_EDGE_STATE_KEY_FILE=${file} does not exist`);
  const key = randomBytes(32);
  writeAtomic(file, key.toString('base64') + '\n', 0o600);
  return key;
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
    const sealed = JSON.parse(readFileSync(file, 'utf8')) as SealedFile;
    const d = createDecipheriv('aes-256-gcm', loadKey(this.root, this.env), Buffer.from(sealed.iv, 'base64'));
    d.setAuthTag(Buffer.from(sealed.tag, 'base64'));
    d.setAAD(Buffer.from(this.site));
    const plain = Buffer.concat([d.update(Buffer.from(sealed.data, 'base64')), d.final()]);
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
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', loadKey(this.root, this.env), iv);
    c.setAAD(Buffer.from(this.site));
    const data = Buffer.concat([c.update(JSON.stringify(all), 'utf8'), c.final()]);
    const sealed: SealedFile = { version: 1, alg: 'aes-256-gcm', iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') };
    writeAtomic(secretsPath(this.root, this.site), JSON.stringify(sealed) + '\n', 0o600);
  }
}
