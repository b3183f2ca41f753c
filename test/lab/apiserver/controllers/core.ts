// Built-in controllers of a real control plane that installers depend on: namespace lifecycle (default
// ServiceAccount, kube-root-ca.crt, termination), the ServiceAccount token controller, and the garbage
// collector for ownerReferences. Each can be failed through the fault switch (`ctx.fault(name)`).
import { ApiError } from '../errors.js';
import type { TokenAuthority } from '../auth.js';
import type { ObjectStore } from '../store.js';
import type { Controller, ControllerContext, KubeObject } from '../types.js';

export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

function ignoreExists(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ApiError && (e.code === 409 || e.code === 404))) throw e;
  }
}

/** Run `fn` soon, outside the write that triggered it (controllers react asynchronously, like real ones). */
function soon(fn: () => void, log: (m: string) => void): void {
  setImmediate(() => {
    try {
      fn();
    } catch (e) {
      log(`controller error: ${(e as Error).message}`);
    }
  });
}

const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'delete', 'deletecollection', 'patch', 'update'];
/** Namespaced kinds the aggregated view/edit/admin roles cover (the common part of upstream's lists). */
const WORKLOADS: Array<[string, string[]]> = [
  [
    '',
    [
      'configmaps',
      'endpoints',
      'persistentvolumeclaims',
      'pods',
      'pods/log',
      'pods/status',
      'services',
      'services/status',
      'serviceaccounts',
      'events',
    ],
  ],
  [
    'apps',
    [
      'deployments',
      'deployments/scale',
      'deployments/status',
      'daemonsets',
      'daemonsets/status',
      'replicasets',
      'replicasets/status',
      'statefulsets',
      'statefulsets/status',
    ],
  ],
  ['batch', ['jobs', 'jobs/status', 'cronjobs', 'cronjobs/status']],
  ['networking.k8s.io', ['ingresses', 'ingresses/status']],
  ['coordination.k8s.io', ['leases']],
];

/**
 * The bootstrap RBAC objects every real cluster has (kubernetes.io/bootstrapping=rbac-defaults), so an
 * installer that binds to cluster-admin/admin/edit/view gets what it would get on k3s. The user-facing
 * roles are flattened (no aggregation) and cover the built-in kinds served here.
 */
export function bootstrapRbac(store: ObjectStore): void {
  const labels = { 'kubernetes.io/bootstrapping': 'rbac-defaults' };
  const rules = (verbs: string[]) => WORKLOADS.map(([g, r]) => ({ apiGroups: [g], resources: r, verbs }));
  const roles: Array<[string, unknown[]]> = [
    [
      'cluster-admin',
      [
        { apiGroups: ['*'], resources: ['*'], verbs: ['*'] },
        { nonResourceURLs: ['*'], verbs: ['*'] },
      ],
    ],
    ['view', rules(READ)],
    [
      'edit',
      [
        ...rules([...READ, ...WRITE]),
        { apiGroups: [''], resources: ['secrets'], verbs: [...READ, ...WRITE] },
        { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
      ],
    ],
    [
      'admin',
      [
        ...rules([...READ, ...WRITE]),
        { apiGroups: [''], resources: ['secrets'], verbs: [...READ, ...WRITE] },
        { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
        { apiGroups: ['rbac.authorization.k8s.io'], resources: ['roles', 'rolebindings'], verbs: [...READ, ...WRITE] },
      ],
    ],
  ];
  for (const [name, r] of roles) {
    if (!store.get('rbac.authorization.k8s.io/v1', 'ClusterRole', name))
      ignoreExists(() =>
        store.create(
          { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name, labels }, rules: r },
          { fieldManager: 'kube-apiserver' },
        ),
      );
  }
  if (!store.get('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', 'cluster-admin'))
    ignoreExists(() =>
      store.create(
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRoleBinding',
          metadata: { name: 'cluster-admin', labels },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:masters' }],
        },
        { fieldManager: 'kube-apiserver' },
      ),
    );
}

export function namespaceController(store: ObjectStore): Controller {
  let stop: (() => void) | undefined;
  return {
    name: 'namespace',
    start(ctx: ControllerContext) {
      for (const ns of SYSTEM_NAMESPACES) ignoreExists(() => store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }));
      bootstrapRbac(store);
      const populate = (ns: KubeObject) => {
        const name = ns.metadata.name as string;
        if (ns.metadata.deletionTimestamp) return;
        if (!store.get('v1', 'ServiceAccount', 'default', name))
          ignoreExists(() => store.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: name } }));
        if (!store.get('v1', 'ConfigMap', 'kube-root-ca.crt', name))
          ignoreExists(() =>
            store.create({
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: {
                name: 'kube-root-ca.crt',
                namespace: name,
                annotations: {
                  'kubernetes.io/description':
                    'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.',
                },
              },
              data: { 'ca.crt': ctx.caPem },
            }),
          );
      };
      const terminate = (ns: KubeObject) => {
        const fault = ctx.fault('namespace');
        if (fault) return ctx.log(`namespace controller: not terminating ${ns.metadata.name}: ${fault}`);
        for (const { r, obj } of store.inNamespace(ns.metadata.name as string)) store.remove(r, obj);
        const live = store.get('v1', 'Namespace', ns.metadata.name as string);
        const r = store.resourceFor('v1', 'Namespace');
        if (live && r) store.remove(r, live);
      };
      for (const ns of store.list('v1', 'Namespace')) (ns.metadata.deletionTimestamp ? terminate : populate)(ns);
      stop = store.watch('v1', 'Namespace', (ev) => {
        if (ev.type === 'DELETED') return;
        soon(() => (ev.object.metadata.deletionTimestamp ? terminate(ev.object) : populate(ev.object)), ctx.log);
      });
    },
    stop() {
      stop?.();
    },
  };
}

export function tokenController(store: ObjectStore, tokens: TokenAuthority): Controller {
  const stops: Array<() => void> = [];
  return {
    name: 'token',
    start(ctx: ControllerContext) {
      const fill = (secret: KubeObject) => {
        if (secret.type !== 'kubernetes.io/service-account-token') return;
        const saName = secret.metadata.annotations?.['kubernetes.io/service-account.name'];
        const ns = secret.metadata.namespace as string;
        const data = (secret.data ?? {}) as Record<string, string>;
        if (!saName || data.token) return;
        const fault = ctx.fault('token');
        if (fault) return ctx.log(`token controller: not filling ${ns}/${secret.metadata.name}: ${fault}`);
        const sa = store.get('v1', 'ServiceAccount', saName, ns);
        if (!sa) return; // filled once the ServiceAccount exists
        const live = store.get('v1', 'Secret', secret.metadata.name as string, ns);
        if (!live) return;
        const { token } = tokens.issue(sa, { secret: live });
        live.data = {
          ...((live.data ?? {}) as Record<string, string>),
          token: Buffer.from(token).toString('base64'),
          'ca.crt': Buffer.from(ctx.caPem).toString('base64'),
          namespace: Buffer.from(ns).toString('base64'),
        };
        live.metadata.annotations = {
          ...(live.metadata.annotations ?? {}),
          'kubernetes.io/service-account.uid': sa.metadata.uid as string,
        };
        store.update(live, { fieldManager: 'kube-controller-manager' });
      };
      for (const s of store.list('v1', 'Secret')) fill(s);
      stops.push(store.watch('v1', 'Secret', (ev) => ev.type !== 'DELETED' && soon(() => fill(ev.object), ctx.log)));
      stops.push(
        store.watch('v1', 'ServiceAccount', (ev) => {
          const ns = ev.object.metadata.namespace as string;
          const mine = (s: KubeObject) =>
            s.type === 'kubernetes.io/service-account-token' &&
            s.metadata.annotations?.['kubernetes.io/service-account.name'] === ev.object.metadata.name;
          if (ev.type === 'ADDED') soon(() => store.list('v1', 'Secret', { namespace: ns }).filter(mine).forEach(fill), ctx.log);
          if (ev.type === 'DELETED')
            soon(
              () =>
                store
                  .list('v1', 'Secret', { namespace: ns })
                  .filter(mine)
                  .forEach((s) => ignoreExists(() => store.delete('v1', 'Secret', s.metadata.name as string, ns))),
              ctx.log,
            );
        }),
      );
    },
    stop() {
      for (const s of stops) s();
    },
  };
}

export function garbageCollector(store: ObjectStore): Controller {
  let stop: (() => void) | undefined;
  return {
    name: 'garbage-collector',
    start(ctx: ControllerContext) {
      const collect = () => {
        if (ctx.fault('garbage-collector')) return;
        const all = store.all();
        const uids = new Set(all.map((x) => x.obj.metadata.uid));
        for (const { r, obj } of all) {
          const owners = obj.metadata.ownerReferences ?? [];
          if (owners.length && owners.every((o) => !uids.has(o.uid))) store.remove(r, obj);
        }
      };
      stop = store.watch('*', '*', (ev) => ev.type === 'DELETED' && soon(collect, ctx.log));
    },
    stop() {
      stop?.();
    },
  };
}
