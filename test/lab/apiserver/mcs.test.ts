// The hub's multi-cluster service path in process: a hub with the `cluster` controller and two member APIs that
// enforce RBAC and give the hub exactly fsm-edge's rights (src/install/render/registration.ts). What is checked is
// FSM v1.5.1's behaviour (pkg/mcs/remote/connector.go, pkg/mcs/ctrl/controlplane.go), including its quirks: the
// endpoint merge that empties a port this export has no rule for, "path": "" for a rule without a path, and the
// conflict check that compares every field of the Services' ports (targetPort too).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HUB_ACCESS_NAME, popAccessObjects } from '../../../src/install/render/registration.js';
import { REFERENCE_DIR } from '../reference.js';
import { clusterController } from './controllers/cluster.js';
import { createPki, type LabPki } from './pki.js';
import { createApiServer } from './server.js';
import type { ApiServer, KubeObject } from './types.js';

// a loaded machine (2 shared cores) makes the reconciles slow; `until` bounds every wait on its own
vi.setConfig({ testTimeout: 30_000, hookTimeout: 60_000 });

const crd = (f: string) => join(REFERENCE_DIR, 'fsm', 'v1.5.1', 'crds', f);
const MEMBER_CRDS = [
  'config.flomesh.io_meshconfigs.yaml',
  'config.flomesh.io_meshrootcertificates.yaml',
  'multicluster.flomesh.io_serviceexports.yaml',
  'multicluster.flomesh.io_serviceimports.yaml',
  'multicluster.flomesh.io_globaltrafficpolicies.yaml',
].map(crd);
const HUB_CRDS = ['config.flomesh.io_meshconfigs.yaml', 'multicluster.flomesh.io_clusters.yaml'].map(crd);
const MC = 'multicluster.flomesh.io/v1alpha1';
const NS = 'fsm-system';

let dir: string;
let pki: LabPki;
let hub: ApiServer;
const members: Record<'a' | 'b', { srv: ApiServer; key: string; host: string }> = {} as never;
const hubLog: string[] = [];

async function memberApi(): Promise<ApiServer> {
  const srv = await createApiServer({
    port: 0,
    tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert },
    crdFiles: MEMBER_CRDS,
    auth: { rbac: true },
  });
  const s = srv.store;
  s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  for (const o of popAccessObjects(NS)) s.create(o as unknown as KubeObject);
  s.create({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'fsm-controller', namespace: NS },
    spec: {
      selector: { matchLabels: { app: 'fsm-controller' } },
      template: { metadata: { labels: { app: 'fsm-controller' } }, spec: { containers: [{ name: 'c', image: 'i' }] } },
    },
  });
  s.create(
    s.skeleton('config.flomesh.io/v1alpha3', 'MeshConfig', {
      apiVersion: 'config.flomesh.io/v1alpha3',
      kind: 'MeshConfig',
      metadata: { name: 'fsm-mesh-config', namespace: NS },
      spec: { clusterSet: { isManaged: false, uid: 'member-uid' } },
    }) as KubeObject,
  );
  return srv;
}

function kubeconfigFor(srv: ApiServer): string {
  const token = srv.issueToken(NS, HUB_ACCESS_NAME, 86400);
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: pop',
    '  cluster:',
    `    server: ${srv.url}`,
    `    certificate-authority-data: ${Buffer.from(pki.caCert).toString('base64')}`,
    'users:',
    '- name: fsm-hub',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: pop',
    '  context: {cluster: pop, user: fsm-hub}',
    'current-context: pop',
    '',
  ].join('\n');
}

async function until<T>(what: string, fn: () => T | undefined, tries = 400): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never happened: ${what}; last lines of the hub's log:\n${hubLog.slice(-20).join('\n')}`);
}

/**
 * The hub's connector of `name` processes events and no rebuild is due: the last connector it built runs, is
 * processing, and was built for the Cluster's current resourceVersion (FSM rebuilds on every new one, its own
 * Managed write included, and an export accepted while a connector is rebuilt is lost).
 */
function processing(name: string, key: string): Promise<true> {
  return until(`connector ${key} processing`, () => {
    const rv = hub.store.get(MC, 'Cluster', name)?.metadata.resourceVersion;
    const lines = hubLog.filter((l) => l.includes(`[${key}] `));
    const building = lines.findLastIndex((l) => l.includes('Waiting for informer caches to sync'));
    const running = lines.findLastIndex((l) => l.includes('connector running;'));
    const line = lines[running] ?? '';
    return running > building && line.includes('is managed, processing events') && line.endsWith(`(Cluster resourceVersion ${rv})`)
      ? true
      : undefined;
  });
}

const get = (srv: ApiServer, kind: string, ns: string, name: string) =>
  srv.store.get(kind === 'Service' ? 'v1' : MC, kind, name, ns) as (KubeObject & { spec: Record<string, unknown> }) | undefined;

function service(srv: ApiServer, ns: string, name: string, ports: Array<Record<string, unknown>>): void {
  if (!srv.store.get('v1', 'Namespace', ns)) srv.store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  srv.store.create({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { selector: { app: name }, ports } });
}

function serviceExport(srv: ApiServer, ns: string, name: string, rules: Array<Record<string, unknown>>): void {
  srv.store.create({ apiVersion: MC, kind: 'ServiceExport', metadata: { name, namespace: ns }, spec: { rules } });
}

const endpoint = (m: 'a' | 'b', path: string) => ({
  clusterKey: members[m].key,
  target: { host: members[m].host, ip: members[m].host, port: 80, path },
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lab-mcs-'));
  pki = createPki(join(dir, 'pki'), ['127.0.0.1', 'localhost']);
  hub = await createApiServer({
    port: 0,
    tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert },
    crdFiles: HUB_CRDS,
    controllers: [clusterController({ resyncSeconds: 1, settleSeconds: 0 })],
    log: (l) => hubLog.push(l),
  });
  for (const [m, host, zone] of [
    ['a', '10.99.0.11', 'amd'],
    ['b', '10.99.0.12', 'arm'],
  ] as const) {
    const srv = await memberApi();
    members[m] = { srv, key: `lab/${zone}/retail/pop-${m}`, host };
    hub.store.create({
      apiVersion: MC,
      kind: 'Cluster',
      metadata: { name: `pop-${m}` },
      spec: { region: 'lab', zone, group: 'retail', gatewayHost: host, gatewayPort: 80, fsmNamespace: NS, kubeconfig: kubeconfigFor(srv) },
    });
  }
  await processing('pop-a', members.a.key);
  await processing('pop-b', members.b.key);
});

afterAll(async () => {
  await hub?.close();
  for (const m of Object.values(members)) await m.srv.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the hub: ServiceExport on one member → ServiceImport on the other (FSM v1.5.1)', () => {
  it('creates the namespace and the ServiceImport on the other member; "path" is "" for a rule without one', async () => {
    const { a, b } = members;
    service(a.srv, 'shop', 'web', [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    expect(b.srv.store.get('v1', 'Namespace', 'shop')).toBeUndefined();
    serviceExport(a.srv, 'shop', 'web', [{ portNumber: 8080, pathType: 'Prefix' }]);
    const imp = await until('ServiceImport shop/web on b', () => get(b.srv, 'ServiceImport', 'shop', 'web'));
    expect(imp.spec).toEqual({
      type: 'ClusterSetIP',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP', endpoints: [endpoint('a', '')] }],
    });
    expect(b.srv.store.get('v1', 'Namespace', 'shop')).toBeDefined();
    expect(get(a.srv, 'ServiceImport', 'shop', 'web')).toBeUndefined();
    // written by the hub's ServiceAccount through the member's API, not by an admin
    expect(imp.metadata.managedFields?.map((f) => f.manager)).toContain('fsm-controller');
  });

  it('merges into an existing import and empties the ports this export has no rule for (connector.go:256-275)', async () => {
    const { a, b } = members;
    const other = { clusterKey: 'lab/x/retail/pop-x', target: { host: '10.99.0.19', ip: '10.99.0.19', port: 80, path: '/x' } };
    b.srv.store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'merge' } });
    b.srv.store.create({
      apiVersion: MC,
      kind: 'ServiceImport',
      metadata: { name: 'api', namespace: 'merge' },
      spec: {
        type: 'ClusterSetIP',
        ports: [
          { name: 'http', port: 8080, protocol: 'TCP', endpoints: [other] },
          { name: 'admin', port: 9090, protocol: 'TCP', endpoints: [other] },
        ],
      },
    });
    service(a.srv, 'merge', 'api', [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'admin', port: 9090, protocol: 'TCP' },
    ]);
    serviceExport(a.srv, 'merge', 'api', [{ portNumber: 8080, path: '/api', pathType: 'Prefix' }]);
    const ports = await until('import merge/api updated on b', () => {
      const p = (get(b.srv, 'ServiceImport', 'merge', 'api')?.spec.ports ?? []) as Array<{ endpoints: unknown[] }>;
      return p[0]?.endpoints.length === 2 ? p : undefined;
    });
    expect(ports).toEqual([
      { name: 'http', port: 8080, protocol: 'TCP', endpoints: [other, endpoint('a', '/api')] },
      { name: 'admin', port: 9090, protocol: 'TCP', endpoints: [] },
    ]);
  });

  it("rejects an export whose Service ports differ from another member's (targetPort too): Conflict=True", async () => {
    const { a, b } = members;
    // b has its own Service before a exports one of that name: a's first export is accepted without a check
    service(b.srv, 'billing', 'ledger', [{ name: 'http', port: 7000, protocol: 'TCP', targetPort: 7000 }]);
    service(a.srv, 'billing', 'ledger', [{ name: 'http', port: 7000, protocol: 'TCP', targetPort: 'http' }]);
    serviceExport(a.srv, 'billing', 'ledger', [{ portNumber: 7000, path: '/ledger', pathType: 'Prefix' }]);
    await until('import billing/ledger on b', () => get(b.srv, 'ServiceImport', 'billing', 'ledger'));
    serviceExport(b.srv, 'billing', 'ledger', [{ portNumber: 7000, path: '/ledger', pathType: 'Prefix' }]);
    const cond = await until('Conflict on b billing/ledger', () =>
      (
        get(b.srv, 'ServiceExport', 'billing', 'ledger')?.status as { conditions?: Array<Record<string, unknown>> } | undefined
      )?.conditions?.find((c) => c.type === 'Conflict'),
    );
    expect(cond).toMatchObject({
      status: 'True',
      reason: 'Conflict',
      observedGeneration: 1,
      message: `ServiceExport billing/ledger conflicts, [${a.key}] spec.ports conflict, please check service spec`,
    });
    expect(get(a.srv, 'ServiceImport', 'billing', 'ledger')).toBeUndefined();
    // the exporting member's own ServiceExport of a is untouched (no condition written on acceptance)
    expect(get(a.srv, 'ServiceExport', 'billing', 'ledger')?.status ?? {}).toEqual({});
  });

  it('a deleted export drops its endpoints; the import goes when none is left', async () => {
    const { a, b } = members;
    a.srv.store.delete(MC, 'ServiceExport', 'web', 'shop');
    await until('import shop/web gone from b', () => (get(b.srv, 'ServiceImport', 'shop', 'web') ? undefined : true));
    a.srv.store.delete(MC, 'ServiceExport', 'api', 'merge');
    const ports = await until('import merge/api without a', () => {
      const imp = get(b.srv, 'ServiceImport', 'merge', 'api');
      const p = (imp?.spec.ports ?? []) as Array<{ endpoints: unknown[] }>;
      return p.length === 1 && p[0]!.endpoints.length === 1 ? p : undefined;
    });
    // only the ports of the export's rules are kept, each with the other clusters' endpoints
    expect(ports).toEqual([
      {
        name: 'http',
        port: 8080,
        protocol: 'TCP',
        endpoints: [{ clusterKey: 'lab/x/retail/pop-x', target: { host: '10.99.0.19', ip: '10.99.0.19', port: 80, path: '/x' } }],
      },
    ]);
  });

  it('ignores the delete of an export whose Service is already gone (getService fails first, types.go:281-285)', async () => {
    const { a, b } = members;
    service(a.srv, 'gone', 'svc', [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    serviceExport(a.srv, 'gone', 'svc', [{ portNumber: 8080, path: '/svc', pathType: 'Prefix' }]);
    await until('import gone/svc on b', () => get(b.srv, 'ServiceImport', 'gone', 'svc'));
    a.srv.store.delete('v1', 'Service', 'svc', 'gone');
    a.srv.store.delete(MC, 'ServiceExport', 'svc', 'gone');
    await until('the hub gave up on the delete', () =>
      hubLog.find((l) => l.includes(`[${a.key}] Ignore processing ServiceExport gone/svc due to get service failed`)),
    );
    expect(get(b.srv, 'ServiceImport', 'gone', 'svc')).toBeDefined();
  });
});
