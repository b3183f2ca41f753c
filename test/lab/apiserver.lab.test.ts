// The lab hub (test/lab/hub.ts) in a hub namespace built like lab-hub, plus two lab API server processes playing
// POPs' k3s APIs (on that namespace's loopback), driven with @kubernetes/client-node from the host namespace.
// The POPs carry exactly the RBAC fsm-edge gives the hub (src/install/render/registration.ts), and the hub's
// Cluster controller stand-in behaves as FSM v1.5.1's does (test/lab/apiserver/README.md): Managed=True once
// the connector is built; no condition at all when the join fails (bad credentials, unreachable API, FSM
// missing, a missing right) — the failure is only in the hub's log; a missing list/watch right holds the whole
// controller until it is granted; a ServiceExport on one POP becomes a ServiceImport on the other.
import * as k8s from '@kubernetes/client-node';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUB_ACCESS_NAME, popAccessObjects } from '../../src/install/render/registration.js';
import { apiFailure } from './apiserver/client-errors.js';
import { FSM_CRD_FILES, serverDaemonNames, startHub, startServerProcess, type Hub, type ServerProcess } from './hub.js';
import { daemonPid } from './proc.js';

const MC = 'multicluster.flomesh.io/v1alpha1';
const MESHCONFIG = 'config.flomesh.io/v1alpha3';
const HUB_PORT = 16443; // not 6443: a lab hub started by `scripts/lab.ts up --hub` may be running
const POP_PORT = 16444;
const POPB_PORT = 16446;
// its own namespace, set up exactly like lab-hub: a concurrent `lab down` kills every process in lab-hub
const NETNS = 'labtest-apihub';
const SA = `system:serviceaccount:fsm-system:${HUB_ACCESS_NAME}`;

let dir: string;
let hub: Hub;
let pop: ServerProcess;
let popB: ServerProcess;
let hubObjects: k8s.KubernetesObjectApi;
let popObjects: k8s.KubernetesObjectApi;
let popBObjects: k8s.KubernetesObjectApi;
let popKubeconfigForHub: string;
let popBKubeconfigForHub: string;

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
}

function client(kubeconfigPath: string): k8s.KubernetesObjectApi {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return k8s.KubernetesObjectApi.makeApiClient(kc);
}

function clusterDoc(name: string, kubeconfig: string, extra: Record<string, unknown> = {}): k8s.KubernetesObject {
  return {
    apiVersion: MC,
    kind: 'Cluster',
    metadata: { name },
    spec: {
      fsmNamespace: 'fsm-system',
      gatewayHost: '10.99.0.11',
      gatewayPort: 8081,
      region: 'eu',
      zone: 'berlin',
      group: 'retail',
      kubeconfig,
      ...extra,
    },
  } as k8s.KubernetesObject;
}

async function apply(obj: k8s.KubernetesObject): Promise<k8s.KubernetesObject> {
  return hubObjects.patch(obj, undefined, undefined, 'fsm-edge', true, k8s.PatchStrategy.ServerSideApply);
}

async function conditions(name: string): Promise<Condition[]> {
  const c = (await hubObjects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name } })) as { status?: { conditions?: Condition[] } };
  return c.status?.conditions ?? [];
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = existsSync(join(hub.stateDir, 'server.log'))
    ? readFileSync(join(hub.stateDir, 'server.log'), 'utf8').split('\n').slice(-25).join('\n')
    : '';
  throw new Error(`never happened: ${what}; last lines of the hub's log:\n${tail}`);
}

/** The Managed condition once it satisfies `pred`. */
const managed = (name: string, pred: (c: Condition) => boolean) =>
  until(`Cluster ${name}: Managed condition`, async () => (await conditions(name)).find((x) => x.type === 'Managed' && pred(x)));

/**
 * The POP's connector that is running now was built for the Cluster's current resourceVersion: the first
 * "connector running" line may come from a connector the hub rebuilds right after (its own status write).
 */
const connectorProcessing = (name: string, key: string) =>
  until(`connector ${key} processing`, async () => {
    const rv = (await hubObjects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name } })).metadata?.resourceVersion;
    const lines = readFileSync(join(hub.stateDir, 'server.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes(`[${key}] `));
    const building = lines.findLastIndex((l) => l.includes('Waiting for informer caches to sync'));
    const running = lines.findLastIndex((l) => l.includes('connector running;'));
    const line = lines[running] ?? '';
    return running > building && line.includes('is managed, processing events') && line.endsWith(`(Cluster resourceVersion ${rv})`)
      ? true
      : undefined;
  });

/** The hub's log line matching `re` (FSM reports a failed join only in its log). */
const hubLog = (re: RegExp) =>
  until(`hub log line ${re}`, async () =>
    readFileSync(join(hub.stateDir, 'server.log'), 'utf8')
      .split('\n')
      .find((l) => re.test(l)),
  );

function tokenKubeconfig(server: string, caPem: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: pop`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`,
    'users:',
    '- name: fsm-hub',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: pop',
    '  context: {cluster: pop, user: fsm-hub}',
    'current-context: pop',
    '',
  ].join('\n');
}

const deployment = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'fsm-controller', namespace: 'fsm-system', labels: { app: 'fsm-controller' } },
  spec: {
    selector: { matchLabels: { app: 'fsm-controller' } },
    template: {
      metadata: { labels: { app: 'fsm-controller' } },
      spec: { containers: [{ name: 'fsm-controller', image: 'flomesh/fsm-controller:1.5.1' }] },
    },
  },
};

/** A POP's API with FSM "installed" and the hub's access as `register` creates it; returns its kubeconfig for the hub. */
async function startPop(name: string, port: number): Promise<{ server: ServerProcess; kubeconfigForHub: string }> {
  const server = await startServerProcess({
    name,
    netns: NETNS,
    host: '127.0.0.1',
    port,
    forwardHost: '127.0.0.3',
    stateDir: join(dir, name),
    crdFiles: FSM_CRD_FILES,
    fresh: true,
    seed: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'fsm-system' } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'no-fsm' } },
      deployment,
      {
        apiVersion: MESHCONFIG,
        kind: 'MeshConfig',
        metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' },
        spec: { clusterSet: { isManaged: false, uid: `${name}-own-uid` } },
      },
    ],
  });
  const objs = client(server.kubeconfigPath);
  for (const o of popAccessObjects('fsm-system')) await objs.create(o as unknown as k8s.KubernetesObject);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(server.kubeconfigPath);
  const tr = await kc.makeApiClient(k8s.CoreV1Api).createNamespacedServiceAccountToken({
    name: HUB_ACCESS_NAME,
    namespace: 'fsm-system',
    body: { spec: { audiences: [], expirationSeconds: 86400 } },
  });
  // the server as the hub sees it: the POP API inside the hub's namespace
  return { server, kubeconfigForHub: tokenKubeconfig(server.innerUrl, server.pki.caCert, tr.status?.token as string) };
}

async function restartHub(): Promise<void> {
  await hub.stop({ keepNetns: true }); // the POP servers live in the same namespace
  hub = await startHub({ port: HUB_PORT, stateDir: join(dir, 'hub'), resyncSeconds: 1, netns: NETNS });
  hubObjects = client(hub.kubeconfigPath);
}

async function deleteCluster(name: string): Promise<void> {
  await hubObjects.delete({ apiVersion: MC, kind: 'Cluster', metadata: { name } });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lab-hub-test-'));
  hub = await startHub({ port: HUB_PORT, stateDir: join(dir, 'hub'), fresh: true, resyncSeconds: 1, netns: NETNS });
  const a = await startPop('pop-a', POP_PORT);
  pop = a.server;
  popKubeconfigForHub = a.kubeconfigForHub;
  hubObjects = client(hub.kubeconfigPath);
  popObjects = client(pop.kubeconfigPath);
});

afterAll(async () => {
  await popB?.stop({ purge: true });
  await pop?.stop({ purge: true });
  await hub?.stop(); // also removes the namespace it created
  expect(existsSync(`/run/netns/${NETNS}`)).toBe(false);
  if (dir && !process.env.LAB_KEEP_DIR) rmSync(dir, { recursive: true, force: true });
});

describe('lab hub: FSM multicluster join', () => {
  it('runs in its namespace on 10.99.0.1 and answers from the host through the forwarder', () => {
    expect(hub.labUrl).toBe(`https://10.99.0.1:${HUB_PORT}`);
    expect(hub.url).toBe(`https://127.0.0.2:${HUB_PORT}`);
    const pid = daemonPid(serverDaemonNames(hub.stateDir).server) as number;
    // the server process lives in the hub network namespace, not the host's
    expect(readFileSync(`/proc/${pid}/net/fib_trie`, 'utf8')).toContain('10.99.0.1');
    expect(readFileSync('/proc/self/net/fib_trie', 'utf8')).not.toContain('10.99.0.1');
  });

  it("refuses a Cluster that violates the real CRD schema with 422 and causes, and what FSM's webhook refuses", async () => {
    const bad = await apiFailure(
      hubObjects.create({
        apiVersion: MC,
        kind: 'Cluster',
        metadata: { name: 'broken' },
        spec: { gatewayHost: '10.99.0.12', gatewayPort: 99999, kubeconfig: 'x' },
      } as k8s.KubernetesObject),
    );
    expect(bad.code).toBe(422);
    expect(bad.body.details?.causes).toEqual([
      { reason: 'FieldValueRequired', message: 'Required value', field: 'spec.fsmNamespace' },
      {
        reason: 'FieldValueInvalid',
        message: 'Invalid value: 99999: spec.gatewayPort in body should be less than or equal to 65535',
        field: 'spec.gatewayPort',
      },
    ]);
    const loop = await apiFailure(hubObjects.create(clusterDoc('loopback-gw', popKubeconfigForHub, { gatewayHost: '127.0.0.1' })));
    expect(loop.code).toBe(400);
    expect(loop.body.message).toContain('is resolved to Loopback IP or Unspecified');
  });

  it("connects with the hub ServiceAccount's token and reaches Managed=True for the generation it saw", async () => {
    const created = await hubObjects.create(clusterDoc('pop1', popKubeconfigForHub));
    expect((created as { spec: { fsmMeshConfigName: string } }).spec.fsmMeshConfigName).toBe('fsm-mesh-config');
    const cond = await managed('pop1', (c) => c.status === 'True');
    expect(cond).toMatchObject({
      reason: 'Success',
      message: 'Cluster eu/berlin/retail/pop1 joined ClusterSet successfully.',
      observedGeneration: created.metadata?.generation,
    });
    const hubMc = (await hubObjects.read({
      apiVersion: MESHCONFIG,
      kind: 'MeshConfig',
      metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' },
    })) as { spec: { clusterSet: { uid: string } } };
    const popMc = (await popObjects.read({
      apiVersion: MESHCONFIG,
      kind: 'MeshConfig',
      metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' },
    })) as k8s.KubernetesObject & { spec: { clusterSet: Record<string, unknown> } };
    expect(popMc.spec.clusterSet).toMatchObject({
      isManaged: true,
      controlPlaneUID: hubMc.spec.clusterSet.uid,
      region: 'eu',
      zone: 'berlin',
      group: 'retail',
      name: 'pop1',
      uid: 'pop-a-own-uid',
    });
    // FSM updates (PUT) the MeshConfig it read from its informer; the POP records the hub controller's user agent
    expect(popMc.metadata?.managedFields?.map((m) => m.manager)).toContain('fsm-controller');
    // the installer's server-side apply takes (shared) ownership once; re-applying then changes nothing
    const first = await apply(clusterDoc('pop1', popKubeconfigForHub));
    expect(first.metadata?.managedFields?.map((m) => m.manager)).toContain('fsm-edge');
    const again = await apply(clusterDoc('pop1', popKubeconfigForHub));
    expect(again.metadata?.resourceVersion).toBe(first.metadata?.resourceVersion);
  });

  it("a ServiceExport on one POP becomes a ServiceImport on the other, pointing at the exporter's gateway", async () => {
    const b = await startPop('pop-b', POPB_PORT);
    popB = b.server;
    popBKubeconfigForHub = b.kubeconfigForHub;
    popBObjects = client(popB.kubeconfigPath);
    await apply(clusterDoc('popb', popBKubeconfigForHub, { zone: 'hamburg', gatewayHost: '10.99.0.12', gatewayPort: 80 }));
    await managed('popb', (c) => c.status === 'True');
    // FSM rebuilds the connector after its own status write (the resourceVersion is part of its hash); an export
    // accepted while no connector of pop-b is processing is never imported there (as on a real hub)
    await connectorProcessing('popb', 'eu/hamburg/retail/popb');
    await popObjects.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    await popObjects.create({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], selector: { app: 'web' } },
    } as k8s.KubernetesObject);
    await popObjects.create({
      apiVersion: MC,
      kind: 'ServiceExport',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { serviceAccountName: '*', rules: [{ portNumber: 8080, path: '/pop1/web', pathType: 'Prefix' }] },
    } as k8s.KubernetesObject);
    const imp = await until('ServiceImport shop/web on pop-b', async () => {
      try {
        return (await popBObjects.read({
          apiVersion: MC,
          kind: 'ServiceImport',
          metadata: { name: 'web', namespace: 'shop' },
        })) as k8s.KubernetesObject & { spec: Record<string, unknown> };
      } catch {
        return undefined;
      }
    });
    expect(imp.spec).toMatchObject({
      type: 'ClusterSetIP',
      serviceAccountName: '*',
      ports: [
        {
          name: 'http',
          port: 8080,
          protocol: 'TCP',
          endpoints: [
            { clusterKey: 'eu/berlin/retail/pop1', target: { host: '10.99.0.11', ip: '10.99.0.11', port: 8081, path: '/pop1/web' } },
          ],
        },
      ],
    });
    // the namespace was created by the hub on pop-b (FSM always creates it first)
    expect((await popBObjects.read({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } })).metadata?.name).toBe('shop');
    // not imported back into the exporting POP
    await expect(
      popObjects.read({ apiVersion: MC, kind: 'ServiceImport', metadata: { name: 'web', namespace: 'shop' } }),
    ).rejects.toThrow();
    await popObjects.delete({ apiVersion: MC, kind: 'ServiceExport', metadata: { name: 'web', namespace: 'shop' } });
    await until('ServiceImport shop/web gone from pop-b', async () => {
      try {
        await popBObjects.read({ apiVersion: MC, kind: 'ServiceImport', metadata: { name: 'web', namespace: 'shop' } });
        return undefined;
      } catch {
        return true;
      }
    });
  });

  it('sets no condition when the join fails — FSM not installed — says why only in its log, and joins once it is', async () => {
    await popObjects.delete({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'fsm-controller', namespace: 'fsm-system' } });
    try {
      await apply(clusterDoc('pop4', popKubeconfigForHub, { zone: 'wedding' }));
      // the informers sync, then the Deployment get is a 404: FSM returns the error (requeue), writes no status
      await hubLog(/\[eu\/wedding\/retail\/pop4\] FSM Control Plane is not installed or not in a proper state/);
      expect(await conditions('pop4')).toEqual([]);
    } finally {
      await popObjects.create(deployment as k8s.KubernetesObject);
    }
    await managed('pop4', (c) => c.status === 'True');
    await deleteCluster('pop4');
  });

  it('a missing right (MeshRootCertificate list) holds the join, and every later Cluster, until it is granted', async () => {
    const popRbac = (() => {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(pop.kubeconfigPath);
      return kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    })();
    const role = await popRbac.readNamespacedRole({ name: HUB_ACCESS_NAME, namespace: 'fsm-system' });
    await popRbac.replaceNamespacedRole({
      name: HUB_ACCESS_NAME,
      namespace: 'fsm-system',
      body: { ...role, rules: (role.rules ?? []).filter((r) => !r.resources?.includes('meshrootcertificates')) },
    });
    await apply(clusterDoc('pop6', popKubeconfigForHub, { zone: 'spandau' }));
    const line = await hubLog(/\[eu\/spandau\/retail\/pop6\] reflector: "Failed to watch"/);
    expect(line).toContain(
      `failed to list *v1alpha3.MeshRootCertificate: meshrootcertificates.config.flomesh.io is forbidden: User "${SA}" cannot list resource "meshrootcertificates" in API group "config.flomesh.io" in the namespace "fsm-system"`,
    );
    expect(await conditions('pop6')).toEqual([]);
    // a good Cluster now waits behind it (one worker, the lock held): it gets no condition either
    await apply(clusterDoc('pop7', popKubeconfigForHub, { zone: 'pankow' }));
    await hubLog(/\[eu\/spandau\/retail\/pop6\] reflector: "Failed to watch".*MeshRootCertificate/);
    expect(await conditions('pop7')).toEqual([]);
    // granting the right lets the reflector list on its next retry: both joins complete
    await popRbac.replaceNamespacedRole({
      name: HUB_ACCESS_NAME,
      namespace: 'fsm-system',
      body: { ...role, metadata: { name: role.metadata?.name, namespace: 'fsm-system' } },
    });
    await managed('pop6', (c) => c.status === 'True');
    await managed('pop7', (c) => c.status === 'True');
    for (const n of ['pop6', 'pop7']) await deleteCluster(n);
  });

  it('a reinstalled POP (new CA, new token) joins on the first try: a new kubeconfig gets a new connector and new TLS sessions', async () => {
    await pop.stop({ purge: true });
    rmSync(join(dir, 'pop-a'), { recursive: true, force: true });
    const a = await startPop('pop-a', POP_PORT);
    pop = a.server;
    popObjects = client(pop.kubeconfigPath);
    popKubeconfigForHub = a.kubeconfigForHub;
    const before = await managed('pop1', (c) => c.status === 'True');
    const next = await apply(clusterDoc('pop1', popKubeconfigForHub));
    const cond = await managed('pop1', (c) => c.observedGeneration === next.metadata?.generation);
    expect(cond.status).toBe('True');
    expect(next.metadata?.generation).toBeGreaterThan(before.observedGeneration as number);
    const popMc = (await popObjects.read({
      apiVersion: MESHCONFIG,
      kind: 'MeshConfig',
      metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' },
    })) as unknown as { spec: { clusterSet: { isManaged: boolean } } };
    expect(popMc.spec.clusterSet.isManaged).toBe(true);
  });

  it('a bad token holds the controller until the hub restarts; a restarted hub keeps its Clusters and joins again', async () => {
    const wrongToken = tokenKubeconfig(pop.innerUrl, pop.pki.caCert, 'eyJhbGciOiJIUzI1NiJ9.e30.not-a-real-signature');
    await apply(clusterDoc('pop2', wrongToken, { zone: 'mitte' }));
    expect(await hubLog(/\[eu\/mitte\/retail\/pop2\] reflector: "Failed to watch"/)).toContain('Unauthorized');
    expect(await conditions('pop2')).toEqual([]);
    await deleteCluster('pop2'); // FSM keeps the stuck connector: only a restart frees the controller
    const before = await hubObjects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop1' } });
    const oldPid = daemonPid(serverDaemonNames(hub.stateDir).server);
    await restartHub();
    expect(daemonPid(serverDaemonNames(hub.stateDir).server)).not.toBe(oldPid);
    const after = await hubObjects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop1' } });
    expect(after.metadata?.uid).toBe(before.metadata?.uid);
    // the restarted controller really joins again: a changed zone reaches the POP's MeshConfig
    await apply(clusterDoc('pop1', popKubeconfigForHub, { zone: 'potsdam' }));
    expect((await managed('pop1', (x) => x.message.includes('eu/potsdam/retail/pop1'))).status).toBe('True');
    const popMc = (await popObjects.read({
      apiVersion: MESHCONFIG,
      kind: 'MeshConfig',
      metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' },
    })) as unknown as { spec: { clusterSet: { zone: string } } };
    // the member was already managed by this hub: FSM only "rejoins" and leaves the MeshConfig as it was
    expect(popMc.spec.clusterSet.zone).toBe('berlin');
  });
});

function hubCaPem(): string {
  return readFileSync(hub.caFile, 'utf8');
}

// The bundle POPs run: Debian bookworm's nodejs (18) from the lab's cached amd64 rootfs. Debian's node loads
// builtins from /usr/share/nodejs, so it runs chrooted in a throwaway overlay of that rootfs inside a private
// mount namespace (with the test dir bound in): nothing on the host or in the cache changes.
const CACHE = '/var/cache/fsm-edge-lab';
const tree = (existsSync(CACHE) ? readdirSync(CACHE) : [])
  .filter((f) => /^rootfs-amd64-.*\.tree$/.test(f))
  .map((f) => join(CACHE, f))
  .find((t) => existsSync(join(t, 'usr/bin/node')));
const CHROOT_NODE = `set -e
T=$1; D=$2; S=$3; shift 3
mount -t tmpfs tmpfs "$D"
mkdir -p "$D/upper" "$D/work" "$D/merged"
M="$D/merged"
mount -t overlay overlay -o "lowerdir=$T,upperdir=$D/upper,workdir=$D/work" "$M"
mkdir -p "$M$S"; mount --bind "$S" "$M$S"
mount --rbind /dev "$M/dev"; mount -t proc proc "$M/proc"
exec chroot "$M" /usr/bin/node "$@"`;

describe.skipIf(!tree)('lab API server bundle on Node 18', () => {
  it('starts from the single bundled file under bookworm nodejs 18 and serves client-node', async () => {
    const root = join(dir, 'node18-root');
    mkdirSync(root);
    const node = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', CHROOT_NODE, 'sh', tree as string, root, dir];
    const srv = await startServerProcess({
      name: 'node18',
      host: '127.0.0.1',
      port: 16445,
      stateDir: join(dir, 'node18'),
      crdFiles: FSM_CRD_FILES,
      fresh: true,
      node,
    });
    try {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(srv.kubeconfigPath);
      expect((await kc.makeApiClient(k8s.VersionApi).getCode()).gitVersion).toMatch(/k3s/);
      const objs = k8s.KubernetesObjectApi.makeApiClient(kc);
      const bad = await apiFailure(
        objs.create({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'x' }, spec: {} } as k8s.KubernetesObject),
      );
      expect(bad.code).toBe(422);
      const ok = await objs.create({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 's', namespace: 'default' },
        stringData: { a: 'b' },
      } as k8s.KubernetesObject);
      expect((ok as { data: Record<string, string> }).data).toEqual({ a: 'Yg==' });
      const pid = daemonPid(serverDaemonNames(srv.stateDir).server) as number;
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]).toBe('/usr/bin/node');
      expect(readFileSync(join(srv.stateDir, 'server.log'), 'utf8')).toMatch(/"listening":"https:\/\/127\.0\.0\.1:16445","node":"v18\./);
    } finally {
      await srv.stop({ purge: true });
    }
  });
});
