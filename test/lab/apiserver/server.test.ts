// The lab API server over HTTPS, driven by the real @kubernetes/client-node 1.4 (what the installer uses):
// discovery for KubernetesObjectApi, CRUD/patch/apply status codes, auth (client cert, SA tokens, 401),
// RBAC, the token controller, namespace termination, persistence across a restart.
import * as k8s from '@kubernetes/client-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiFailure } from './client-errors.js';
import { adminKubeconfig, createPki, type LabPki } from './pki.js';
import { createApiServer } from './server.js';
import type { ApiServer } from './types.js';
import { REFERENCE_DIR } from '../reference.js';

const REF = REFERENCE_DIR;
const CRD_FILES = [
  join(REF, 'fsm/v1.5.1/crds/multicluster.flomesh.io_clusters.yaml'),
  join(REF, 'fsm/v1.5.1/crds/config.flomesh.io_meshconfigs.yaml'),
  join(REF, 'k3s/helm-controller-v0.17.7/helm.cattle.io_helmcharts.yaml'),
];
const MC = 'multicluster.flomesh.io/v1alpha1';

let dir: string;
let pki: LabPki;
let srv: ApiServer;
let kc: k8s.KubeConfig;
let core: k8s.CoreV1Api;
let objects: k8s.KubernetesObjectApi;

function tokenConfig(token: string): k8s.KubeConfig {
  const c = new k8s.KubeConfig();
  c.loadFromOptions({
    clusters: [{ name: 'c', server: srv.url, caData: Buffer.from(pki.caCert).toString('base64') }],
    users: [{ name: 'u', token }],
    contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
    currentContext: 'c',
  });
  return c;
}

async function until<T>(fn: () => Promise<T | undefined> | T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lab-apiserver-'));
  pki = createPki(join(dir, 'pki'), ['127.0.0.1', 'localhost']);
  srv = await createApiServer({
    port: 0,
    tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert },
    crdFiles: CRD_FILES,
    dataFile: join(dir, 'data.json'),
  });
  kc = new k8s.KubeConfig();
  kc.loadFromString(adminKubeconfig(pki, srv.url));
  core = kc.makeApiClient(k8s.CoreV1Api);
  objects = k8s.KubernetesObjectApi.makeApiClient(kc);
});

afterAll(async () => {
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('lab API server with @kubernetes/client-node', () => {
  it('serves version and discovery; KubernetesObjectApi resolves built-in and custom kinds', async () => {
    const v = await kc.makeApiClient(k8s.VersionApi).getCode();
    expect(v.gitVersion).toMatch(/^v1\.\d+\.\d+\+k3s1$/);
    const groups = await kc.makeApiClient(k8s.ApisApi).getAPIVersions();
    expect(groups.groups.map((g) => g.name)).toEqual(
      expect.arrayContaining(['apps', 'multicluster.flomesh.io', 'config.flomesh.io', 'helm.cattle.io', 'rbac.authorization.k8s.io']),
    );
    const mcGroup = groups.groups.find((g) => g.name === 'config.flomesh.io');
    expect(mcGroup?.preferredVersion?.version).toBe('v1alpha3');
    const cm = await objects.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'disc', namespace: 'default' },
      data: { a: '1' },
    } as k8s.KubernetesObject);
    expect(cm.metadata?.uid).toBeTruthy();
    const read = await objects.read({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'disc', namespace: 'default' } });
    expect((read as k8s.V1ConfigMap).data).toEqual({ a: '1' });
    const list = await objects.list('apps/v1', 'Deployment', 'default');
    expect(list.items).toEqual([]);
  });

  it('seeds the system namespaces, the default ServiceAccount and kube-root-ca.crt', async () => {
    const ns = await core.listNamespace();
    expect(ns.items.map((n) => n.metadata?.name)).toEqual(
      expect.arrayContaining(['default', 'kube-system', 'kube-public', 'kube-node-lease']),
    );
    await core.createNamespace({ body: { metadata: { name: 'fresh' } } });
    const sa = await until(async () => (await core.listNamespacedServiceAccount({ namespace: 'fresh' })).items[0], 'default SA');
    expect(sa.metadata?.name).toBe('default');
    const ca = await until(
      async () => (await core.listNamespacedConfigMap({ namespace: 'fresh' })).items.find((c) => c.metadata?.name === 'kube-root-ca.crt'),
      'root CA configmap',
    );
    expect(ca.data?.['ca.crt']).toBe(pki.caCert);
  });

  it('answers with real Status errors: 404, 409 AlreadyExists, 409 Conflict, 422 with causes', async () => {
    const nf = await apiFailure(core.readNamespacedSecret({ name: 'missing', namespace: 'default' }));
    expect([nf.code, nf.body.reason, nf.body.message]).toEqual([404, 'NotFound', 'secrets "missing" not found']);
    await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'dup' }, stringData: { a: 'b' } } });
    const dup = await apiFailure(core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'dup' } } }));
    expect([dup.code, dup.body.reason]).toEqual([409, 'AlreadyExists']);
    const cur = await core.readNamespacedSecret({ name: 'dup', namespace: 'default' });
    await core.replaceNamespacedSecret({ name: 'dup', namespace: 'default', body: { ...cur, stringData: { a: 'c' } } });
    const stale = await apiFailure(
      core.replaceNamespacedSecret({ name: 'dup', namespace: 'default', body: { ...cur, stringData: { a: 'd' } } }),
    );
    expect([stale.code, stale.body.reason]).toEqual([409, 'Conflict']);
    const bad = await apiFailure(
      objects.create({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'bad' }, spec: { gatewayPort: 0 } } as k8s.KubernetesObject),
    );
    expect(bad.code).toBe(422);
    expect(bad.body.details?.causes?.map((c) => c.field)).toEqual(['spec.fsmNamespace', 'spec.gatewayPort']);
  });

  it('patches custom resources with merge and json patch, refuses strategic merge (415), and applies server-side', async () => {
    const spec = {
      apiVersion: MC,
      kind: 'Cluster',
      metadata: { name: 'pop-a' },
      spec: { fsmNamespace: 'fsm-system', gatewayHost: '10.99.0.11', region: 'eu' },
    };
    const applied = await objects.patch(
      spec as k8s.KubernetesObject,
      undefined,
      undefined,
      'fsm-edge',
      true,
      k8s.PatchStrategy.ServerSideApply,
    );
    expect((applied as { spec: { zone: string } }).spec.zone).toBe('default');
    const reapplied = await objects.patch(
      spec as k8s.KubernetesObject,
      undefined,
      undefined,
      'fsm-edge',
      true,
      k8s.PatchStrategy.ServerSideApply,
    );
    expect(reapplied.metadata?.resourceVersion).toBe(applied.metadata?.resourceVersion);
    const merged = await objects.patch(
      { apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop-a' }, spec: { zone: 'berlin' } } as k8s.KubernetesObject,
      undefined,
      undefined,
      'test',
      undefined,
      k8s.PatchStrategy.MergePatch,
    );
    expect((merged as { spec: { zone: string } }).spec.zone).toBe('berlin');
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const jp = (await custom.patchClusterCustomObject({
      group: 'multicluster.flomesh.io',
      version: 'v1alpha1',
      plural: 'clusters',
      name: 'pop-a',
      body: [{ op: 'replace', path: '/spec/group', value: 'retail' }],
    })) as { spec: { group: string } };
    expect(jp.spec.group).toBe('retail');
    const smp = await apiFailure(
      objects.patch({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop-a' }, spec: { zone: 'x' } } as k8s.KubernetesObject),
    );
    expect(smp.code).toBe(415);
    const status = await custom.patchClusterCustomObjectStatus(
      {
        group: 'multicluster.flomesh.io',
        version: 'v1alpha1',
        plural: 'clusters',
        name: 'pop-a',
        body: {
          status: {
            conditions: [{ type: 'Managed', status: 'True', reason: 'Success', message: 'm', lastTransitionTime: '2026-11-25T00:00:00Z' }],
          },
        },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    expect((status as { status: { conditions: unknown[] } }).status.conditions).toHaveLength(1);
    // replace keeps the status (subresource), a stale replace is a conflict, delete removes it
    const cur = await objects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop-a' } });
    const replaced = await objects.replace({ ...cur, spec: { fsmNamespace: 'fsm', gatewayHost: 'h' } } as k8s.KubernetesObject);
    expect((replaced as { status: { conditions: unknown[] } }).status.conditions).toHaveLength(1);
    expect((await apiFailure(objects.replace({ ...cur, spec: { fsmNamespace: 'x' } } as k8s.KubernetesObject))).code).toBe(409);
    await objects.delete({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop-a' } });
    expect((await apiFailure(objects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop-a' } }))).code).toBe(404);
  });

  it('strategic-merge patches a Deployment like kubectl (containers merged by name)', async () => {
    const apps = kc.makeApiClient(k8s.AppsV1Api);
    await apps.createNamespacedDeployment({
      namespace: 'default',
      body: {
        metadata: { name: 'web' },
        spec: {
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              containers: [
                { name: 'a', image: 'a:1' },
                { name: 'b', image: 'b:1' },
              ],
            },
          },
        },
      },
    });
    const out = await apps.patchNamespacedDeployment(
      { name: 'web', namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'b', image: 'b:2' }] } } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    );
    expect(out.spec?.template.spec?.containers.map((c) => c.image)).toEqual(['a:1', 'b:2']);
    expect(out.status).toEqual({});
  });

  it('fills legacy ServiceAccount token secrets; tokens authenticate, unknown tokens get 401, RBAC applies', async () => {
    await core.createNamespace({ body: { metadata: { name: 'hubaccess' } } });
    await core.createNamespacedServiceAccount({ namespace: 'hubaccess', body: { metadata: { name: 'fsm-hub' } } });
    await core.createNamespacedSecret({
      namespace: 'hubaccess',
      body: {
        metadata: { name: 'fsm-hub-token', annotations: { 'kubernetes.io/service-account.name': 'fsm-hub' } },
        type: 'kubernetes.io/service-account-token',
      },
    });
    const sec = await until(async () => {
      const s = await core.readNamespacedSecret({ name: 'fsm-hub-token', namespace: 'hubaccess' });
      return s.data?.token ? s : undefined;
    }, 'token controller');
    expect(Buffer.from(sec.data?.['ca.crt'] as string, 'base64').toString()).toBe(pki.caCert);
    expect(Buffer.from(sec.data?.namespace as string, 'base64').toString()).toBe('hubaccess');
    const token = Buffer.from(sec.data?.token as string, 'base64').toString();
    const asSa = tokenConfig(token).makeApiClient(k8s.AppsV1Api);
    const denied = await apiFailure(asSa.listNamespacedDeployment({ namespace: 'hubaccess' }));
    expect(denied.code).toBe(403);
    expect(denied.body.message).toBe(
      'deployments.apps is forbidden: User "system:serviceaccount:hubaccess:fsm-hub" cannot list resource "deployments" in API group "apps" in the namespace "hubaccess"',
    );
    const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: 'hubaccess',
      body: { metadata: { name: 'read-deploy' }, rules: [{ apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list'] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: 'hubaccess',
      body: {
        metadata: { name: 'hub' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-deploy' },
        subjects: [{ kind: 'ServiceAccount', name: 'fsm-hub', namespace: 'hubaccess' }],
      },
    });
    expect((await asSa.listNamespacedDeployment({ namespace: 'hubaccess' })).items).toEqual([]);
    expect((await apiFailure(asSa.listNamespacedDeployment({ namespace: 'default' }))).code).toBe(403);
    // bootstrap roles exist like on k3s: binding `view` in a namespace grants reads there, not writes
    await rbac.createNamespacedRoleBinding({
      namespace: 'hubaccess',
      body: {
        metadata: { name: 'hub-view' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
        subjects: [{ kind: 'ServiceAccount', name: 'fsm-hub', namespace: 'hubaccess' }],
      },
    });
    const saCore = tokenConfig(token).makeApiClient(k8s.CoreV1Api);
    expect((await saCore.listNamespacedConfigMap({ namespace: 'hubaccess' })).items.map((c) => c.metadata?.name)).toContain(
      'kube-root-ca.crt',
    );
    expect(
      (await apiFailure(saCore.createNamespacedConfigMap({ namespace: 'hubaccess', body: { metadata: { name: 'nope' } } }))).code,
    ).toBe(403);
    expect((await apiFailure(saCore.listNamespacedSecret({ namespace: 'hubaccess' }))).code).toBe(403);
    // TokenRequest
    const tr = await core.createNamespacedServiceAccountToken({
      name: 'fsm-hub',
      namespace: 'hubaccess',
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    expect(
      (
        await tokenConfig(tr.status?.token as string)
          .makeApiClient(k8s.AppsV1Api)
          .listNamespacedDeployment({ namespace: 'hubaccess' })
      ).items,
    ).toEqual([]);
    const unknown = await apiFailure(tokenConfig('not-a-token').makeApiClient(k8s.CoreV1Api).listNamespace());
    expect(unknown.code).toBe(401);
    // deleting the ServiceAccount invalidates its tokens
    await core.deleteNamespacedServiceAccount({ name: 'fsm-hub', namespace: 'hubaccess' });
    expect(
      (
        await apiFailure(
          tokenConfig(tr.status?.token as string)
            .makeApiClient(k8s.AppsV1Api)
            .listNamespacedDeployment({ namespace: 'hubaccess' }),
        )
      ).code,
    ).toBe(401);
  });

  it('terminates a namespace with its contents', async () => {
    await core.createNamespace({ body: { metadata: { name: 'gone' } } });
    await core.createNamespacedConfigMap({ namespace: 'gone', body: { metadata: { name: 'x' } } });
    const del = await core.deleteNamespace({ name: 'gone' });
    expect((del as unknown as k8s.V1Namespace).status?.phase).toBe('Terminating'); // typed as V1Status, real servers return the Namespace
    await until(
      async () => ((await apiFailure(core.readNamespace({ name: 'gone' }))).code === 404 ? true : undefined),
      'namespace removal',
    );
    expect((await apiFailure(core.readNamespacedConfigMap({ name: 'x', namespace: 'gone' }))).code).toBe(404);
  });

  it('watches from a list resourceVersion without missing what happened in between (client-node Watch)', async () => {
    const list = await core.listNamespacedConfigMap({ namespace: 'default', labelSelector: 'watched=yes' });
    const rv = list.metadata?.resourceVersion as string;
    // changed after the list, before the watch starts: must be replayed
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'w1', labels: { watched: 'yes' } } } });
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'other', labels: { watched: 'no' } } } });
    const events: string[] = [];
    const watch = new k8s.Watch(kc);
    const req = await watch.watch(
      '/api/v1/namespaces/default/configmaps',
      { resourceVersion: rv, labelSelector: 'watched=yes' },
      (type: string, obj: k8s.V1ConfigMap) => events.push(`${type} ${obj.metadata?.name}`),
      () => {},
    );
    await core.patchNamespacedConfigMap(
      { name: 'w1', namespace: 'default', body: { data: { a: '1' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await core.deleteNamespacedConfigMap({ name: 'w1', namespace: 'default' });
    await until(() => (events.length >= 3 ? true : undefined), 'watch events');
    req.abort();
    expect(events).toEqual(['ADDED w1', 'MODIFIED w1', 'DELETED w1']);
  });

  it('keeps its objects across a restart with the same data file', async () => {
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'persist' }, data: { k: 'v' } } });
    const before = await core.readNamespacedConfigMap({ name: 'persist', namespace: 'default' });
    await srv.close();
    srv = await createApiServer({
      port: 0,
      tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert },
      crdFiles: CRD_FILES,
      dataFile: join(dir, 'data.json'),
    });
    kc = new k8s.KubeConfig();
    kc.loadFromString(adminKubeconfig(pki, srv.url));
    core = kc.makeApiClient(k8s.CoreV1Api);
    const after = await core.readNamespacedConfigMap({ name: 'persist', namespace: 'default' });
    expect(after.metadata?.uid).toBe(before.metadata?.uid);
    expect(after.data).toEqual({ k: 'v' });
    const next = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'after-restart' } } });
    expect(Number(next.metadata?.resourceVersion)).toBeGreaterThan(Number(before.metadata?.resourceVersion));
  });
});
