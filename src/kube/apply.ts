// Server-side apply of the few kinds the installer writes, through the typed APIs (no discovery round trips).
// SSA makes re-runs converge: the same object applied twice is one object, owned by the `fsm-edge` manager.

import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';

export const FIELD_MANAGER = 'fsm-edge';
const SSA = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

export interface ApplyObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}

/** Plural of the custom resources we apply (no discovery needed). */
const CUSTOM_PLURALS: Record<string, string> = {
  'multicluster.flomesh.io/Cluster': 'clusters',
  'helm.cattle.io/HelmChart': 'helmcharts',
};

export async function applyObject(kc: KubeConfig, obj: ApplyObject): Promise<unknown> {
  const { name, namespace } = obj.metadata;
  const common = { name, body: obj, fieldManager: FIELD_MANAGER, force: true };
  const ns = () => {
    if (!namespace) throw new Error(`${obj.kind} ${name} needs a namespace`);
    return namespace;
  };
  switch (`${obj.apiVersion}/${obj.kind}`) {
    case 'v1/ServiceAccount':
      return kc.makeApiClient(CoreV1Api).patchNamespacedServiceAccount({ ...common, namespace: ns() }, SSA);
    case 'v1/Secret':
      return kc.makeApiClient(CoreV1Api).patchNamespacedSecret({ ...common, namespace: ns() }, SSA);
    case 'v1/Namespace':
      return kc.makeApiClient(CoreV1Api).patchNamespace(common, SSA);
    case 'rbac.authorization.k8s.io/v1/Role':
      return kc.makeApiClient(RbacAuthorizationV1Api).patchNamespacedRole({ ...common, namespace: ns() }, SSA);
    case 'rbac.authorization.k8s.io/v1/RoleBinding':
      return kc.makeApiClient(RbacAuthorizationV1Api).patchNamespacedRoleBinding({ ...common, namespace: ns() }, SSA);
    case 'rbac.authorization.k8s.io/v1/ClusterRole':
      return kc.makeApiClient(RbacAuthorizationV1Api).patchClusterRole(common, SSA);
    case 'rbac.authorization.k8s.io/v1/ClusterRoleBinding':
      return kc.makeApiClient(RbacAuthorizationV1Api).patchClusterRoleBinding(common, SSA);
  }
  const [group, version] = obj.apiVersion.split('/');
  const plural = CUSTOM_PLURALS[`${group}/${obj.kind}`];
  if (!group || !version || !plural) throw new Error(`fsm-edge does not know how to apply ${obj.apiVersion} ${obj.kind}`);
  const custom = kc.makeApiClient(CustomObjectsApi);
  return namespace
    ? custom.patchNamespacedCustomObject({ group, version, plural, namespace, ...common }, SSA)
    : custom.patchClusterCustomObject({ group, version, plural, ...common }, SSA);
}
