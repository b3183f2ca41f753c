// LAB STAND-IN: types of the lab Kubernetes API server (never imported by src/).
// Shared by the server, its in-process simulated controllers and the k3s stand-in.

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: Array<{
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
    blockOwnerDeletion?: boolean;
  }>;
  finalizers?: string[];
  managedFields?: ManagedFieldsEntry[];
  [key: string]: unknown;
}

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** The identity a request (or an in-process controller) acts as. */
export interface UserInfo {
  username: string;
  groups: string[];
  uid?: string;
}

/** One served resource: what discovery lists and what routes resolve to. */
export interface ResourceType {
  group: string; // '' for core
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames?: string[];
  categories?: string[];
  /** Subresources served: 'status' (PUT/PATCH/GET), 'token' (serviceaccounts), 'scale'. */
  subresources: string[];
  verbs: string[];
  /** A custom resource (defined by a CRD): validated against its openAPIV3Schema, no strategic merge. */
  custom: boolean;
}

export type PatchType = 'json' | 'merge' | 'strategic' | 'apply';

export interface WriteOptions {
  /** Acting user (RBAC is checked by the HTTP layer, not here). Default: the in-process controller identity. */
  user?: UserInfo;
  /** Field manager recorded in managedFields. Default `lab-controller`. */
  fieldManager?: string;
  /** Only for apply patches: take ownership of conflicting fields. */
  force?: boolean;
  /** Validate and default but persist nothing (`?dryRun=All`). */
  dryRun?: boolean;
  /** `status` writes only `.status` (and keeps the rest), like the `/status` subresource. */
  subresource?: 'status';
  /** `Strict` turns unknown fields of custom resources into a 400 instead of a warning. */
  fieldValidation?: 'Ignore' | 'Warn' | 'Strict';
  /** Filled with server warnings (pruned unknown fields…) if given. */
  warnings?: string[];
}

export interface ListOptions {
  namespace?: string;
  /** Kubernetes label selector syntax: `a=b,c!=d,e,!f,g in (x,y),h notin (z)`. */
  labelSelector?: string;
  /** Field selector: `metadata.name=x,metadata.namespace!=y,status.phase=Running`. */
  fieldSelector?: string;
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
}

/**
 * Everything in-process controllers (and the HTTP layer) use. All write paths go through the same
 * validation, defaulting, resourceVersion and managedFields logic as HTTP requests.
 * Objects handed out are copies: mutate freely, then `update`.
 * Errors are `ApiError` (404/409/422…), exactly what an HTTP client would get.
 */
export interface Store {
  /** Resolve apiVersion+kind (e.g. `v1`, `Secret`) to the served resource, or undefined. */
  resourceFor(apiVersion: string, kind: string): ResourceType | undefined;
  get(apiVersion: string, kind: string, name: string, namespace?: string): KubeObject | undefined;
  list(apiVersion: string, kind: string, opts?: ListOptions): KubeObject[];
  create(obj: KubeObject, opts?: WriteOptions): KubeObject;
  /** Replace (PUT). If `metadata.resourceVersion` is set and stale → 409 Conflict. */
  update(obj: KubeObject, opts?: WriteOptions): KubeObject;
  /** Shorthand for `update(obj, { subresource: 'status' })`. */
  updateStatus(obj: KubeObject, opts?: WriteOptions): KubeObject;
  patch(
    apiVersion: string,
    kind: string,
    name: string,
    namespace: string | undefined,
    patch: unknown,
    type: PatchType,
    opts?: WriteOptions,
  ): KubeObject;
  /** Server-side apply of a full object (creates it if missing). Needs `opts.fieldManager`. */
  apply(obj: KubeObject, opts: WriteOptions & { fieldManager: string }): KubeObject;
  delete(apiVersion: string, kind: string, name: string, namespace?: string, opts?: WriteOptions): KubeObject;
  /**
   * Events for one kind (or every kind with `'*'`). With `sinceResourceVersion`, first replays the recorded
   * events after it (410 Expired if that is older than the kept history). Returns an unsubscribe function.
   */
  watch(
    apiVersion: string | '*',
    kind: string | '*',
    cb: (ev: WatchEvent) => void,
    opts?: ListOptions & { sinceResourceVersion?: string },
  ): () => void;
  /**
   * `partial` completed with every required field it lacks (defaults or zero values, recursively), from the
   * CRD schema of a custom resource — e.g. a MeshConfig as fsm-bootstrap would create it.
   */
  skeleton(apiVersion: string, kind: string, partial?: Record<string, unknown>): Record<string, unknown>;
  /** Current global resourceVersion. */
  readonly resourceVersion: string;
}

/** Context handed to each simulated controller when the server starts. */
export interface ControllerContext {
  store: Store;
  /** https URL of this server (as reachable from where it runs). */
  url: string;
  /** PEM of the CA that signed the serving cert (for `ca.crt` in SA token secrets, kubeconfigs). */
  caPem: string;
  /** Mint a ServiceAccount token like the TokenRequest API does (expiry in seconds, default 1 h). */
  issueToken(namespace: string, serviceAccount: string, expirationSeconds?: number): string;
  /**
   * Injected fault for a controller, if any: set by the owner through `ApiServer.faults` or over the API
   * in ConfigMap `kube-system/lab-apiserver-faults` (`data.<controller name>: <message>`).
   */
  fault(controller: string): string | undefined;
  log(msg: string): void;
}

/** A simulated controller running inside the server process (node readiness, helm, Cluster join…). */
export interface Controller {
  name: string;
  start(ctx: ControllerContext): void | Promise<void>;
  stop?(): void | Promise<void>;
  /**
   * Optional admission check (like a validating webhook), called before every write of any object after
   * defaulting/validation. Throw an `ApiError` to refuse.
   */
  admit?(op: 'CREATE' | 'UPDATE' | 'DELETE', obj: KubeObject, old: KubeObject | undefined, user: UserInfo): void;
}

export interface TlsOptions {
  /** PEM serving certificate (with the SANs clients use). */
  cert: string;
  /** PEM private key of `cert`. Also keys the ServiceAccount token signatures. */
  key: string;
  /** PEM CA: client certificates signed by it are accepted (CN = user, O = groups). */
  ca: string;
}

export interface AuthOptions {
  /** Enforce RBAC (Role/ClusterRole + bindings) for users outside `system:masters`. Default true. */
  rbac?: boolean;
  /** Extra static bearer tokens (like kube-apiserver's --token-auth-file). */
  staticTokens?: Record<string, UserInfo>;
}

export interface ApiServerOptions {
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  /** Listen port, 0 = any free one. Default 6443. */
  port?: number;
  /** Also accept connections on this unix socket (used by the hub's host-side forwarder). */
  unixSocket?: string;
  /** The URL controllers and tokens advertise; default `https://<host>:<port>`. */
  advertiseUrl?: string;
  tls: TlsOptions;
  /** CustomResourceDefinition YAML files to install at start (multi-document allowed). */
  crdFiles?: string[];
  auth?: AuthOptions;
  /** Simulated controllers, started after the built-in ones (namespaces, SA tokens, GC). */
  controllers?: Controller[];
  /** Persist every object here (JSON) and reload on start, so a restart keeps state. */
  dataFile?: string;
  /** What `/version` reports. Default: a k3s v1.31 build. */
  version?: Partial<VersionInfo>;
  /** Log sink (one line per call). Default: silent. */
  log?: (line: string) => void;
}

export interface VersionInfo {
  major: string;
  minor: string;
  gitVersion: string;
  gitCommit: string;
  gitTreeState: string;
  buildDate: string;
  goVersion: string;
  compiler: string;
  platform: string;
}

export interface ApiServer {
  /** https URL the server listens on. */
  url: string;
  port: number;
  store: Store;
  /** Fault injection per controller name: `faults.set('cluster', 'simulated outage')`. */
  faults: Map<string, string>;
  issueToken(namespace: string, serviceAccount: string, expirationSeconds?: number): string;
  close(): Promise<void>;
}
