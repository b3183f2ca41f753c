// LAB STAND-IN: FSM v1.5.1's multicluster control plane on the hub — the Cluster reconciler
// (pkg/controllers/cluster/v1alpha1/cluster_controller.go), one connector per member (pkg/mcs/remote/*), the
// control-plane server that accepts or rejects ServiceExports (pkg/mcs/ctrl/controlplane.go), and the Cluster
// validating webhook (pkg/webhook/mcs/v1alpha1/cluster.go). Every call to a member goes through that member's
// API with spec.kubeconfig, as the member's RBAC lets it — the calls, their order and their failure modes are
// FSM's; test/lab/apiserver/README.md lists each with its upstream file:line. What FSM does, this does too:
//   - no condition at all for a join that fails before the connector exists (bad kubeconfig, FSM missing, a
//     403 on the Deployment or the MeshConfig update): the reconcile returns the error and is retried;
//   - a missing list/watch right makes the connector wait for its informer caches for ever while holding the
//     controller's lock, so this Cluster never gets a condition and no other Cluster is reconciled any more
//     (until the hub restarts);
//   - `Managed=True` (reason Success, observedGeneration) as soon as the connector is built; FSM's
//     `Managed=False` branch is unreachable (it reads `success` before the goroutine ran), so it is never set;
//   - a connector is rebuilt (new client, new connections, new TLS sessions) whenever the Cluster's spec,
//     resourceVersion, generation or uid changes; nothing re-verifies a running connector.
import { isIP } from 'node:net';
import { randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { ApiError } from '../errors.js';
import { KubeClient, KubeRequestError } from '../kubeclient.js';
import type { Controller, ControllerContext, KubeObject, Store } from '../types.js';
import { Informer, waitForCacheSync, type InformerEvent } from './informer.js';

export interface ClusterControllerOptions {
  /** Namespace of the hub's own FSM (holds MeshConfig fsm-mesh-config with clusterSet.uid). Default fsm-system. */
  fsmNamespace?: string;
  /** Upper bound of the retry delay after a failed reconcile (seconds). Default 5. */
  resyncSeconds?: number;
  /** Timeout of each request to a member API (ms). Default 5000. */
  requestTimeoutMs?: number;
  /** Create the hub's FSM namespace, MeshConfig (with a clusterSet uid) and fsm-controller Deployment if missing. Default true. */
  seedHub?: boolean;
  /** Enforce the validating webhook rules (gatewayHost/kubeconfig required, host not loopback). Default true. */
  webhook?: boolean;
  /** Seconds updateConfigsOfManagedCluster sleeps after the MeshConfig update (FSM: 1). */
  settleSeconds?: number;
}

const MC_API = 'multicluster.flomesh.io/v1alpha1';
const MESHCONFIG_API = 'config.flomesh.io/v1alpha3';
const WEBHOOK = 'vcluster.kb.flomesh.io';
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MCS = '/apis/multicluster.flomesh.io/v1alpha1';

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

/** pkg/mcs/config/config.go ConnectorConfig: where a member's exports are reached. */
interface Geo {
  key: string;
  region: string;
  zone: string;
  group: string;
  name: string;
  gatewayHost: string;
  gatewayIP: string;
  gatewayPort: number;
  controlPlaneUID: string;
}

interface ServiceExportEvent {
  geo: Geo;
  export: KubeObject;
  service: KubeObject;
  error?: string;
}

interface Connector {
  key: string;
  hash: string;
  geo: Geo;
  client: KubeClient;
  meshConfig: Informer;
  informers: Informer[];
  fsmNamespace: string;
  meshConfigName: string;
  stopped: boolean;
  /** processEvent runs (Run() saw the member managed). */
  processing: boolean;
}

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function keyOf(c: KubeObject): string {
  const s = c.spec as ClusterSpec;
  return `${s.region}/${s.zone}/${s.group}/${c.metadata.name}`;
}

/** cluster_controller.go:157-171 clusterHash: spec, resourceVersion, generation, uid. */
function clusterHash(c: KubeObject): string {
  return JSON.stringify([c.spec, c.metadata.resourceVersion, c.metadata.generation, c.metadata.uid]);
}

interface ServicePort {
  name?: string;
  protocol?: string;
  appProtocol?: string;
  port?: number;
  targetPort?: number | string;
  nodePort?: number;
}

/** A ServicePort as the Go struct holds it (absent = zero value; IntOrString keeps its type), for reflect.DeepEqual. */
function goServicePort(p: ServicePort): unknown[] {
  const tp = p.targetPort;
  return [
    p.name ?? '',
    p.protocol ?? '',
    p.appProtocol ?? null,
    p.port ?? 0,
    typeof tp === 'string' ? ['s', tp] : ['i', tp ?? 0],
    p.nodePort ?? 0,
  ];
}

/** A Status error from a member, in client-go's words (the message kube-apiserver sent). */
function errText(e: unknown): string {
  return e instanceof KubeRequestError ? e.message : (e as Error).message;
}

/**
 * A MeshConfig `fsm-mesh-config` valid against the real CRD (required fields from the schema), with `spec`
 * merged over it — what fsm-bootstrap creates from the chart's preset-mesh-config.
 */
export function presetMeshConfig(store: Store, namespace: string, spec: Record<string, unknown>): KubeObject {
  return store.skeleton(MESHCONFIG_API, 'MeshConfig', {
    apiVersion: MESHCONFIG_API,
    kind: 'MeshConfig',
    metadata: { name: 'fsm-mesh-config', namespace },
    spec,
  }) as KubeObject;
}

/** pkg/mcs/config/config.go:52-118 NewConnectorConfig: the gateway host must be IPv4 or resolve to one, not loopback. */
async function connectorConfig(c: KubeObject, hubUid: string): Promise<Geo> {
  const s = c.spec as ClusterSpec;
  const host = s.gatewayHost ?? '';
  let ip: string;
  if (isIP(host) === 4) ip = host;
  else {
    if (host.length > 253 || !DNS1123_SUBDOMAIN.test(host)) throw new Error(`invalid DNS name or IP ${JSON.stringify(host)}`);
    try {
      ip = (await lookup(host, { family: 4 })).address;
    } catch (e) {
      throw new Error(`${JSON.stringify(host)} cannot be resolved to IP, ${(e as Error).message}`);
    }
  }
  if (ip.startsWith('127.') || ip === '0.0.0.0') throw new Error(`gateway Host ${host} is resolved to Loopback IP or Unspecified`);
  return {
    key: keyOf(c),
    region: s.region,
    zone: s.zone,
    group: s.group,
    name: c.metadata.name as string,
    gatewayHost: host,
    gatewayIP: ip,
    gatewayPort: s.gatewayPort ?? 80,
    controlPlaneUID: hubUid,
  };
}

/** A promise-chain mutex (sync.Mutex). */
function mutex() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => {});
    return run;
  };
}

/** The hub side of the multicluster join, export and import. */
export function clusterController(opts: ClusterControllerOptions = {}): Controller {
  const hubNs = opts.fsmNamespace ?? 'fsm-system';
  const maxRetryMs = (opts.resyncSeconds ?? 5) * 1000;
  const timeoutMs = opts.requestTimeoutMs ?? 5000;
  const settleMs = (opts.settleSeconds ?? 1) * 1000;
  const backgrounds = new Map<string, Connector>(); // ControlPlaneServer.backgrounds, by cluster key
  const locked = mutex(); // reconciler.mu (cluster_controller.go:66)
  const controlPlaneLock = mutex(); // ControlPlaneServer.mu (controlplane.go:68)
  let serverVersionKnown = false; // pkg/version: ServerVersion is detected once per process (utils.go:54-64)
  let stopped = false;
  let unwatch: (() => void) | undefined;
  // controller-runtime: one worker (MaxConcurrentReconciles 1), a de-duplicating queue, rate-limited requeue
  const queue: string[] = [];
  const failures = new Map<string, number>();
  let working = false;
  let ctxRef: ControllerContext;

  const enqueue = (name: string) => {
    if (!queue.includes(name)) queue.push(name);
    if (!working) void work();
  };
  const work = async () => {
    working = true;
    try {
      while (queue.length && !stopped) {
        const name = queue.shift() as string;
        try {
          await reconcile(ctxRef, name);
          failures.delete(name);
        } catch (e) {
          const n = (failures.get(name) ?? 0) + 1;
          failures.set(name, n);
          ctxRef.log(`cluster ${name}: Reconciler error: ${(e as Error).message}`);
          const t = setTimeout(() => enqueue(name), Math.min(250 * 2 ** (n - 1), maxRetryMs));
          t.unref?.();
        }
      }
    } finally {
      working = false;
    }
  };

  const hubMeshConfig = (ctx: ControllerContext) => ctx.store.get(MESHCONFIG_API, 'MeshConfig', 'fsm-mesh-config', hubNs);
  const hubClusterSet = (ctx: ControllerContext) =>
    ((hubMeshConfig(ctx)?.spec as { clusterSet?: Record<string, unknown> } | undefined)?.clusterSet ?? {}) as Record<string, unknown>;

  const destroyBackground = (key: string) => {
    const bg = backgrounds.get(key);
    if (!bg) return;
    bg.stopped = true;
    for (const i of bg.informers) i.stop();
    backgrounds.delete(key);
  };

  // ------------------------------------------------------------ connector (pkg/mcs/remote/types.go NewConnector)
  const newConnector = async (ctx: ControllerContext, c: KubeObject): Promise<Connector> => {
    const spec = c.spec as ClusterSpec;
    // cluster_controller.go:247-263 getKubeConfig (clientcmd.Load)
    const client = KubeClient.fromKubeconfig(spec.kubeconfig ?? '', undefined, timeoutMs);
    const hubUid = String(hubClusterSet(ctx).uid ?? '');
    const geo = await connectorConfig(c, hubUid); // background.go:22 → config.go:52
    const log = (l: string) => ctx.log(`[${geo.key}] ${l}`);
    // types.go:96 IsSupportedK8sVersion → utils.go:54-64: the server version is read once per process
    if (!serverVersionKnown) {
      let v: { gitVersion?: string };
      try {
        v = await client.get('/version');
      } catch (e) {
        throw new Error(`unable to get server version: ${errText(e)}`); // utils.go:58-59 panics; controller-runtime recovers
      }
      const m = /^v?(\d+)\.(\d+)/.exec(v.gitVersion ?? '');
      if (!m || Number(m[1]) < 1 || (Number(m[1]) === 1 && Number(m[2]) < 19))
        throw new Error(`kubernetes server version ${v.gitVersion} is not supported, requires at least 1.19.0`);
      serverVersionKnown = true;
    }
    // types.go:116-120 → informers.go:145-156 (MeshConfig by name, MeshRootCertificate, in fsmNamespace) and
    // 220-228 (ServiceExport, ServiceImport, GlobalTrafficPolicy in every namespace); run() 282-304 waits for all
    const ns = encodeURIComponent(spec.fsmNamespace);
    const meshConfig = new Informer(client, `/apis/${MESHCONFIG_API}/namespaces/${ns}/meshconfigs`, '*v1alpha3.MeshConfig', log, {
      fieldSelector: `metadata.name=${spec.fsmMeshConfigName}`,
    });
    const informers = [
      meshConfig,
      new Informer(client, `/apis/${MESHCONFIG_API}/namespaces/${ns}/meshrootcertificates`, '*v1alpha3.MeshRootCertificate', log),
      new Informer(client, `${MCS}/serviceexports`, '*v1alpha1.ServiceExport', log),
      new Informer(client, `${MCS}/serviceimports`, '*v1alpha1.ServiceImport', log),
      new Informer(client, `${MCS}/globaltrafficpolicies`, '*v1alpha1.GlobalTrafficPolicy', log),
    ];
    const conn: Connector = {
      key: geo.key,
      hash: clusterHash(c),
      geo,
      client,
      meshConfig,
      informers,
      fsmNamespace: spec.fsmNamespace,
      meshConfigName: spec.fsmMeshConfigName,
      stopped: false,
      processing: false,
    };
    for (const i of informers) void i.run();
    log('Waiting for informer caches to sync (FSM waits without a deadline)');
    // the stop channel is never closed here in FSM (background.go:34 RegisterExitHandlers): only the hub's exit ends it
    if (!(await waitForCacheSync(informers, () => stopped))) throw new Error('hub stopped');
    // types.go:129-140: the fsm-controller Deployment must exist
    try {
      await client.get(`/apis/apps/v1/namespaces/${ns}/deployments/fsm-controller`);
    } catch (e) {
      for (const i of informers) i.stop();
      if (e instanceof KubeRequestError && e.status === 404)
        log('FSM Control Plane is not installed or not in a proper state, please check it.');
      throw e;
    }
    // types.go:171-197 updateConfigsOfManagedCluster, from the informer's copy (configurator GetMeshConfig)
    const mc = meshConfig.get(`${spec.fsmNamespace}/${spec.fsmMeshConfigName}`);
    const cs = ((mc?.spec as { clusterSet?: Record<string, unknown> } | undefined)?.clusterSet ?? {}) as Record<string, unknown>;
    try {
      if (cs.isManaged === true && cs.controlPlaneUID) {
        if (cs.controlPlaneUID !== hubUid) throw new Error(`cluster ${geo.key} is already managed, cannot join the MultiCluster`);
        log('Rejoining ClusterSet ...');
      } else {
        // an absent MeshConfig is an empty one in FSM: client-go refuses to update an object without a name
        if (!mc) throw new Error('resource name may not be empty');
        const next = {
          ...mc,
          spec: {
            ...(mc.spec as object),
            clusterSet: {
              ...cs,
              isManaged: true,
              region: geo.region,
              zone: geo.zone,
              group: geo.group,
              name: geo.name,
              controlPlaneUID: hubUid,
            },
          },
        };
        await client.put(`/apis/${MESHCONFIG_API}/namespaces/${ns}/meshconfigs/${encodeURIComponent(spec.fsmMeshConfigName)}`, next);
      }
    } catch (e) {
      for (const i of informers) i.stop();
      throw e;
    }
    await sleep(settleMs); // types.go:147-149
    // types.go:160-166: ServiceExport handlers (the existing exports arrive as ADDED)
    informers[2]!.addEventHandler((ev) => onMemberServiceExport(conn, ev));
    return conn;
  };

  const isManaged = (conn: Connector) => {
    const mc = conn.meshConfig.get(`${conn.fsmNamespace}/${conn.meshConfigName}`);
    return ((mc?.spec as { clusterSet?: { isManaged?: boolean } } | undefined)?.clusterSet?.isManaged ?? false) === true;
  };

  // ------------------------------------------------------------ member → control plane (types.go:212-322)
  const getService = async (conn: Connector, exp: KubeObject): Promise<KubeObject> => {
    const svc = await conn.client.get<KubeObject>(
      `/api/v1/namespaces/${encodeURIComponent(exp.metadata.namespace as string)}/services/${encodeURIComponent(exp.metadata.name as string)}`,
    );
    if ((svc.spec as { type?: string }).type === 'ExternalName')
      throw new Error(`[${conn.key}] ExternalName service ${exp.metadata.namespace}/${exp.metadata.name} cannot be exported`);
    return svc;
  };

  const onMemberServiceExport = (conn: Connector, ev: InformerEvent) => {
    if (conn.stopped) return;
    const log = (l: string) => ctxRef.log(`[${conn.key}] ${l}`);
    log(`ServiceExport ${ev.object.metadata.namespace}/${ev.object.metadata.name} ${ev.type === 'DELETED' ? 'deleted' : 'updated'}`);
    if (!isManaged(conn))
      return log(`Cluster is not managed, ignore processing ServiceExport ${ev.object.metadata.namespace}/${ev.object.metadata.name}`);
    void getService(conn, ev.object).then(
      (service) => {
        const evt: ServiceExportEvent = { geo: conn.geo, export: ev.object, service };
        setImmediate(() => {
          if (ev.type === 'DELETED') return broadcast('deleted', evt);
          controlPlaneOnCreated(evt).catch((e: unknown) =>
            log(`control plane: ServiceExport ${ev.object.metadata.namespace}/${ev.object.metadata.name}: ${errText(e)}`),
          );
        });
      },
      (e) =>
        log(
          `Ignore processing ServiceExport ${ev.object.metadata.namespace}/${ev.object.metadata.name} due to get service failed: ${errText(e)}`,
        ),
    );
  };

  // ------------------------------------------------------------ control plane (pkg/mcs/ctrl/controlplane.go)
  const conditionIs = (o: KubeObject, type: string, status: string) =>
    ((o.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).some((c) => c.type === type && c.status === status);

  const controlPlaneOnCreated = (evt: ServiceExportEvent) =>
    controlPlaneLock(async () => {
      const hub = hubClusterSet(ctxRef);
      // controlplane.go:25: a hub that is itself managed by another control plane does not federate
      if (hub.isManaged === true && hub.controlPlaneUID && hub.uid !== hub.controlPlaneUID) return;
      if (conditionIs(evt.export, 'Valid', 'False') || conditionIs(evt.export, 'Conflict', 'True')) return; // :50-57
      // :87-97 isFirstTimeExport: does any member have the ServiceImport? (an error other than 404 counts as yes)
      let first = true;
      for (const bg of backgrounds.values()) if (await serviceImportExists(bg, evt.export)) first = false;
      if (first) return broadcast('accepted', evt);
      // :99-115 isValidServiceExport: the Service must match in every other member
      for (const bg of backgrounds.values()) {
        if (bg.key === evt.geo.key) continue;
        const err = await validateServiceExport(bg, evt.export, evt.service);
        if (err) return broadcast('rejected', { ...evt, error: err });
      }
      broadcast('accepted', evt);
    });

  const serviceImportExists = async (bg: Connector, exp: KubeObject): Promise<boolean> => {
    try {
      await bg.client.get(
        `${MCS}/namespaces/${encodeURIComponent(exp.metadata.namespace as string)}/serviceimports/${encodeURIComponent(exp.metadata.name as string)}`,
      );
      return true;
    } catch (e) {
      return !(e instanceof KubeRequestError && e.status === 404); // connector.go:185-198
    }
  };

  /** connector.go:202-227: undefined when there is no conflict. */
  const validateServiceExport = async (bg: Connector, exp: KubeObject, svc: KubeObject): Promise<string | undefined> => {
    let local: KubeObject;
    try {
      local = await bg.client.get<KubeObject>(
        `/api/v1/namespaces/${encodeURIComponent(exp.metadata.namespace as string)}/services/${encodeURIComponent(exp.metadata.name as string)}`,
      );
    } catch (e) {
      if (e instanceof KubeRequestError && e.status === 404) return undefined;
      return `[${bg.key}] Failed get Service ${exp.metadata.namespace}/${exp.metadata.name}: ${errText(e)}`;
    }
    const a = svc.spec as { type?: string; ports?: ServicePort[] };
    const b = local.spec as { type?: string; ports?: ServicePort[] };
    if (a.type !== b.type) return `[${bg.key}] service type doesn't match: ${a.type} vs ${b.type}`;
    // reflect.DeepEqual of the two []corev1.ServicePort: every field (targetPort and nodePort too), in order
    if (JSON.stringify((a.ports ?? []).map(goServicePort)) !== JSON.stringify((b.ports ?? []).map(goServicePort)))
      return `[${bg.key}] spec.ports conflict, please check service spec`;
    return undefined;
  };

  /** The broker's pub/sub to every connector's processEvent (connector.go:63-179), each action retried (Fibonacci). */
  const broadcast = (kind: 'accepted' | 'rejected' | 'deleted', evt: ServiceExportEvent) => {
    ctxRef.log(
      `control plane: ServiceExport ${evt.export.metadata.namespace}/${evt.export.metadata.name} of ${evt.geo.key} ${kind}${evt.error ? `: ${evt.error}` : ''}`,
    );
    for (const bg of backgrounds.values()) {
      if (!bg.processing) continue;
      const action =
        kind === 'accepted'
          ? () => upsertServiceImport(bg, evt)
          : kind === 'deleted'
            ? () => deleteServiceImport(bg, evt)
            : () => rejectServiceExport(bg, evt);
      void retryFibonacci(bg, action, `${kind} ServiceExport ${evt.export.metadata.namespace}/${evt.export.metadata.name}`);
    }
  };

  const retryFibonacci = async (bg: Connector, fn: () => Promise<void>, what: string) => {
    let [a, b] = [1000, 1000];
    while (!bg.stopped && !stopped) {
      try {
        return await fn();
      } catch (e) {
        ctxRef.log(`[${bg.key}] ${what}: ${errText(e)} (retrying)`);
        await sleep(Math.min(a, 30_000));
        [a, b] = [b, a + b];
      }
    }
  };

  // connector.go:386-399 newEndpoint; Target.path has no omitempty (serviceimport_types.go:136), so a rule
  // without a path gives "path": ""
  const endpoint = (evt: ServiceExportEvent, path: string | undefined) => ({
    clusterKey: evt.geo.key,
    target: { host: evt.geo.gatewayHost, ip: evt.geo.gatewayIP, port: evt.geo.gatewayPort, path: path ?? '' },
  });

  /** connector.go:229-346 upsertServiceImport + getOrCreateServiceImport. */
  const upsertServiceImport = async (bg: Connector, evt: ServiceExportEvent) => {
    if (evt.geo.key === bg.key) return;
    const ns = evt.export.metadata.namespace as string;
    const name = evt.export.metadata.name as string;
    const rules = (evt.export.spec as { rules?: Array<{ portNumber?: number; path?: string }> }).rules ?? [];
    try {
      await bg.client.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }); // :298-316, always
    } catch (e) {
      if (!(e instanceof KubeRequestError && e.status === 409)) throw e;
    }
    const sip = `${MCS}/namespaces/${encodeURIComponent(ns)}/serviceimports`;
    const svcPorts = (evt.service.spec as { ports?: Array<Record<string, unknown>> }).ports ?? [];
    const fresh = {
      apiVersion: 'multicluster.flomesh.io/v1alpha1',
      kind: 'ServiceImport',
      metadata: { name, namespace: ns },
      spec: {
        type: 'ClusterSetIP',
        ports: rules.flatMap((r) =>
          svcPorts
            .filter((p) => p.port === r.portNumber)
            .map((p) => ({
              name: p.name,
              port: p.port,
              protocol: p.protocol,
              appProtocol: p.appProtocol,
              endpoints: [endpoint(evt, r.path)],
            })),
        ),
        serviceAccountName: (evt.export.spec as { serviceAccountName?: string }).serviceAccountName,
      },
    };
    let imp: KubeObject;
    try {
      imp = await bg.client.post<KubeObject>(sip, fresh); // :323-325
    } catch (e) {
      if (!(e instanceof KubeRequestError && e.status === 409)) throw e;
      imp = await bg.client.get<KubeObject>(`${sip}/${encodeURIComponent(name)}`); // :329-331
    }
    const spec = imp.spec as { ports: Array<{ port: number; endpoints?: Array<{ clusterKey: string }> }>; serviceAccountName?: string };
    for (const p of spec.ports ?? []) {
      if (!p.endpoints?.length) {
        // :248-255: an empty port gets one endpoint per rule of that port
        p.endpoints = rules.filter((r) => r.portNumber === p.port).map((r) => endpoint(evt, r.path));
        continue;
      }
      // :256-275: the other clusters' endpoints are copied only when this export has a rule for the port, so a
      // port this cluster does not export loses every endpoint (FSM's behaviour, kept)
      const eps = new Map<string, { clusterKey: string }>();
      for (const r of rules) {
        if (r.portNumber !== p.port) continue;
        for (const e of p.endpoints) eps.set(e.clusterKey, e);
        eps.set(evt.geo.key, endpoint(evt, r.path));
      }
      p.endpoints = [...eps.values()];
    }
    spec.serviceAccountName = (evt.export.spec as { serviceAccountName?: string }).serviceAccountName;
    await bg.client.put(`${sip}/${encodeURIComponent(name)}`, imp); // :284-286
  };

  /** connector.go:401-470 deleteServiceImport. */
  const deleteServiceImport = async (bg: Connector, evt: ServiceExportEvent) => {
    if (evt.geo.key === bg.key) return;
    const path = `${MCS}/namespaces/${encodeURIComponent(evt.export.metadata.namespace as string)}/serviceimports/${encodeURIComponent(evt.export.metadata.name as string)}`;
    let imp: KubeObject;
    try {
      imp = await bg.client.get<KubeObject>(path);
    } catch (e) {
      if (e instanceof KubeRequestError && e.status === 404) return;
      throw e;
    }
    if (imp.metadata.deletionTimestamp) return;
    const rules = (evt.export.spec as { rules?: Array<{ portNumber?: number }> }).rules ?? [];
    const spec = imp.spec as { ports: Array<{ port: number; endpoints?: Array<{ clusterKey: string }> }> };
    const ports = rules.flatMap((r) =>
      (spec.ports ?? [])
        .filter((p) => p.port === r.portNumber)
        .map((p) => ({ ...p, endpoints: (p.endpoints ?? []).filter((e) => e.clusterKey !== evt.geo.key) }))
        .filter((p) => p.endpoints.length > 0),
    );
    if (ports.length) await bg.client.put(path, { ...imp, spec: { ...spec, ports } });
    else await bg.client.delete(path);
  };

  /** connector.go:472-507 rejectServiceExport: the exporting member's ServiceExport gets Conflict=True. */
  const rejectServiceExport = async (bg: Connector, evt: ServiceExportEvent) => {
    if (evt.geo.key !== bg.key) return;
    const path = `${MCS}/namespaces/${encodeURIComponent(evt.export.metadata.namespace as string)}/serviceexports/${encodeURIComponent(evt.export.metadata.name as string)}`;
    const exp = await bg.client.get<KubeObject>(path);
    const st = (exp.status ?? {}) as { conditions?: Condition[] };
    const conds = (st.conditions ?? []).filter((c) => c.type !== 'Conflict');
    const old = (st.conditions ?? []).find((c) => c.type === 'Conflict');
    conds.push({
      type: 'Conflict',
      status: 'True',
      observedGeneration: exp.metadata.generation ?? 1,
      lastTransitionTime: old?.status === 'True' ? old.lastTransitionTime : now(),
      reason: 'Conflict',
      message: `ServiceExport ${exp.metadata.namespace}/${exp.metadata.name} conflicts, ${evt.error ?? ''}`,
    });
    await bg.client.put(`${path}/status`, { ...exp, status: { ...st, conditions: conds } });
  };

  // ------------------------------------------------------------ reconcile (cluster_controller.go:103-155)
  const reconcile = async (ctx: ControllerContext, name: string): Promise<void> => {
    const c = ctx.store.get(MC_API, 'Cluster', name);
    // :111-118: FSM "destroys" the connector of an empty Cluster object (key "///"), i.e. none: a deleted Cluster's
    // connector keeps running until a Cluster with the same key replaces it
    if (!c) return ctx.log(`cluster ${name}: Cluster resource not found. Stopping the connector and remove the reference.`);
    if (c.metadata.deletionTimestamp) await locked(async () => destroyBackground(keyOf(c)));
    const fault = ctx.fault('cluster');
    if (fault) throw new Error(fault);
    const key = keyOf(c);
    const bg = backgrounds.get(key);
    if (bg && bg.hash === clusterHash(c)) return ctx.log(`The connector ${key} already exists and the spec doesn't change`);
    await locked(async () => {
      if (bg) destroyBackground(key); // :196-203 recreateConnector
      const conn = await newConnector(ctx, c);
      backgrounds.set(key, conn); // :227
      // :231-238 Run() in a goroutine: processEvent only if the member's MeshConfig (informer copy) says managed
      setImmediate(() => {
        if (!conn.stopped && isManaged(conn)) conn.processing = true;
        const state = conn.stopped
          ? 'already replaced'
          : conn.processing
            ? 'is managed, processing events'
            : 'not managed: no event processing';
        // the resourceVersion it was built for tells a test whether another rebuild is still due (FSM logs no such
        // thing; a connector built for an older resourceVersion is replaced, and an export accepted meanwhile is lost)
        ctx.log(`[${key}] connector running; ${state} (Cluster resourceVersion ${c.metadata.resourceVersion})`);
      });
      // :240-241 → successJoinClusterSet (:265-280): with the Cluster as read at the start of this reconcile
      const st = (c.status ?? {}) as { conditions?: Condition[] };
      const conds = [...(st.conditions ?? [])];
      const i = conds.findIndex((x) => x.type === 'Managed');
      const old = i >= 0 ? conds[i] : undefined;
      const next: Condition = {
        type: 'Managed',
        status: 'True',
        observedGeneration: c.metadata.generation ?? 1,
        lastTransitionTime: old && old.status === 'True' ? old.lastTransitionTime : now(),
        reason: 'Success',
        message: `Cluster ${key} joined ClusterSet successfully.`,
      };
      if (i >= 0) conds[i] = next;
      else conds.push(next);
      ctx.store.updateStatus({ ...c, status: { ...st, conditions: conds } }, { fieldManager: 'fsm-controller' });
    });
  };

  const seed = (store: Store) => {
    const ignore = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 409)) throw e;
      }
    };
    if (!store.resourceFor(MESHCONFIG_API, 'MeshConfig'))
      throw new Error('cluster controller: the MeshConfig CRD (config.flomesh.io_meshconfigs.yaml) must be loaded on the hub');
    if (!store.get('v1', 'Namespace', hubNs))
      ignore(() => store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: hubNs } }));
    if (!store.get(MESHCONFIG_API, 'MeshConfig', 'fsm-mesh-config', hubNs))
      ignore(() =>
        store.create(
          presetMeshConfig(store, hubNs, {
            clusterSet: {
              isManaged: false,
              uid: randomUUID(),
              region: 'default',
              zone: 'default',
              group: 'default',
              name: 'hub',
              controlPlaneUID: '',
            },
          }),
        ),
      );
    if (!store.get('apps/v1', 'Deployment', 'fsm-controller', hubNs))
      ignore(() =>
        store.create({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'fsm-controller', namespace: hubNs, labels: { app: 'fsm-controller' } },
          spec: {
            replicas: 1,
            selector: { matchLabels: { app: 'fsm-controller' } },
            template: {
              metadata: { labels: { app: 'fsm-controller' } },
              spec: { containers: [{ name: 'fsm-controller', image: 'flomesh/fsm-controller:1.5.1' }] },
            },
          },
        }),
      );
  };

  return {
    name: 'cluster',
    start(ctx) {
      ctxRef = ctx;
      if (opts.seedHub !== false) seed(ctx.store);
      // controller-runtime: every event of a Cluster (no predicates in SetupWithManager, :300-315) queues it
      unwatch = ctx.store.watch(MC_API, 'Cluster', (ev) => enqueue(ev.object.metadata.name as string));
      for (const c of ctx.store.list(MC_API, 'Cluster')) enqueue(c.metadata.name as string);
    },
    stop() {
      stopped = true;
      unwatch?.();
      for (const k of [...backgrounds.keys()]) destroyBackground(k);
    },
    // pkg/webhook/mcs/v1alpha1/cluster.go:60-117 (validator)
    admit(op, obj) {
      if (opts.webhook === false || op === 'DELETE' || obj.kind !== 'Cluster' || !obj.apiVersion.startsWith('multicluster.flomesh.io/'))
        return;
      const spec = (obj.spec ?? {}) as Partial<ClusterSpec>;
      const deny = (msg: string) => {
        throw new ApiError(400, 'BadRequest', `admission webhook "${WEBHOOK}" denied the request: ${msg}`);
      };
      if (!spec.gatewayHost) deny('GatewayHost is required in OutCluster mode');
      if (!spec.kubeconfig) deny('kubeconfig must be set in OutCluster mode');
      const host = spec.gatewayHost as string;
      if (isIP(host) === 4) {
        if (host.startsWith('127.') || host === '0.0.0.0') deny(`gateway Host ${host} is resolved to Loopback IP or Unspecified`);
      } else if (host.length > 253 || !DNS1123_SUBDOMAIN.test(host)) deny(`invalid DNS name ${JSON.stringify(host)}`);
      else if (host === 'localhost') deny('gateway Host localhost is resolved to Loopback IP or Unspecified');
      const port = spec.gatewayPort ?? 80;
      if (!Number.isInteger(port) || port < 1 || port > 65535) deny(`invalid port number ${port}`);
    },
  };
}
