// RBAC in the lab API server, for ServiceAccount bearer tokens, as kube-apiserver decides it: Role/ClusterRole
// and their bindings, verbs, resources and subresources, resourceNames (also through a list/watch field selector
// on metadata.name), namespaces; kube-apiserver's 403 Status; RBAC object validation. The rights under test are
// the ones fsm-edge gives the hub (src/install/render/registration.ts), so the two are checked against each other.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUB_ACCESS_NAME, hubAccessChecks, popAccessObjects } from '../../../src/install/render/registration.js';
import { REFERENCE_DIR } from '../reference.js';
import { ApiError } from './errors.js';
import { KubeClient, KubeRequestError } from './kubeclient.js';
import { createPki, type LabPki } from './pki.js';
import { createApiServer } from './server.js';
import type { ApiServer, KubeObject } from './types.js';

const CRDS = [
  'config.flomesh.io_meshconfigs.yaml',
  'config.flomesh.io_meshrootcertificates.yaml',
  'multicluster.flomesh.io_serviceexports.yaml',
  'multicluster.flomesh.io_serviceimports.yaml',
  'multicluster.flomesh.io_globaltrafficpolicies.yaml',
].map((f) => join(REFERENCE_DIR, 'fsm', 'v1.5.1', 'crds', f));
const NS = 'fsm-system';
const SA_USER = `system:serviceaccount:${NS}:${HUB_ACCESS_NAME}`;

let dir: string;
let pki: LabPki;
let srv: ApiServer;
let hub: KubeClient;

/** Status code and body of a request as the hub's ServiceAccount. */
async function asHub(
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
): Promise<{ code: number; body: Record<string, unknown> }> {
  try {
    const r = await hub.request(method, path, body, contentType);
    return { code: r.status, body: r.body as Record<string, unknown> };
  } catch (e) {
    if (e instanceof KubeRequestError) return { code: e.status, body: e.body as Record<string, unknown> };
    throw e;
  }
}

const mcPath = (q = '') => `/apis/config.flomesh.io/v1alpha3/namespaces/${NS}/meshconfigs${q}`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lab-rbac-'));
  pki = createPki(join(dir, 'pki'), ['127.0.0.1', 'localhost']);
  srv = await createApiServer({ port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert }, crdFiles: CRDS });
  const s = srv.store;
  s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  for (const o of popAccessObjects(NS)) s.create(o as unknown as KubeObject);
  s.create({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'fsm-controller', namespace: NS },
    spec: {
      selector: { matchLabels: { a: 'b' } },
      template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } },
    },
  });
  s.create({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'fsm-injector', namespace: NS },
    spec: {
      selector: { matchLabels: { a: 'b' } },
      template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } },
    },
  });
  s.create(
    s.skeleton('config.flomesh.io/v1alpha3', 'MeshConfig', {
      apiVersion: 'config.flomesh.io/v1alpha3',
      kind: 'MeshConfig',
      metadata: { name: 'fsm-mesh-config', namespace: NS },
      spec: {
        clusterSet: {
          isManaged: false,
          uid: 'pop-uid',
          region: 'default',
          zone: 'default',
          group: 'default',
          name: 'pop',
          controlPlaneUID: '',
          properties: [],
        },
      },
    }) as KubeObject,
  );
  s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
  s.create({
    apiVersion: 'multicluster.flomesh.io/v1alpha1',
    kind: 'ServiceExport',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { rules: [{ portNumber: 80, path: '/web', pathType: 'Prefix' }] },
  });
  hub = new KubeClient({ server: srv.url, ca: pki.caCert, token: srv.issueToken(NS, HUB_ACCESS_NAME) });
});

afterAll(async () => {
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('RBAC for ServiceAccount tokens', () => {
  it("answers a missing right with kube-apiserver's 403 Status", async () => {
    srv.store.delete('rbac.authorization.k8s.io/v1', 'Role', HUB_ACCESS_NAME, NS);
    try {
      const r = await asHub('GET', `/apis/config.flomesh.io/v1alpha3/namespaces/${NS}/meshrootcertificates`);
      expect(r.code).toBe(403);
      expect(r.body).toEqual({
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: `meshrootcertificates.config.flomesh.io is forbidden: User "${SA_USER}" cannot list resource "meshrootcertificates" in API group "config.flomesh.io" in the namespace "${NS}": RBAC: role.rbac.authorization.k8s.io "${HUB_ACCESS_NAME}" not found`,
        reason: 'Forbidden',
        details: { group: 'config.flomesh.io', kind: 'meshrootcertificates' },
        code: 403,
      });
    } finally {
      srv.store.create(popAccessObjects(NS).find((o) => o.kind === 'Role') as unknown as KubeObject);
    }
    const named = await asHub('GET', `/apis/apps/v1/namespaces/${NS}/deployments/fsm-injector`);
    expect(named.body.message).toBe(
      `deployments.apps "fsm-injector" is forbidden: User "${SA_USER}" cannot get resource "deployments" in API group "apps" in the namespace "${NS}"`,
    );
    const cluster = await asHub('GET', '/api/v1/secrets');
    expect(cluster.body.message).toBe(
      `secrets is forbidden: User "${SA_USER}" cannot list resource "secrets" in API group "" at the cluster scope`,
    );
  });

  it('grants the hub what FSM v1.5.1 calls, and nothing next to it', async () => {
    const allowed: Array<[string, string, unknown?, string?]> = [
      ['GET', '/version'],
      ['GET', `/apis/apps/v1/namespaces/${NS}/deployments/fsm-controller`],
      // the MeshConfig informer: list and watch with the name in a field selector (resourceNames applies)
      ['GET', mcPath('?fieldSelector=metadata.name%3Dfsm-mesh-config')],
      ['GET', mcPath('?fieldSelector=metadata.name%3Dfsm-mesh-config&watch=true&timeoutSeconds=1')],
      ['GET', `/apis/config.flomesh.io/v1alpha3/namespaces/${NS}/meshrootcertificates`],
      ['GET', '/apis/multicluster.flomesh.io/v1alpha1/serviceexports'],
      ['GET', '/apis/multicluster.flomesh.io/v1alpha1/serviceimports?watch=1&timeoutSeconds=1'],
      ['GET', '/apis/multicluster.flomesh.io/v1alpha1/globaltrafficpolicies'],
      ['GET', '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/serviceexports/web'],
      ['GET', '/api/v1/namespaces/shop/services/web'],
      ['POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'imported' } }],
      [
        'POST',
        '/apis/multicluster.flomesh.io/v1alpha1/namespaces/imported/serviceimports',
        {
          apiVersion: 'multicluster.flomesh.io/v1alpha1',
          kind: 'ServiceImport',
          metadata: { name: 'web' },
          spec: {
            type: 'ClusterSetIP',
            ports: [
              {
                port: 80,
                protocol: 'TCP',
                endpoints: [
                  { clusterKey: 'default/default/default/pop2', target: { host: '10.99.0.12', ip: '10.99.0.12', port: 80, path: '/web' } },
                ],
              },
            ],
          },
        },
      ],
      ['DELETE', '/apis/multicluster.flomesh.io/v1alpha1/namespaces/imported/serviceimports/web'],
    ];
    for (const [m, p, b] of allowed) {
      const r = await asHub(m, p, b);
      // 404 = authorised, the object is just not there (the service "web" was never created)
      expect([m, p, r.code < 400 || r.code === 404 ? 'allowed' : String(r.body.message)]).toEqual([m, p, 'allowed']);
    }
    const mc = (await asHub('GET', mcPath('?fieldSelector=metadata.name%3Dfsm-mesh-config'))).body as { items: KubeObject[] };
    const live = mc.items[0] as KubeObject;
    const updated = await asHub('PUT', mcPath('/fsm-mesh-config'), {
      ...live,
      apiVersion: 'config.flomesh.io/v1alpha3',
      kind: 'MeshConfig',
      spec: {
        ...(live.spec as object),
        clusterSet: { ...((live.spec as { clusterSet?: object }).clusterSet ?? {}), isManaged: true, controlPlaneUID: 'hub-uid' },
      },
    });
    expect(updated.body.message).toBeUndefined();
    expect(updated.code).toBe(200);
    const exp = (await asHub('GET', '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/serviceexports/web')).body as KubeObject;
    expect(
      (
        await asHub('PUT', '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/serviceexports/web/status', {
          ...exp,
          status: { conditions: [] },
        })
      ).code,
    ).toBe(200);

    const denied: Array<[string, string, unknown?, string?]> = [
      ['GET', mcPath()], // the whole MeshConfig list: the name is not known to RBAC
      ['GET', mcPath('/fsm-mesh-config')], // FSM reads it from its informer, never with get
      ['PATCH', mcPath('/fsm-mesh-config'), { spec: {} }, 'application/merge-patch+json'],
      ['GET', mcPath('?fieldSelector=metadata.name%3Dother')],
      ['GET', `/apis/apps/v1/namespaces/${NS}/deployments`],
      ['GET', '/api/v1/namespaces/shop'],
      ['GET', '/api/v1/namespaces/shop/endpoints'],
      ['POST', '/api/v1/namespaces/shop/events', { apiVersion: 'v1', kind: 'Event', metadata: { name: 'e' } }],
      ['PUT', '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/serviceexports/web', exp],
      ['DELETE', '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/serviceexports/web'],
      [
        'PATCH',
        '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/serviceexports/web/status',
        { status: {} },
        'application/merge-patch+json',
      ],
      [
        'POST',
        '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/globaltrafficpolicies',
        { apiVersion: 'multicluster.flomesh.io/v1alpha1', kind: 'GlobalTrafficPolicy', metadata: { name: 'web' }, spec: {} },
      ],
      ['GET', `/api/v1/namespaces/${NS}/secrets`],
    ];
    for (const [m, p, b, ct] of denied) expect([m, p, (await asHub(m, p, b, ct)).code]).toEqual([m, p, 403]);
  });

  it("answers the hub's access checks (SelfSubjectAccessReview with its token): all allowed, and a dropped rule shows as its checks", async () => {
    const denied = async () => {
      const out: string[] = [];
      for (const c of hubAccessChecks(NS)) {
        const { usedBy: _u, ...resourceAttributes } = c;
        const r = await asHub('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SelfSubjectAccessReview',
          spec: { resourceAttributes },
        });
        if (!(r.body.status as { allowed: boolean }).allowed) out.push(`${c.verb} ${c.resource}`);
      }
      return out;
    };
    expect(await denied()).toEqual([]);
    const role = srv.store.get('rbac.authorization.k8s.io/v1', 'Role', HUB_ACCESS_NAME, NS)!;
    srv.store.update({
      ...role,
      rules: (role.rules as Array<{ resources: string[] }>).filter((r) => !r.resources.includes('meshrootcertificates')),
    });
    try {
      expect(await denied()).toEqual(['list meshrootcertificates', 'watch meshrootcertificates']);
    } finally {
      srv.store.update({ ...srv.store.get('rbac.authorization.k8s.io/v1', 'Role', HUB_ACCESS_NAME, NS)!, rules: role.rules });
    }
  });

  it('matches subresources only exactly or as */<subresource>; a RoleBinding may name a ClusterRole; a Role for namespaces/<n> covers <n>', async () => {
    const s = srv.store;
    const grant = (name: string, rules: unknown[]) => {
      s.create({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name }, rules });
      s.create({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name, namespace: 'shop' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
        subjects: [{ kind: 'ServiceAccount', name: HUB_ACCESS_NAME, namespace: NS }],
      });
    };
    const statusPath = '/apis/multicluster.flomesh.io/v1alpha1/namespaces/shop/serviceexports/web/status';
    grant('exports-slash-star', [{ apiGroups: ['multicluster.flomesh.io'], resources: ['serviceexports/*'], verbs: ['patch'] }]);
    expect((await asHub('PATCH', statusPath, { status: {} }, 'application/merge-patch+json')).code).toBe(403);
    grant('star-slash-status', [{ apiGroups: ['multicluster.flomesh.io'], resources: ['*/status'], verbs: ['patch'] }]);
    expect((await asHub('PATCH', statusPath, { status: {} }, 'application/merge-patch+json')).code).toBe(200);
    // bound in namespace shop only: the same ClusterRole grants nothing elsewhere
    expect(
      (
        await asHub(
          'PATCH',
          '/apis/multicluster.flomesh.io/v1alpha1/namespaces/imported/serviceexports/x/status',
          { status: {} },
          'application/merge-patch+json',
        )
      ).code,
    ).toBe(403);
    grant('read-own-namespace', [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get'] }]);
    expect((await asHub('GET', '/api/v1/namespaces/shop')).code).toBe(200);
    expect((await asHub('GET', '/api/v1/namespaces/imported')).code).toBe(403);
  });

  it('validates RBAC objects as kube-apiserver does', () => {
    const s = srv.store;
    const refuse = (o: KubeObject, field: string) => {
      try {
        s.create(o);
      } catch (e) {
        expect(e).toBeInstanceOf(ApiError);
        expect((e as ApiError).code).toBe(422);
        expect((e as ApiError).status.details?.causes?.map((c) => c.field)).toContain(field);
        return;
      }
      throw new Error(`${o.kind} ${o.metadata.name} was accepted`);
    };
    const rb = 'rbac.authorization.k8s.io/v1';
    refuse(
      {
        apiVersion: rb,
        kind: 'Role',
        metadata: { name: 'r1', namespace: 'shop' },
        rules: [{ nonResourceURLs: ['/version'], verbs: ['get'] }],
      },
      'rules[0].nonResourceURLs',
    );
    refuse(
      { apiVersion: rb, kind: 'ClusterRole', metadata: { name: 'r2' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: [] }] },
      'rules[0].verbs',
    );
    refuse(
      { apiVersion: rb, kind: 'ClusterRole', metadata: { name: 'r3' }, rules: [{ resources: ['pods'], verbs: ['get'] }] },
      'rules[0].apiGroups',
    );
    refuse(
      {
        apiVersion: rb,
        kind: 'ClusterRoleBinding',
        metadata: { name: 'b1' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'x' },
        subjects: [],
      },
      'roleRef.kind',
    );
    refuse(
      {
        apiVersion: rb,
        kind: 'ClusterRoleBinding',
        metadata: { name: 'b2' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'x' },
        subjects: [{ kind: 'ServiceAccount', name: 'sa' }],
      },
      'subjects[0].namespace',
    );
  });
});
