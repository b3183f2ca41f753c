// The resource types the lab API server serves: built-in kinds stored as data, plus whatever CRDs define.
import type { KubeObject, ResourceType } from './types.js';

const RW = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function rt(
  group: string,
  version: string,
  kind: string,
  plural: string,
  namespaced: boolean,
  extra: Partial<ResourceType> = {},
): ResourceType {
  return {
    group,
    version,
    kind,
    listKind: `${kind}List`,
    plural,
    singular: kind.toLowerCase(),
    namespaced,
    subresources: [],
    verbs: RW,
    custom: false,
    ...extra,
  };
}

export const BUILTIN_RESOURCES: ResourceType[] = [
  rt('', 'v1', 'Namespace', 'namespaces', false, {
    shortNames: ['ns'],
    subresources: ['status'],
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
  }),
  rt('', 'v1', 'Secret', 'secrets', true),
  rt('', 'v1', 'ConfigMap', 'configmaps', true, { shortNames: ['cm'] }),
  rt('', 'v1', 'ServiceAccount', 'serviceaccounts', true, { shortNames: ['sa'], subresources: ['token'] }),
  rt('', 'v1', 'Service', 'services', true, { shortNames: ['svc'], subresources: ['status'], categories: ['all'] }),
  rt('', 'v1', 'Endpoints', 'endpoints', true, { shortNames: ['ep'] }),
  rt('', 'v1', 'Node', 'nodes', false, { shortNames: ['no'], subresources: ['status'] }),
  rt('', 'v1', 'Pod', 'pods', true, { shortNames: ['po'], subresources: ['status'], categories: ['all'] }),
  rt('', 'v1', 'Event', 'events', true, { shortNames: ['ev'] }),
  rt('', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', true, { shortNames: ['pvc'], subresources: ['status'] }),
  rt('apps', 'v1', 'Deployment', 'deployments', true, { shortNames: ['deploy'], subresources: ['status', 'scale'], categories: ['all'] }),
  rt('apps', 'v1', 'DaemonSet', 'daemonsets', true, { shortNames: ['ds'], subresources: ['status'], categories: ['all'] }),
  rt('apps', 'v1', 'ReplicaSet', 'replicasets', true, { shortNames: ['rs'], subresources: ['status', 'scale'], categories: ['all'] }),
  rt('apps', 'v1', 'StatefulSet', 'statefulsets', true, { shortNames: ['sts'], subresources: ['status', 'scale'], categories: ['all'] }),
  rt('batch', 'v1', 'Job', 'jobs', true, { subresources: ['status'], categories: ['all'] }),
  rt('batch', 'v1', 'CronJob', 'cronjobs', true, { shortNames: ['cj'], subresources: ['status'], categories: ['all'] }),
  rt('rbac.authorization.k8s.io', 'v1', 'Role', 'roles', true),
  rt('rbac.authorization.k8s.io', 'v1', 'ClusterRole', 'clusterroles', false),
  rt('rbac.authorization.k8s.io', 'v1', 'RoleBinding', 'rolebindings', true),
  rt('rbac.authorization.k8s.io', 'v1', 'ClusterRoleBinding', 'clusterrolebindings', false),
  rt('apiextensions.k8s.io', 'v1', 'CustomResourceDefinition', 'customresourcedefinitions', false, {
    shortNames: ['crd', 'crds'],
    subresources: ['status'],
  }),
  rt('coordination.k8s.io', 'v1', 'Lease', 'leases', true),
  rt('networking.k8s.io', 'v1', 'Ingress', 'ingresses', true, { shortNames: ['ing'], subresources: ['status'] }),
  rt('networking.k8s.io', 'v1', 'IngressClass', 'ingressclasses', false),
  rt('storage.k8s.io', 'v1', 'StorageClass', 'storageclasses', false, { shortNames: ['sc'] }),
  rt('authorization.k8s.io', 'v1', 'SelfSubjectAccessReview', 'selfsubjectaccessreviews', false, { verbs: ['create'] }),
];

export function apiVersionOf(r: ResourceType): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.indexOf('/');
  return i < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

/** Resource types derived from a CRD object: one per served version. */
export function resourcesFromCrd(crd: KubeObject): ResourceType[] {
  const spec = crd.spec as {
    group: string;
    scope: 'Namespaced' | 'Cluster';
    names: { kind: string; listKind?: string; plural: string; singular?: string; shortNames?: string[]; categories?: string[] };
    versions: Array<{ name: string; served: boolean; subresources?: { status?: unknown; scale?: unknown } }>;
  };
  return spec.versions
    .filter((v) => v.served)
    .map((v) => ({
      group: spec.group,
      version: v.name,
      kind: spec.names.kind,
      listKind: spec.names.listKind ?? `${spec.names.kind}List`,
      plural: spec.names.plural,
      singular: spec.names.singular ?? spec.names.kind.toLowerCase(),
      namespaced: spec.scope === 'Namespaced',
      ...(spec.names.shortNames ? { shortNames: spec.names.shortNames } : {}),
      ...(spec.names.categories ? { categories: spec.names.categories } : {}),
      subresources: [
        ...(v.subresources?.status !== undefined ? ['status'] : []),
        ...(v.subresources?.scale !== undefined ? ['scale'] : []),
      ],
      verbs: RW,
      custom: true,
    }));
}
