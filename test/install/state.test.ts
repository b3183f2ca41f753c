import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SiteSecrets } from '../../src/state/secrets.js';
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
