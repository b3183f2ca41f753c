// The server token (server/token in k3s's secure format K10<sha256 of the CA bundle>::server:<password>) and the
// node password (/etc/rancher/node/password), with the checks k3s makes on them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { currentDatastoreFile, readBootstrap, saveBootstrap, tokenHashOf } from './datastore.js';

export class TokenError extends Error {}

const hashOf = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

/**
 * Resolves the token from `token-file`/`token` (either a bare password or the full K10 form) or reuses/generates
 * one, verifies it against what the datastore was created with, and writes server/token (+ node-token,
 * agent-token links). Returns the password part.
 */
export function ensureServerToken(dataDir: string, caPem: string, flagToken: string, tokenFile: string): string {
  let given = flagToken;
  if (tokenFile) {
    try {
      given = fs.readFileSync(tokenFile, 'utf8').trim();
    } catch (e) {
      throw new TokenError(
        `failed to normalize server token; must be in format K10<CA-HASH>::<USERNAME>:<PASSWORD> or <PASSWORD>: ${(e as Error).message}`,
      );
    }
    if (!given) throw new TokenError(`token file ${tokenFile} is empty`);
  }
  const caHash = hashOf(caPem);
  const server = path.join(dataDir, 'server');
  const tokenPath = path.join(server, 'token');
  let password = '';
  if (given) {
    const m = /^K10([0-9a-f]{64})::([^:]+):(.+)$/.exec(given);
    if (m) {
      if (m[1] !== caHash) throw new TokenError('token CA hash does not match the Cluster CA certificate hash');
      password = m[3]!;
    } else if (given.startsWith('K10'))
      throw new TokenError('failed to normalize server token; must be in format K10<CA-HASH>::<USERNAME>:<PASSWORD> or <PASSWORD>');
    else password = given;
  } else if (fs.existsSync(tokenPath)) {
    password = fs
      .readFileSync(tokenPath, 'utf8')
      .trim()
      .replace(/^.*::server:/, '');
  } else password = crypto.randomBytes(16).toString('hex');

  // The datastore's bootstrap data is keyed and encrypted by the token the cluster was created with (k3s
  // pkg/cluster/storage.go getBootstrapKeyFromStorage): a restored datastore with another token is refused.
  const store = currentDatastoreFile(dataDir);
  const boot = readBootstrap(store);
  if (boot) {
    if (boot.tokenHash !== tokenHashOf(password)) {
      throw new TokenError('starting kubernetes: preparing server: bootstrap data already found and encrypted with different token');
    }
  } else saveBootstrap(store, tokenHashOf(password), dataDir);

  fs.writeFileSync(tokenPath, `K10${caHash}::server:${password}\n`, { mode: 0o600 });
  fs.chmodSync(tokenPath, 0o600);
  for (const link of ['node-token', 'agent-token']) {
    const p = path.join(server, link);
    fs.rmSync(p, { force: true });
    fs.symlinkSync(tokenPath, p);
  }
  return password;
}

export const tokenHash = (password: string) => hashOf(password);

/** /etc/rancher/node/password: created once, 0600; its hash is what the server keeps per node. */
export function ensureNodePassword(): string {
  const file = '/etc/rancher/node/password';
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, crypto.randomBytes(16).toString('hex') + '\n', { mode: 0o600 });
  }
  return hashOf(fs.readFileSync(file, 'utf8').trim());
}
