import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createStateKeyFile, SiteSecrets, stateKeyId } from '../../src/state/secrets.js';
import { listSiteRecords, readSiteRecord, writeSiteRecord, type SiteRecord } from '../../src/state/site-record.js';
import { keyPath, secretsPath, stateDir } from '../../src/state/paths.js';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fsm-edge-state-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('controller secrets', () => {
  it('round-trips a secret without ever writing it in clear, files 0600', () => {
    const root = tmp();
    const s = new SiteSecrets(root, 'pop1', {});
    s.put('k3s-token', 'c0ffee-secret-token-value');
    expect(new SiteSecrets(root, 'pop1', {}).get('k3s-token')).toBe('c0ffee-secret-token-value');
    const sealed = fs.readFileSync(secretsPath(root, 'pop1'), 'utf8');
    expect(sealed).not.toContain('c0ffee');
    expect(fs.statSync(secretsPath(root, 'pop1')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(keyPath(root)).mode & 0o777).toBe(0o600);
  });

  it('refuses a file moved to another site (the site name is authenticated) and a wrong key', () => {
    const root = tmp();
    new SiteSecrets(root, 'pop1', {}).put('k3s-token', 'v');
    fs.mkdirSync(path.dirname(secretsPath(root, 'pop2')), { recursive: true });
    fs.copyFileSync(secretsPath(root, 'pop1'), secretsPath(root, 'pop2'));
    expect(() => new SiteSecrets(root, 'pop2', {}).get('k3s-token')).toThrow();
    const otherKey = path.join(tmp(), 'k');
    fs.writeFileSync(otherKey, Buffer.alloc(32, 7));
    expect(() => new SiteSecrets(root, 'pop1', { FSM_EDGE_STATE_KEY_FILE: otherKey }).get('k3s-token')).toThrow();
  });

  it('uses a key kept elsewhere when FSM_EDGE_STATE_KEY_FILE is set, and never creates one there', () => {
    const root = tmp();
    const keyFile = path.join(tmp(), 'state.key');
    expect(() => new SiteSecrets(root, 'pop1', { FSM_EDGE_STATE_KEY_FILE: keyFile }).put('a', 'b')).toThrow(/does not exist/);
    fs.writeFileSync(keyFile, Buffer.alloc(32, 1).toString('base64'));
    new SiteSecrets(root, 'pop1', { FSM_EDGE_STATE_KEY_FILE: keyFile }).put('a', 'b');
    expect(fs.existsSync(keyPath(root))).toBe(false);
    expect(new SiteSecrets(root, 'pop1', { FSM_EDGE_STATE_KEY_FILE: keyFile }).get('a')).toBe('b');
  });
});

describe('the escrow key is never silently replaced', () => {
  it('refuses to create a new state.key while sealed secrets exist, naming the key, where it was expected and the variable', () => {
    const root = tmp();
    new SiteSecrets(root, 'pop1', {}).put('k3s-token', 'tok-1');
    const original = fs.readFileSync(keyPath(root));
    fs.rmSync(keyPath(root)); // lost (a restore of the records without the key, a cleanup, another machine)
    const id = stateKeyId(Buffer.from(original.toString('utf8').trim(), 'base64'));
    for (const act of [
      () => new SiteSecrets(root, 'pop2', {}).put('k3s-token', 'tok-2'),
      () => new SiteSecrets(root, 'pop1', {}).get('k3s-token'),
    ]) {
      expect(act).toThrow(expect.objectContaining({ kind: 'config', code: 'state-key' }));
      try {
        act();
      } catch (e) {
        const text = `${(e as Error).message}\n${(e as { fix?: string }).fix}`;
        expect(text).toContain(`expected at ${keyPath(root)}`);
        expect(text).toContain(id);
        expect(text).toContain(path.join('sites', 'pop1', 'secrets.enc'));
        expect(text).toContain('FSM_EDGE_STATE_KEY_FILE');
      }
    }
    expect(fs.existsSync(keyPath(root))).toBe(false);
    expect(fs.existsSync(secretsPath(root, 'pop2'))).toBe(false);
    // With the key back, nothing was lost.
    fs.writeFileSync(keyPath(root), original, { mode: 0o600 });
    expect(new SiteSecrets(root, 'pop1', {}).get('k3s-token')).toBe('tok-1');
  });

  it('stores the key id with each sealed file and names both keys on a mismatch', () => {
    const root = tmp();
    new SiteSecrets(root, 'pop1', {}).put('k3s-token', 'v');
    const key = Buffer.from(fs.readFileSync(keyPath(root), 'utf8').trim(), 'base64');
    const sealed = JSON.parse(fs.readFileSync(secretsPath(root, 'pop1'), 'utf8')) as { keyId: string; version: number };
    expect(sealed).toMatchObject({ version: 2, keyId: stateKeyId(key) });
    const otherKey = path.join(tmp(), 'k');
    fs.writeFileSync(otherKey, Buffer.alloc(32, 7));
    const read = () => new SiteSecrets(root, 'pop1', { FSM_EDGE_STATE_KEY_FILE: otherKey }).get('k3s-token');
    expect(read).toThrow(
      `sealed with key ${stateKeyId(key)}, but the state key at ${otherKey} (named by FSM_EDGE_STATE_KEY_FILE) is ${stateKeyId(Buffer.alloc(32, 7))}`,
    );
    expect(() => new SiteSecrets(root, 'pop1', { FSM_EDGE_STATE_KEY_FILE: otherKey }).put('more', 'x')).toThrow(/sealed with key/);
  });

  it('creates the key exclusively: a key another run wrote first is used, never overwritten', () => {
    const file = path.join(tmp(), 'nested', 'state.key');
    const first = createStateKeyFile(file);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const before = fs.readFileSync(file);
    expect(createStateKeyFile(file).equals(first)).toBe(true);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });
});

describe('site records', () => {
  it('writes, reads and lists records, keeping a bounded history', () => {
    const root = tmp();
    const rec: SiteRecord = {
      version: 1,
      site: 'pop1',
      updatedAt: 'now',
      host: { address: '10.0.0.1', port: 22, user: 'pop', hostKeys: [] },
      versions: { k3s: 'v1.37.1+k3s1' },
      modes: { datastore: 'sqlite', profile: 'edge-small', ingress: true, multicluster: true },
      registration: { state: 'pending', reason: 'hub down' },
      escrowed: [],
      history: Array.from({ length: 30 }, (_, i) => ({ id: String(i), operation: 'install', ok: true, startedAt: 't', durationMs: 1 })),
    };
    writeSiteRecord(root, rec);
    const back = readSiteRecord(root, 'pop1')!;
    expect(back.registration).toEqual({ state: 'pending', reason: 'hub down' });
    expect(back.history).toHaveLength(20);
    expect(back.history[0]!.id).toBe('10');
    expect(listSiteRecords(root).map((r) => r.site)).toEqual(['pop1']);
    expect(readSiteRecord(root, 'nope')).toBeUndefined();
  });

  it('puts state under FSM_EDGE_STATE_DIR, else XDG_STATE_HOME', () => {
    expect(stateDir(undefined, { FSM_EDGE_STATE_DIR: '/x' })).toBe('/x');
    expect(stateDir(undefined, { XDG_STATE_HOME: '/y' })).toBe('/y/fsm-edge');
  });
});
