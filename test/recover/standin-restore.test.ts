// The k3s stand-in's restore behaviours, in process on temporary data dirs: the bootstrap data lives in the
// datastore, a restored datastore brings its CA back, and another token — for a restored db or an etcd snapshot of
// another cluster — fails with k3s's own message (storage.go getBootstrapKeyFromStorage).

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { currentDatastoreFile, datastoreFile, readBootstrap, sqliteFile, tokenHashOf } from '../lab/standins/k3s/datastore.js';
import { clusterResetRestore } from '../lab/standins/k3s/etcd-snapshot.js';
import { parseServerFlags, ServerFlags } from '../lab/standins/k3s/flags.js';
import { ensurePki } from '../lab/standins/k3s/pki.js';
import { ensureServerToken } from '../lab/standins/k3s/secrets.js';
import { tmp } from './fixture.js';

const dir = (name: string) => fs.mkdtempSync(path.join(tmp, `${name}-`));
const DIFFERENT = 'starting kubernetes: preparing server: bootstrap data already found and encrypted with different token';

/** A k3s start up to the token check, as server.ts orders it. */
function start(dataDir: string, token: string, clusterInit = false) {
  datastoreFile(dataDir, clusterInit, () => {});
  const pki = ensurePki(dataDir, 'pop', []);
  ensureServerToken(dataDir, pki.caCert, token, '');
  return pki;
}

afterEach(() => vi.restoreAllMocks());

describe('k3s stand-in: restore as strict as k3s', () => {
  it('keeps the bootstrap record in the datastore and refuses another token with k3s’s message', () => {
    const d = dir('a');
    start(d, 'first-token-0001');
    expect(readBootstrap(sqliteFile(d))?.tokenHash).toBe(tokenHashOf('first-token-0001'));
    expect(() => start(d, 'second-token-002')).toThrow(DIFFERENT);
    // The secure form of the same token is the same token.
    const ca = fs.readFileSync(path.join(d, 'server/tls/server-ca.crt'), 'utf8');
    const hash = (s: string) => createHash('sha256').update(s).digest('hex');
    expect(() => ensureServerToken(d, ca, `K10${hash(ca)}::server:first-token-0001`, '')).not.toThrow();
  });

  it('a restored state.db on a wiped node brings its CA back, and only with the token it was written with', () => {
    const a = dir('orig');
    const pkiA = start(a, 'the-token-00001');
    const b = dir('wiped');
    fs.mkdirSync(path.join(b, 'server/db'), { recursive: true });
    fs.copyFileSync(sqliteFile(a), sqliteFile(b));
    const pkiB = start(b, 'the-token-00001');
    expect(pkiB.caCert).toBe(pkiA.caCert);
    expect(pkiB.servingKey).toBe(pkiA.servingKey);
    const c = dir('other-token');
    fs.mkdirSync(path.join(c, 'server/db'), { recursive: true });
    fs.copyFileSync(sqliteFile(a), sqliteFile(c));
    expect(() => start(c, 'a-new-token-0002')).toThrow(DIFFERENT);
  });

  it('--cluster-reset-restore-path refuses a snapshot of another cluster (another token) and restores its own', async () => {
    const src = dir('etcd-src');
    start(src, 'cluster-one-token', true);
    const snap = path.join(src, 'snap');
    fs.writeFileSync(
      snap,
      JSON.stringify({
        standin: 'k3s etcd snapshot (fsm-edge lab)',
        nodeName: 'pop',
        createdAt: '',
        tokenHash: '',
        state: JSON.parse(fs.readFileSync(currentDatastoreFile(src), 'utf8')),
      }),
    );
    const target = dir('etcd-target');
    const cfg = path.join(target, 'config.yaml');
    fs.writeFileSync(cfg, '{}\n');
    const flags = (token: string) =>
      new ServerFlags(
        parseServerFlags(
          [
            `--config=${cfg}`,
            `--data-dir=${target}`,
            `--token=${token}`,
            '--cluster-init',
            '--cluster-reset',
            `--cluster-reset-restore-path=${snap}`,
            '--https-listen-port=1',
          ],
          {},
        ),
      );
    const exit = vi.spyOn(process, 'exit').mockImplementation(((code: number) => {
      throw new Error(`exit ${code}`);
    }) as never);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await expect(clusterResetRestore(flags('cluster-two-token'))).rejects.toThrow('exit 1');
    expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain(DIFFERENT);
    expect(fs.existsSync(path.join(target, 'server/db/etcd/member/standin-state.json'))).toBe(false);
    await clusterResetRestore(flags('cluster-one-token'));
    expect(exit).toHaveBeenCalledTimes(1);
    expect(readBootstrap(currentDatastoreFile(target))?.tokenHash).toBe(tokenHashOf('cluster-one-token'));
    expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain('restart without --cluster-reset flag now');
  });
});
