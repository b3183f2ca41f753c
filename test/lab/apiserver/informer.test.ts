// The hub stand-in's informer (client-go reflector imitation) against the lab API server: lists, then follows a
// watch; a forbidden list keeps it unsynced and is retried until the right is granted.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Informer, type InformerEvent } from './controllers/informer.js';
import { KubeClient } from './kubeclient.js';
import { adminKubeconfig, createPki, type LabPki } from './pki.js';
import { createApiServer } from './server.js';
import type { ApiServer } from './types.js';

let dir: string;
let pki: LabPki;
let srv: ApiServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lab-informer-'));
  pki = createPki(join(dir, 'pki'), ['127.0.0.1', 'localhost']);
  srv = await createApiServer({ port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert } });
});

afterAll(async () => {
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, fn: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never happened: ${what}`);
}

describe('stand-in informer', () => {
  it('follows one object through a metadata.name field selector, as the MeshConfig informer does', async () => {
    srv.store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'one', namespace: 'default' }, data: { v: '1' } });
    const client = KubeClient.fromKubeconfig(adminKubeconfig(pki, srv.url), undefined, 300);
    const inf = new Informer(client, '/api/v1/namespaces/default/configmaps', '*v1.ConfigMap', () => {}, {
      fieldSelector: 'metadata.name=one',
    });
    void inf.run();
    try {
      await until('sync', () => inf.synced);
      expect([...inf.items.keys()]).toEqual(['default/one']);
      const live = srv.store.get('v1', 'ConfigMap', 'one', 'default')!;
      srv.store.update({ ...live, data: { v: '2' } });
      await until('the update', () => (inf.get('default/one')?.data as { v: string }).v === '2');
    } finally {
      inf.stop();
    }
  });

  it('lists, syncs, then delivers watch events (also after an idle stretch longer than the request timeout)', async () => {
    srv.store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'default' } });
    const client = KubeClient.fromKubeconfig(adminKubeconfig(pki, srv.url), undefined, 300);
    const inf = new Informer(client, '/api/v1/namespaces/default/configmaps', '*v1.ConfigMap', () => {});
    const seen: InformerEvent[] = [];
    void inf.run();
    try {
      await until('sync', () => inf.synced);
      inf.addEventHandler((ev) => ['a', 'b'].includes(ev.object.metadata.name as string) && seen.push(ev));
      expect(seen.map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'a']]);
      await new Promise((r) => setTimeout(r, 600)); // idle for twice the client's request timeout
      srv.store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b', namespace: 'default' } });
      srv.store.delete('v1', 'ConfigMap', 'a', 'default');
      await until('watch events', () => seen.length === 3);
      expect(seen.map((e) => [e.type, e.object.metadata.name])).toEqual([
        ['ADDED', 'a'],
        ['ADDED', 'b'],
        ['DELETED', 'a'],
      ]);
      expect(inf.lastError).toBeUndefined();
    } finally {
      inf.stop();
    }
  });
});
