// Unit tests of the lab API server's store: validation against the real CRD schemas, resourceVersion
// conflicts, patch formats, server-side apply ownership, status subresource, selectors.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { beforeEach, describe, expect, it } from 'vitest';
import { ApiError } from './errors.js';
import { ObjectStore } from './store.js';
import type { KubeObject } from './types.js';
import { REFERENCE_DIR } from '../reference.js';

const REF = REFERENCE_DIR;
const CRDS = [
  join(REF, 'fsm/v1.5.1/crds/multicluster.flomesh.io_clusters.yaml'),
  join(REF, 'fsm/v1.5.1/crds/config.flomesh.io_meshconfigs.yaml'),
  join(REF, 'fsm/v1.5.1/crds/multicluster.flomesh.io_serviceexports.yaml'),
  join(REF, 'fsm/v1.5.1/crds/multicluster.flomesh.io_globaltrafficpolicies.yaml'),
  join(REF, 'fsm/v1.5.1/crds/multicluster.flomesh.io_serviceimports.yaml'),
  join(REF, 'k3s/helm-controller-v0.17.7/helm.cattle.io_helmcharts.yaml'),
];
const MC = 'multicluster.flomesh.io/v1alpha1';

function newStore(): ObjectStore {
  const s = new ObjectStore();
  for (const f of CRDS) for (const d of parseAllDocuments(readFileSync(f, 'utf8'))) s.create(d.toJS() as KubeObject);
  for (const ns of ['default', 'kube-system', 'fsm-system']) s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  return s;
}

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an ApiError, the call succeeded');
}

const cluster = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: MC,
  kind: 'Cluster',
  metadata: { name },
  spec,
});

describe('custom resources against the real CRD schemas', () => {
  let s: ObjectStore;
  beforeEach(() => {
    s = newStore();
  });

  it('refuses a Cluster without the required fsmNamespace and with an out-of-range port: 422 with causes naming each field', () => {
    const e = apiError(() => s.create(cluster('bad', { gatewayPort: 70000, gatewayHost: 'pop.example' })));
    expect(e.code).toBe(422);
    expect(e.status.reason).toBe('Invalid');
    expect(e.status.details?.causes).toEqual([
      { reason: 'FieldValueRequired', message: 'Required value', field: 'spec.fsmNamespace' },
      {
        reason: 'FieldValueInvalid',
        message: 'Invalid value: 70000: spec.gatewayPort in body should be less than or equal to 65535',
        field: 'spec.gatewayPort',
      },
    ]);
    expect(e.message).toBe(
      'Cluster.multicluster.flomesh.io "bad" is invalid: [spec.fsmNamespace: Required value, spec.gatewayPort: Invalid value: 70000: spec.gatewayPort in body should be less than or equal to 65535]',
    );
    expect(s.get(MC, 'Cluster', 'bad')).toBeUndefined();
  });

  it('reports a wrong type with the field name', () => {
    const e = apiError(() => s.create(cluster('t', { fsmNamespace: 'fsm', gatewayPort: 'eighty' })));
    expect(e.status.details?.causes?.[0]).toMatchObject({ reason: 'FieldValueTypeInvalid', field: 'spec.gatewayPort' });
  });

  it('applies schema defaults and prunes unknown fields (with a warning)', () => {
    const warnings: string[] = [];
    const c = s.create(cluster('ok', { fsmNamespace: 'fsm-system', gatewayHost: '10.99.0.11', bogus: 1 }), { warnings });
    expect(c.spec).toEqual({
      fsmNamespace: 'fsm-system',
      gatewayHost: '10.99.0.11',
      fsmMeshConfigName: 'fsm-mesh-config',
      gatewayPort: 80,
      region: 'default',
      zone: 'default',
      group: 'default',
    });
    expect(warnings).toEqual(['unknown field "spec.bogus"']);
    expect(apiError(() => s.create(cluster('strict', { fsmNamespace: 'x', bogus: 1 }), { fieldValidation: 'Strict' })).code).toBe(400);
  });

  it('validates enums, int-or-string and nested arrays (ServiceExport, GlobalTrafficPolicy, HelmChart)', () => {
    const sexp = {
      apiVersion: MC,
      kind: 'ServiceExport',
      metadata: { name: 'httpbin', namespace: 'default' },
      spec: { rules: [{ portNumber: 8080, path: '/x', pathType: 'Sideways' }] },
    };
    const e = apiError(() => s.create(sexp));
    expect(e.status.details?.causes?.[0]).toMatchObject({ reason: 'FieldValueNotSupported', field: 'spec.rules[0].pathType' });
    expect(e.status.details?.causes?.[0]?.message).toContain('supported values: "Exact", "Prefix"');
    const gtp = {
      apiVersion: MC,
      kind: 'GlobalTrafficPolicy',
      metadata: { name: 'g', namespace: 'default' },
      spec: { lbType: 'FailOver', targets: [{ clusterKey: 'default/default/default/pop1' }] },
    };
    expect(s.create(gtp).spec).toMatchObject({ lbType: 'FailOver' });
    const simp = {
      apiVersion: MC,
      kind: 'ServiceImport',
      metadata: { name: 'httpbin', namespace: 'default' },
      spec: { type: 'Sideways', ports: [] },
    };
    expect(apiError(() => s.create(simp)).status.details?.causes?.map((c) => c.field)).toContain('spec.type');
    const chart = {
      apiVersion: 'helm.cattle.io/v1',
      kind: 'HelmChart',
      metadata: { name: 'fsm', namespace: 'kube-system' },
      spec: {
        chart: 'https://%{KUBERNETES_API}%/static/charts/fsm-1.5.1.tgz',
        targetNamespace: 'fsm-system',
        failurePolicy: 'abort',
        timeout: '10m',
        valuesContent: 'fsm: {}',
      },
    };
    expect(s.create(chart).spec).toMatchObject({ failurePolicy: 'abort' });
    const badChart = {
      ...chart,
      metadata: { name: 'bad', namespace: 'kube-system' },
      spec: { ...chart.spec, failurePolicy: 'explode', timeout: 'soon' },
    };
    const fields = apiError(() => s.create(badChart)).status.details?.causes?.map((c) => c.field);
    expect(fields).toContain('spec.failurePolicy');
  });

  it('completes a MeshConfig with the fields its schema requires (skeleton) so it validates', () => {
    const mc = s.skeleton('config.flomesh.io/v1alpha3', 'MeshConfig', {
      apiVersion: 'config.flomesh.io/v1alpha3',
      kind: 'MeshConfig',
      metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' },
      spec: { clusterSet: { uid: 'u1' } },
    }) as KubeObject;
    const created = s.create(mc);
    expect((created.spec as { clusterSet: Record<string, unknown> }).clusterSet).toMatchObject({
      uid: 'u1',
      isManaged: false,
      controlPlaneUID: '',
    });
    expect(apiError(() => s.create({ ...mc, metadata: { name: 'other', namespace: 'fsm-system' }, spec: {} })).code).toBe(422);
  });

  it('rejects a custom resource of an unknown kind with 404', () => {
    expect(apiError(() => s.create({ apiVersion: 'multicluster.flomesh.io/v1alpha1', kind: 'Nope', metadata: { name: 'x' } })).code).toBe(
      404,
    );
  });
});

describe('object lifecycle', () => {
  let s: ObjectStore;
  beforeEach(() => {
    s = newStore();
  });

  it('gives 409 AlreadyExists, 404 NotFound, and 404 for a missing namespace', () => {
    s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'default' }, data: { k: 'v' } });
    const dup = apiError(() => s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'default' } }));
    expect([dup.code, dup.status.reason, dup.message]).toEqual([409, 'AlreadyExists', 'configmaps "a" already exists']);
    const nf = apiError(() => s.delete('v1', 'ConfigMap', 'zzz', 'default'));
    expect([nf.code, nf.message]).toEqual([404, 'configmaps "zzz" not found']);
    expect(apiError(() => s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'nope' } })).message).toBe(
      'namespaces "nope" not found',
    );
  });

  it('refuses a stale update with 409 Conflict and bumps resourceVersion and generation on a real change only', () => {
    const a = s.create(cluster('c1', { fsmNamespace: 'fsm' }));
    const b = s.update({ ...a, spec: { ...(a.spec as object), region: 'eu' } });
    expect(Number(b.metadata.resourceVersion)).toBeGreaterThan(Number(a.metadata.resourceVersion));
    expect(b.metadata.generation).toBe(2);
    const stale = apiError(() => s.update({ ...a, spec: { fsmNamespace: 'x' } }));
    expect([stale.code, stale.status.reason]).toEqual([409, 'Conflict']);
    expect(stale.message).toContain('Operation cannot be fulfilled on clusters.multicluster.flomesh.io "c1": the object has been modified');
    const same = s.update(b);
    expect(same.metadata.resourceVersion).toBe(b.metadata.resourceVersion);
  });

  it('separates the status subresource: main updates keep status, status updates keep spec, generation unchanged', () => {
    const c = s.create({ ...cluster('c2', { fsmNamespace: 'fsm' }), status: { conditions: [] } });
    expect(c.status).toBeUndefined(); // status is dropped on create when the CRD has a status subresource
    const cond = { type: 'Managed', status: 'True', reason: 'Success', message: 'ok', lastTransitionTime: '2026-11-25T00:00:00Z' };
    const withStatus = s.updateStatus({ ...c, spec: { fsmNamespace: 'changed' }, status: { conditions: [cond] } });
    expect(withStatus.spec).toMatchObject({ fsmNamespace: 'fsm' });
    expect(withStatus.metadata.generation).toBe(1);
    const specOnly = s.update({ ...withStatus, spec: { ...(withStatus.spec as object), zone: 'z' }, status: {} });
    expect(specOnly.status).toEqual({ conditions: [cond] });
    const badStatus = apiError(() => s.updateStatus({ ...specOnly, status: { conditions: [{ ...cond, status: 'Maybe' }] } }));
    expect(badStatus.status.details?.causes?.[0]?.field).toBe('status.conditions[0].status');
  });

  it('lists with equality and set-based label selectors', () => {
    for (const [n, l] of [
      ['a', { app: 'x', tier: 'fe' }],
      ['b', { app: 'y' }],
      ['c', { app: 'x' }],
    ] as const)
      s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: n, namespace: 'default', labels: l } });
    const names = (sel: string) => s.list('v1', 'ConfigMap', { namespace: 'default', labelSelector: sel }).map((o) => o.metadata.name);
    expect(names('app=x')).toEqual(['a', 'c']);
    expect(names('app==x,tier')).toEqual(['a']);
    expect(names('app!=x')).toContain('b');
    expect(names('app in (x,y),!tier')).toEqual(['b', 'c']);
    expect(s.list('v1', 'ConfigMap', { fieldSelector: 'metadata.name=b' }).map((o) => o.metadata.name)).toEqual(['b']);
  });

  it('stores Secrets as data: stringData becomes base64 data, bad base64 is 422', () => {
    const sec = s.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'default' }, stringData: { token: 'abc' } });
    expect(sec).toMatchObject({ type: 'Opaque', data: { token: Buffer.from('abc').toString('base64') } });
    expect(sec.stringData).toBeUndefined();
    expect(
      apiError(() =>
        s.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 't', namespace: 'default' }, data: { x: 'not base64!' } }),
      ).code,
    ).toBe(422);
  });

  it('keeps an object with finalizers until they are removed', () => {
    const cm = s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'f', namespace: 'default', finalizers: ['lab/keep'] } });
    const del = s.delete('v1', 'ConfigMap', 'f', 'default');
    expect(del.metadata.deletionTimestamp).toBeTruthy();
    const live = s.get('v1', 'ConfigMap', 'f', 'default') as KubeObject;
    s.update({ ...live, metadata: { ...live.metadata, finalizers: [] } });
    expect(s.get('v1', 'ConfigMap', 'f', 'default')).toBeUndefined();
    expect(cm.metadata.uid).toBeTruthy();
  });
});

describe('patches', () => {
  let s: ObjectStore;
  beforeEach(() => {
    s = newStore();
  });

  const deployment = (): KubeObject => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd', namespace: 'default' },
    spec: {
      selector: { matchLabels: { app: 'd' } },
      template: {
        metadata: { labels: { app: 'd' } },
        spec: {
          containers: [
            { name: 'a', image: 'a:1', env: [{ name: 'X', value: '1' }] },
            { name: 'b', image: 'b:1' },
          ],
        },
      },
    },
  });

  it('json-patch: add/replace/test, a failing test refuses the whole patch', () => {
    s.create(cluster('p', { fsmNamespace: 'fsm' }));
    const out = s.patch(
      MC,
      'Cluster',
      'p',
      undefined,
      [
        { op: 'replace', path: '/spec/region', value: 'eu' },
        { op: 'add', path: '/metadata/labels', value: { a: 'b' } },
      ],
      'json',
    );
    expect(out.spec).toMatchObject({ region: 'eu' });
    expect(out.metadata.labels).toEqual({ a: 'b' });
    const e = apiError(() =>
      s.patch(
        MC,
        'Cluster',
        'p',
        undefined,
        [
          { op: 'test', path: '/spec/region', value: 'us' },
          { op: 'replace', path: '/spec/zone', value: 'z' },
        ],
        'json',
      ),
    );
    expect(e.code).toBe(422);
    expect((s.get(MC, 'Cluster', 'p') as KubeObject).spec).toMatchObject({ zone: 'default' });
  });

  it('merge-patch removes keys set to null and is validated like an update', () => {
    s.create(cluster('m', { fsmNamespace: 'fsm', region: 'eu' }));
    expect(s.patch(MC, 'Cluster', 'm', undefined, { spec: { region: null } }, 'merge').spec).toMatchObject({ region: 'default' });
    expect(apiError(() => s.patch(MC, 'Cluster', 'm', undefined, { spec: { gatewayPort: 0 } }, 'merge')).code).toBe(422);
  });

  it('a patch carrying a stale resourceVersion is a 409', () => {
    s.create(cluster('rv', { fsmNamespace: 'fsm' }));
    expect(
      apiError(() => s.patch(MC, 'Cluster', 'rv', undefined, { metadata: { resourceVersion: '1' }, spec: { zone: 'z' } }, 'merge')).code,
    ).toBe(409);
  });

  it('strategic merge merges containers by name and env by name; refused for custom resources (415)', () => {
    s.create(deployment());
    const out = s.patch(
      'apps/v1',
      'Deployment',
      'd',
      'default',
      { spec: { template: { spec: { containers: [{ name: 'a', image: 'a:2', env: [{ name: 'Y', value: '2' }] }] } } } },
      'strategic',
    );
    const cs = (out.spec as { template: { spec: { containers: Array<{ name: string; image: string; env?: unknown[] }> } } }).template.spec
      .containers;
    expect(cs.map((c) => `${c.name}=${c.image}`)).toEqual(['a=a:2', 'b=b:1']);
    expect(cs[0]?.env).toEqual([
      { name: 'X', value: '1' },
      { name: 'Y', value: '2' },
    ]);
    const del = s.patch(
      'apps/v1',
      'Deployment',
      'd',
      'default',
      { spec: { template: { spec: { containers: [{ name: 'b', $patch: 'delete' }] } } } },
      'strategic',
    );
    expect((del.spec as { template: { spec: { containers: unknown[] } } }).template.spec.containers).toHaveLength(1);
    s.create(cluster('smp', { fsmNamespace: 'fsm' }));
    expect(apiError(() => s.patch(MC, 'Cluster', 'smp', undefined, { spec: { zone: 'z' } }, 'strategic')).code).toBe(415);
  });
});

describe('server-side apply', () => {
  let s: ObjectStore;
  beforeEach(() => {
    s = newStore();
  });

  it('creates, is a no-op when re-applied, and removes fields the manager stops applying', () => {
    const cfg = cluster('a', { fsmNamespace: 'fsm', region: 'eu', gatewayHost: 'h' });
    const first = s.apply(cfg, { fieldManager: 'fsm-edge' });
    expect(first.metadata.managedFields?.[0]).toMatchObject({ manager: 'fsm-edge', operation: 'Apply' });
    const again = s.apply(cfg, { fieldManager: 'fsm-edge' });
    expect(again.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
    const fewer = s.apply(cluster('a', { fsmNamespace: 'fsm' }), { fieldManager: 'fsm-edge' });
    expect((fewer.spec as Record<string, unknown>).gatewayHost).toBeUndefined();
    expect(fewer.spec).toMatchObject({ region: 'default' }); // default comes back once nobody sets it
    expect(s.list(MC, 'Cluster')).toHaveLength(1);
  });

  it('conflicts with another manager that owns a field with a different value, unless forced', () => {
    s.apply(cluster('b', { fsmNamespace: 'fsm', region: 'eu' }), { fieldManager: 'alice' });
    const e = apiError(() => s.apply(cluster('b', { fsmNamespace: 'fsm', region: 'us' }), { fieldManager: 'bob' }));
    expect(e.code).toBe(409);
    expect(e.message).toBe('Apply failed with 1 conflict: conflict with "alice": .spec.region');
    expect(e.status.details?.causes?.[0]).toEqual({
      reason: 'FieldManagerConflict',
      message: 'conflict with "alice"',
      field: '.spec.region',
    });
    // same value: shared ownership, no conflict — and recorded, so alice now conflicts with bob
    const shared = s.apply(cluster('b', { fsmNamespace: 'fsm', region: 'eu' }), { fieldManager: 'bob' });
    expect(shared.metadata.managedFields?.map((m) => m.manager).sort()).toEqual(['alice', 'bob']);
    expect(apiError(() => s.apply(cluster('b', { fsmNamespace: 'fsm', region: 'ap' }), { fieldManager: 'alice' })).message).toContain(
      'conflict with "bob": .spec.region',
    );
    const forced = s.apply(cluster('b', { fsmNamespace: 'fsm', region: 'us' }), { fieldManager: 'bob', force: true });
    expect(forced.spec).toMatchObject({ region: 'us' });
  });

  it('an update by another manager takes ownership of the fields it changes', () => {
    const a = s.apply(cluster('c', { fsmNamespace: 'fsm', zone: 'z1' }), { fieldManager: 'fsm-edge' });
    s.update({ ...a, spec: { ...(a.spec as object), zone: 'z2' } }, { fieldManager: 'kubectl-edit' });
    expect(apiError(() => s.apply(cluster('c', { fsmNamespace: 'fsm', zone: 'z3' }), { fieldManager: 'fsm-edge' })).message).toContain(
      'conflict with "kubectl-edit": .spec.zone',
    );
  });

  it('needs a field manager and validates the result against the schema', () => {
    expect(apiError(() => s.apply(cluster('d', { fsmNamespace: 'fsm' }), { fieldManager: '' })).code).toBe(400);
    expect(apiError(() => s.apply(cluster('d', { gatewayPort: -1 }), { fieldManager: 'x' })).code).toBe(422);
    expect(s.get(MC, 'Cluster', 'd')).toBeUndefined();
  });
});
