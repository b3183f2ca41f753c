// What joining the hub takes: on the POP, a ServiceAccount with only the rights the hub's FSM controller uses
// (read the FSM deployment, update the MeshConfig's clusterSet, run the multicluster connector) and a token
// Secret for it; a kubeconfig with that token whose server is the POP's hub-facing API endpoint; on the hub,
// the FSM `Cluster` resource, validated against the real CRD before it is applied.

import { stringify } from 'yaml';
import { validateCluster } from '../../kube/crd-schema.js';

export const HUB_ACCESS_NAME = 'fsm-edge-hub';
export const FIELD_MANAGER = 'fsm-edge';
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'fsm-edge' };

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

/** The objects on the POP, in apply order (the token Secret needs its ServiceAccount first). */
export function popAccessObjects(fsmNamespace: string): K8sObject[] {
  const name = HUB_ACCESS_NAME;
  const meta = (namespaced: boolean) => ({ name, ...(namespaced ? { namespace: fsmNamespace } : {}), labels: MANAGED_BY });
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(true) },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta(true),
      rules: [
        // The join checks that fsm-controller exists, then updates the member's MeshConfig clusterSet.
        { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['config.flomesh.io'], resources: ['meshconfigs'], verbs: ['get', 'list', 'watch', 'update', 'patch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: meta(false),
      rules: [
        // The background connector follows services and their exports/imports across the member.
        { apiGroups: [''], resources: ['namespaces', 'services', 'endpoints'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
        {
          apiGroups: ['multicluster.flomesh.io'],
          resources: ['serviceexports', 'serviceimports', 'globaltrafficpolicies', 'serviceexports/status', 'serviceimports/status'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
        },
        { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(true),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: fsmNamespace }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: meta(false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: fsmNamespace }],
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { ...meta(true), annotations: { 'kubernetes.io/service-account.name': name } },
      type: 'kubernetes.io/service-account-token',
    },
  ];
}

export interface HubKubeconfigInput {
  clusterName: string;
  /** `https://host:6443` — the POP's API as the hub reaches it. */
  server: string;
  /** Base64 PEM of the POP's cluster CA (from the POP's k3s.yaml). */
  caData: string;
  token: string;
}

/** A kubeconfig the hub's fsm-controller uses to reach this POP. Contains a credential: never log it. */
export function renderHubKubeconfig(input: HubKubeconfigInput): string {
  const n = input.clusterName;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: n, cluster: { server: input.server, 'certificate-authority-data': input.caData } }],
    users: [{ name: `${n}-${HUB_ACCESS_NAME}`, user: { token: input.token } }],
    contexts: [{ name: n, context: { cluster: n, user: `${n}-${HUB_ACCESS_NAME}` } }],
    'current-context': n,
  });
}

/** What the hub's `Cluster` says about a POP (everything but how to reach its API). */
export interface ClusterFields {
  name: string;
  region: string;
  zone: string;
  group: string;
  gatewayHost: string;
  gatewayPort: number;
  fsmNamespace: string;
}

export interface ClusterInput extends ClusterFields {
  kubeconfig: string;
}

export function buildClusterObject(input: ClusterInput): K8sObject {
  const obj: K8sObject = {
    apiVersion: 'multicluster.flomesh.io/v1alpha1',
    kind: 'Cluster',
    metadata: { name: input.name, labels: { ...MANAGED_BY, 'edge.flomesh.io/site': input.name } },
    spec: {
      region: input.region,
      zone: input.zone,
      group: input.group,
      gatewayHost: input.gatewayHost,
      gatewayPort: input.gatewayPort,
      fsmNamespace: input.fsmNamespace,
      kubeconfig: input.kubeconfig,
    },
  };
  validateCluster(obj);
  return obj;
}

/** The Cluster as shown in a dry run or a log: the kubeconfig (a credential) replaced by a marker. */
export function redactCluster(obj: K8sObject): K8sObject {
  const spec = { ...(obj.spec as Record<string, unknown>), kubeconfig: '<redacted: kubeconfig with a token for the POP>' };
  return { ...obj, spec };
}
