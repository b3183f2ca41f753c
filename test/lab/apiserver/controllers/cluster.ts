// LAB STAND-IN: the behaviour of FSM's multicluster Cluster controller on the hub (fsm v1.5.1
// pkg/controllers/cluster/v1alpha1, pkg/mcs/remote, pkg/webhook/mcs/v1alpha1/cluster.go): for each
// `Cluster` it really connects to the member's API with spec.kubeconfig, checks the member's FSM
// (Deployment fsm-controller in spec.fsmNamespace), marks the member's MeshConfig clusterSet as managed by
// this hub and sets the `Managed` condition. Unlike FSM (which leaves no condition on early errors and
// requeues), every failure is reported as Managed=False reason Failed with FSM's message format, and
// retried every resync period.
import { isIP } from 'node:net';
import { randomUUID } from 'node:crypto';
import { ApiError } from '../errors.js';
import { KubeClient, KubeconfigError, KubeRequestError } from '../kubeclient.js';
import type { Controller, ControllerContext, KubeObject, Store } from '../types.js';

export interface ClusterControllerOptions {
  /** Namespace of the hub's own FSM (holds MeshConfig fsm-mesh-config with clusterSet.uid). Default fsm-system. */
  fsmNamespace?: string;
  /** Reconcile every Cluster this often (seconds). Default 5. */
  resyncSeconds?: number;
  /** Timeout of each request to a member API (ms). Default 5000. */
  requestTimeoutMs?: number;
  /** Create the hub's FSM namespace, MeshConfig (with a clusterSet uid) and fsm-controller Deployment if missing. Default true. */
  seedHub?: boolean;
  /** Enforce the validating webhook rules (gatewayHost/kubeconfig required, host not loopback). Default true. */
  webhook?: boolean;
}

const MC_API = 'multicluster.flomesh.io/v1alpha1';
const MESHCONFIG_API = 'config.flomesh.io/v1alpha3';
const WEBHOOK = 'vcluster.kb.flomesh.io';
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

interface ClusterSpec {
  region: string;
  zone: string;
  group: string;
  gatewayHost?: string;
  gatewayPort?: number;
  kubeconfig?: string;
  fsmMeshConfigName: string;
  fsmNamespace: string;
}

interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function keyOf(c: KubeObject): string {
  const s = c.spec as ClusterSpec;
  return `${s.region}/${s.zone}/${s.group}/${c.metadata.name}`;
}

/** Why a connection failed, in words an operator can act on. */
function describeNetError(server: string, e: unknown): string {
  const err = e as NodeJS.ErrnoException & { reason?: string };
  const code = err.code ?? '';
  if (code === 'ECONNREFUSED') return `cannot connect to the cluster API at ${server}: connection refused (is k3s running and listening there?)`;
  if (code === 'ETIMEDOUT' || code === 'ECONNRESET' && /timed out/.test(err.message)) return `cannot connect to the cluster API at ${server}: ${err.message} (is the address reachable from the hub?)`;
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `cannot connect to the cluster API at ${server}: no route to host`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot connect to the cluster API at ${server}: host name does not resolve from the hub`;
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code) || /certificate|altnames/i.test(err.message))
    return `TLS verification of the cluster API at ${server} failed: ${err.message} (wrong certificate-authority-data in the kubeconfig, or the server's certificate lacks this address in its SANs)`;
  return `cannot connect to the cluster API at ${server}: ${err.message}`;
}

/**
 * A MeshConfig `fsm-mesh-config` valid against the real CRD (required fields from the schema), with `spec`
 * merged over it — what fsm-bootstrap creates from the chart's preset-mesh-config.
 */
export function presetMeshConfig(store: Store, namespace: string, spec: Record<string, unknown>): KubeObject {
  return store.skeleton(MESHCONFIG_API, 'MeshConfig', { apiVersion: MESHCONFIG_API, kind: 'MeshConfig', metadata: { name: 'fsm-mesh-config', namespace }, spec }) as KubeObject;
}

/** The hub side of the multicluster join. */
export function clusterController(opts: ClusterControllerOptions = {}): Controller {
  const hubNs = opts.fsmNamespace ?? 'fsm-system';
  const resync = (opts.resyncSeconds ?? 5) * 1000;
  const timeoutMs = opts.requestTimeoutMs ?? 5000;
  let timer: NodeJS.Timeout | undefined;
  let unwatch: (() => void) | undefined;
  let stopped = false;
  const inFlight = new Set<string>();
  const dirty = new Set<string>();

  const setCondition = (store: Store, name: string, status: 'True' | 'False', reason: string, message: string) => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const live = store.get(MC_API, 'Cluster', name);
      if (!live) return;
      const st = (live.status ?? {}) as { conditions?: Condition[] };
      const conds = [...(st.conditions ?? [])];
      const i = conds.findIndex((c) => c.type === 'Managed');
      const old = i >= 0 ? conds[i] : undefined;
      const gen = live.metadata.generation ?? 1;
      if (old && old.status === status && old.reason === reason && old.message === message && old.observedGeneration === gen) return;
      const next: Condition = { type: 'Managed', status, reason, message, observedGeneration: gen, lastTransitionTime: old && old.status === status ? old.lastTransitionTime : now() };
      if (i >= 0) conds[i] = next;
      else conds.push(next);
      try {
        store.updateStatus({ ...live, status: { ...st, conditions: conds } }, { fieldManager: 'fsm-controller' });
        return;
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 409)) throw e;
      }
    }
  };

  const join = async (ctx: ControllerContext, c: KubeObject): Promise<void> => {
    const spec = c.spec as ClusterSpec;
    const key = keyOf(c);
    const fault = ctx.fault('cluster');
    if (fault) throw new Error(fault);
    const hubMc = ctx.store.get(MESHCONFIG_API, 'MeshConfig', 'fsm-mesh-config', hubNs);
    const hubUid = (hubMc?.spec as { clusterSet?: { uid?: string } } | undefined)?.clusterSet?.uid;
    if (!hubUid) throw new Error(`the hub's MeshConfig ${hubNs}/fsm-mesh-config has no spec.clusterSet.uid (FSM is not installed on the hub)`);
    if (!spec.kubeconfig) throw new Error('spec.kubeconfig is empty');
    let client: KubeClient;
    try {
      client = KubeClient.fromKubeconfig(spec.kubeconfig, undefined, timeoutMs);
    } catch (e) {
      if (e instanceof KubeconfigError) throw new Error(`invalid kubeconfig: ${e.message}`);
      throw e;
    }
    const server = client.target.server;
    const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (e) {
        if (e instanceof KubeRequestError) {
          if (e.status === 401) throw new Error(`the cluster API at ${server} rejected the kubeconfig's credentials (401 Unauthorized) while ${what}`);
          if (e.status === 403) throw new Error(`the kubeconfig's user is not allowed to do this (${what}) on ${server}: ${e.message}`);
          throw Object.assign(new Error(`${what} on ${server} failed: ${e.message}`), { status: e.status });
        }
        throw new Error(describeNetError(server, e));
      }
    };
    await call('reading the server version', () => client.get('/version'));
    const ns = encodeURIComponent(spec.fsmNamespace);
    try {
      await call(`getting Deployment fsm-controller in namespace ${spec.fsmNamespace}`, () => client.get(`/apis/apps/v1/namespaces/${ns}/deployments/fsm-controller`));
    } catch (e) {
      if ((e as { status?: number }).status === 404) throw new Error(`FSM Control Plane is not installed or not running in namespace ${spec.fsmNamespace} of ${server} (Deployment fsm-controller not found)`);
      throw e;
    }
    const mcPath = `/apis/${MESHCONFIG_API}/namespaces/${ns}/meshconfigs/${encodeURIComponent(spec.fsmMeshConfigName)}`;
    let member: KubeObject;
    try {
      member = await call(`getting MeshConfig ${spec.fsmNamespace}/${spec.fsmMeshConfigName}`, () => client.get<KubeObject>(mcPath));
    } catch (e) {
      if ((e as { status?: number }).status === 404) throw new Error(`MeshConfig ${spec.fsmNamespace}/${spec.fsmMeshConfigName} not found on ${server}`);
      throw e;
    }
    const cs = ((member.spec as { clusterSet?: Record<string, unknown> } | undefined)?.clusterSet ?? {}) as Record<string, unknown>;
    if (cs.isManaged === true && cs.controlPlaneUID && cs.controlPlaneUID !== hubUid) throw new Error(`cluster ${key} is already managed by another control plane (controlPlaneUID ${String(cs.controlPlaneUID)}), cannot join the MultiCluster`);
    const want = { isManaged: true, region: spec.region, zone: spec.zone, group: spec.group, name: c.metadata.name, controlPlaneUID: hubUid };
    if (Object.entries(want).some(([k, v]) => cs[k] !== v)) {
      await call(`updating MeshConfig ${spec.fsmNamespace}/${spec.fsmMeshConfigName}`, () => client.patch(mcPath, { spec: { clusterSet: want } }));
      ctx.log(`cluster ${key}: member MeshConfig clusterSet updated on ${server}`);
    }
  };

  const reconcile = async (ctx: ControllerContext, name: string): Promise<void> => {
    if (inFlight.has(name)) {
      dirty.add(name);
      return;
    }
    inFlight.add(name);
    try {
      do {
        dirty.delete(name);
        const c = ctx.store.get(MC_API, 'Cluster', name);
        if (!c || c.metadata.deletionTimestamp || stopped) return;
        const key = keyOf(c);
        try {
          await join(ctx, c);
          setCondition(ctx.store, name, 'True', 'Success', `Cluster ${key} joined ClusterSet successfully.`);
        } catch (e) {
          const msg = (e as Error).message.replace(/\.$/, '');
          ctx.log(`cluster ${key}: join failed: ${msg}`);
          setCondition(ctx.store, name, 'False', 'Failed', `Cluster ${key} failed to join ClusterSet: ${msg}.`);
        }
      } while (dirty.has(name) && !stopped);
    } finally {
      inFlight.delete(name);
    }
  };

  const seed = (store: Store) => {
    const ignore = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 409)) throw e;
      }
    };
    if (!store.resourceFor(MESHCONFIG_API, 'MeshConfig')) throw new Error('cluster controller: the MeshConfig CRD (config.flomesh.io_meshconfigs.yaml) must be loaded on the hub');
    if (!store.get('v1', 'Namespace', hubNs)) ignore(() => store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: hubNs } }));
    if (!store.get(MESHCONFIG_API, 'MeshConfig', 'fsm-mesh-config', hubNs))
      ignore(() => store.create(presetMeshConfig(store, hubNs, { clusterSet: { isManaged: false, uid: randomUUID(), region: 'default', zone: 'default', group: 'default', name: 'hub', controlPlaneUID: '' } })));
    if (!store.get('apps/v1', 'Deployment', 'fsm-controller', hubNs))
      ignore(() =>
        store.create({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'fsm-controller', namespace: hubNs, labels: { app: 'fsm-controller' } },
          spec: { replicas: 1, selector: { matchLabels: { app: 'fsm-controller' } }, template: { metadata: { labels: { app: 'fsm-controller' } }, spec: { containers: [{ name: 'fsm-controller', image: 'flomesh/fsm-controller:1.5.1' }] } } },
        }),
      );
  };

  return {
    name: 'cluster',
    start(ctx) {
      if (opts.seedHub !== false) seed(ctx.store);
      const all = () => ctx.store.list(MC_API, 'Cluster').forEach((c) => void reconcile(ctx, c.metadata.name as string));
      unwatch = ctx.store.watch(MC_API, 'Cluster', (ev) => {
        if (ev.type === 'DELETED') return;
        // a status write by ourselves does not change the generation: no need to reconcile again
        const cond = ((ev.object.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).find((c) => c.type === 'Managed');
        if (ev.type === 'MODIFIED' && cond?.observedGeneration === ev.object.metadata.generation) return;
        setImmediate(() => void reconcile(ctx, ev.object.metadata.name as string));
      });
      timer = setInterval(all, resync);
      timer.unref?.();
      setImmediate(all);
    },
    stop() {
      stopped = true;
      unwatch?.();
      if (timer) clearInterval(timer);
    },
    admit(op, obj) {
      if (opts.webhook === false || op === 'DELETE' || obj.kind !== 'Cluster' || !obj.apiVersion.startsWith('multicluster.flomesh.io/')) return;
      const spec = (obj.spec ?? {}) as Partial<ClusterSpec>;
      const deny = (msg: string) => {
        throw new ApiError(400, 'BadRequest', `admission webhook "${WEBHOOK}" denied the request: ${msg}`);
      };
      if (!spec.gatewayHost) deny('gatewayHost is required');
      if (!spec.kubeconfig) deny('kubeconfig is required');
      const host = spec.gatewayHost as string;
      if (isIP(host)) {
        if (isIP(host) === 6) deny(`gatewayHost ${host}: only IPv4 is supported`);
        if (host.startsWith('127.') || host === '0.0.0.0') deny(`gatewayHost ${host} is a loopback or unspecified address, other clusters cannot reach it`);
      } else if (host.length > 253 || !DNS1123_SUBDOMAIN.test(host)) deny(`gatewayHost ${JSON.stringify(host)} is neither a valid IPv4 address nor a valid DNS-1123 name`);
      else if (host === 'localhost') deny('gatewayHost localhost is a loopback address, other clusters cannot reach it');
    },
  };
}
