// What joining the hub takes: on the POP, a ServiceAccount with exactly the rights FSM v1.5.1's hub uses against
// a member cluster (nothing else) and a token Secret for it; a kubeconfig with that token whose server is the
// POP's hub-facing API endpoint; on the hub, the FSM `Cluster` resource, validated against the real CRD.
//
// The rights, read from flomesh-io/fsm at tag v1.5.1 (2fb53b3b). The hub's Cluster controller
// (pkg/controllers/cluster/v1alpha1/cluster_controller.go:222) builds a connector per member
// (pkg/mcs/remote/background.go:38 → pkg/mcs/remote/types.go:81 NewConnector), which, with the member's
// kubeconfig: reads /version (types.go:96 → pkg/version/utils.go:40; every authenticated user may, through the
// default ClusterRole system:public-info-viewer, so no rule here); starts five informers and waits for ALL their
// caches to sync (types.go:116-120 → pkg/k8s/informers/informers.go:145-156, 220-228, run() 282-304) — a
// missing list/watch blocks that wait for ever while holding the controller's lock (cluster_controller.go:190);
// gets the fsm-controller Deployment; updates the MeshConfig. The connector's event handlers and the control
// plane (pkg/mcs/remote/connector.go, pkg/mcs/ctrl/controlplane.go) then handle ServiceExport/ServiceImport.

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

/** FSM's default MeshConfig name (Cluster spec.fsmMeshConfigName default, cluster_types.go:75). */
export const DEFAULT_MESH_CONFIG_NAME = 'fsm-mesh-config';
/** constants.FSMControllerName, pkg/constants/constants.go:103. */
const FSM_CONTROLLER_DEPLOYMENT = 'fsm-controller';

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/**
 * Rules of the Role in the member's FSM namespace. File:line are FSM v1.5.1.
 * MeshConfig list/watch can be limited to one name: the informer lists and watches with the field selector
 * metadata.name=<name> (informers.go:147-150), which kube-apiserver turns into the request's name for RBAC
 * (k8s.io/apiserver pkg/endpoints/request/requestinfo.go, GetRequestInfo).
 */
export function hubRoleRules(meshConfigName: string = DEFAULT_MESH_CONFIG_NAME): PolicyRule[] {
  return [
    // get: pkg/mcs/remote/types.go:129-131 (Deployments(fsmNamespace).Get("fsm-controller"); NotFound fails the join)
    { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get'], resourceNames: [FSM_CONTROLLER_DEPLOYMENT] },
    // list/watch: pkg/k8s/informers/informers.go:147-153 (MeshConfig informer in fsmNamespace, field selector on the name)
    // update: pkg/mcs/remote/types.go:189-191 (updateConfigsOfManagedCluster sets spec.clusterSet)
    { apiGroups: ['config.flomesh.io'], resources: ['meshconfigs'], verbs: ['list', 'watch', 'update'], resourceNames: [meshConfigName] },
    // list/watch: pkg/k8s/informers/informers.go:151,154 (MeshRootCertificate informer in fsmNamespace, no selector)
    { apiGroups: ['config.flomesh.io'], resources: ['meshrootcertificates'], verbs: ['list', 'watch'] },
  ];
}

/** Rules of the ClusterRole (the multicluster informers watch every namespace). File:line are FSM v1.5.1. */
export function hubClusterRoleRules(): PolicyRule[] {
  return [
    // get: pkg/mcs/remote/types.go:307-309 (getService, on every ServiceExport event),
    //      pkg/mcs/remote/connector.go:205-207 (ValidateServiceExport, conflict check against other members)
    { apiGroups: [''], resources: ['services'], verbs: ['get'] },
    // create: pkg/mcs/remote/connector.go:307-309 (getOrCreateServiceImport creates the namespace first, always;
    // AlreadyExists is fine, Forbidden is not — RBAC refuses before the existence check)
    { apiGroups: [''], resources: ['namespaces'], verbs: ['create'] },
    // list/watch: pkg/k8s/informers/informers.go:224 (all namespaces; its handlers: types.go:160-166)
    // get: pkg/mcs/remote/connector.go:479-481 (rejectServiceExport)
    { apiGroups: ['multicluster.flomesh.io'], resources: ['serviceexports'], verbs: ['get', 'list', 'watch'] },
    // update: pkg/mcs/remote/connector.go:498-500 (UpdateStatus with the Conflict condition)
    { apiGroups: ['multicluster.flomesh.io'], resources: ['serviceexports/status'], verbs: ['update'] },
    // list/watch: pkg/k8s/informers/informers.go:225
    // get: connector.go:185-187 (ServiceImportExists), 329-331 (after AlreadyExists), 410-412 (deleteServiceImport)
    // create: connector.go:323-325; update: connector.go:284-286, 452-454; delete: connector.go:460-462
    {
      apiGroups: ['multicluster.flomesh.io'],
      resources: ['serviceimports'],
      verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
    },
    // list/watch: pkg/k8s/informers/informers.go:226 (cache sync only; no handler on the hub side)
    { apiGroups: ['multicluster.flomesh.io'], resources: ['globaltrafficpolicies'], verbs: ['list', 'watch'] },
  ];
}

/** Why the hub needs each resource (for an operator reading which right is missing). FSM v1.5.1 file:line. */
const USED_BY: Record<string, string> = {
  deployments: 'the join checks that the fsm-controller Deployment exists (pkg/mcs/remote/types.go:129)',
  meshconfigs: 'the hub watches this MeshConfig and writes its clusterSet (pkg/k8s/informers/informers.go:147-153, types.go:189)',
  meshrootcertificates:
    'the hub waits for its MeshRootCertificate informer to sync; without the right the join hangs for ever and blocks every other Cluster on that hub (informers.go:151-154)',
  services: 'ServiceExport handling reads the exported Service (types.go:307, connector.go:205)',
  namespaces: 'importing a service creates its namespace first (pkg/mcs/remote/connector.go:307)',
  serviceexports:
    'the hub watches ServiceExports in every namespace and waits for that informer to sync (informers.go:224, connector.go:479)',
  'serviceexports/status': 'a rejected export gets a Conflict condition (connector.go:498)',
  serviceimports: 'the hub watches and writes ServiceImports (informers.go:225, connector.go:185-462)',
  globaltrafficpolicies: 'the hub waits for its GlobalTrafficPolicy informer to sync (informers.go:226)',
};

/** One right the hub's ServiceAccount needs on the POP, shaped as SelfSubjectAccessReview resourceAttributes. */
export interface HubAccessCheck {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  /** Set for the Role's rights; absent = cluster scope (all namespaces). */
  namespace?: string;
  name?: string;
  /** What FSM does with it, for the error message. */
  usedBy: string;
}

/**
 * Every right of the Role and the ClusterRole as one access check each. Ask them as the hub's ServiceAccount
 * (a SelfSubjectAccessReview with its token, or a SubjectAccessReview as admin): a denied one is the right FSM
 * will miss — FSM itself only logs it on the hub and never writes a condition for it.
 */
export function hubAccessChecks(fsmNamespace: string, meshConfigName: string = DEFAULT_MESH_CONFIG_NAME): HubAccessCheck[] {
  const expand = (rules: PolicyRule[], namespace?: string) =>
    rules.flatMap((r) =>
      r.apiGroups.flatMap((group) =>
        r.resources.flatMap((res) => {
          const [resource, subresource] = res.split('/') as [string, string | undefined];
          return r.verbs.flatMap((verb) =>
            (r.resourceNames ?? [undefined]).map((name) => ({
              verb,
              group,
              resource,
              ...(subresource ? { subresource } : {}),
              ...(namespace ? { namespace } : {}),
              ...(name ? { name } : {}),
              usedBy: USED_BY[res] ?? USED_BY[resource] ?? 'FSM v1.5.1 hub',
            })),
          );
        }),
      ),
    );
  return [...expand(hubRoleRules(meshConfigName), fsmNamespace), ...expand(hubClusterRoleRules())];
}

/** The objects on the POP, in apply order (the token Secret needs its ServiceAccount first). */
export function popAccessObjects(fsmNamespace: string, meshConfigName: string = DEFAULT_MESH_CONFIG_NAME): K8sObject[] {
  const name = HUB_ACCESS_NAME;
  const meta = (namespaced: boolean) => ({ name, ...(namespaced ? { namespace: fsmNamespace } : {}), labels: MANAGED_BY });
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(true) },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta(true), rules: hubRoleRules(meshConfigName) },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(false), rules: hubClusterRoleRules() },
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

/**
 * The default of both the Site's `hub.gateway.port` and the chart's `fsm.fsmIngress.http.port` (FSM v1.5.1
 * charts/fsm/values.yaml).
 */
export const DEFAULT_GATEWAY_PORT = 80;

/** The parts of a Site that decide where other sites reach this POP's fsm-ingress. */
export interface GatewaySiteFields {
  hub?: { gateway?: { port?: number } };
  k3s?: { disable?: readonly string[] };
}

/**
 * The one port for both ends: the Cluster's `gatewayPort` (what other sites' sidecars dial) and
 * `fsm.fsmIngress.http.port` (the port of the fsm-ingress Service, type LoadBalancer, which k3s's servicelb
 * binds on the node: charts/fsm/templates/fsm-ingress-service.yaml). Render both from this function.
 */
export function gatewayPortFor(site: GatewaySiteFields): number {
  return site.hub?.gateway?.port ?? DEFAULT_GATEWAY_PORT;
}

/**
 * Why nothing would listen on the gateway port, or undefined. fsm-ingress is a LoadBalancer Service: without
 * k3s's servicelb (klipper-lb) the port is never bound on the node and only the NodePort answers.
 */
export function gatewayPortProblem(site: GatewaySiteFields): string | undefined {
  if (!site.hub) return undefined;
  if (site.k3s?.disable?.includes('servicelb'))
    return `hub.gateway.port ${gatewayPortFor(site)}: k3s.disable lists servicelb, so the fsm-ingress LoadBalancer Service is never bound on the node and other sites cannot reach this POP's exports; keep servicelb enabled`;
  return undefined;
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
