// The lab hub (test/lab/hub.ts) in a hub namespace built like lab-hub, plus a second lab API server process
// playing a POP's k3s API (on that namespace's loopback), driven with @kubernetes/client-node from the host namespace through the
// loopback forwarders. Shows: the real Cluster CRD schema refuses bad Clusters (422); the hub really
// connects with spec.kubeconfig (a token of a least-privilege ServiceAccount on the POP) and reaches
// Managed=True with the POP's MeshConfig clusterSet set; a wrong kubeconfig, an unreachable API, a POP
// without FSM and an injected fault each give Managed=False with a clear message, and it recovers.
import * as k8s from '@kubernetes/client-node';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiFailure } from './apiserver/client-errors.js';
import { FSM_CRD_FILES, startHub, startServerProcess, type Hub, type ServerProcess } from './hub.js';

const MC = 'multicluster.flomesh.io/v1alpha1';
const MESHCONFIG = 'config.flomesh.io/v1alpha3';
const HUB_PORT = 16443; // not 6443: a lab hub started by `scripts/lab.ts up --hub` may be running
const POP_PORT = 16444;
// its own namespace, set up exactly like lab-hub: a concurrent `lab down` kills every process in lab-hub
const NETNS = 'labtest-apihub';

let dir: string;
let hub: Hub;
let pop: ServerProcess;
let hubObjects: k8s.KubernetesObjectApi;
let popObjects: k8s.KubernetesObjectApi;
let popKubeconfigForHub: string;

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

function client(kubeconfigPath: string): k8s.KubernetesObjectApi {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return k8s.KubernetesObjectApi.makeApiClient(kc);
}

function clusterDoc(name: string, kubeconfig: string, extra: Record<string, unknown> = {}): k8s.KubernetesObject {
  return { apiVersion: MC, kind: 'Cluster', metadata: { name }, spec: { fsmNamespace: 'fsm-system', gatewayHost: '10.99.0.11', gatewayPort: 8081, region: 'eu', zone: 'berlin', group: 'retail', kubeconfig, ...extra } } as k8s.KubernetesObject;
}

async function apply(obj: k8s.KubernetesObject): Promise<k8s.KubernetesObject> {
  return hubObjects.patch(obj, undefined, undefined, 'fsm-edge', true, k8s.PatchStrategy.ServerSideApply);
}

/** Wait until the Managed condition satisfies `pred` (the hub reconciles on change and every second). */
async function managed(name: string, pred: (c: Condition) => boolean): Promise<Condition> {
  let last: Condition | undefined;
  for (let i = 0; i < 150; i++) {
    const c = (await hubObjects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name } })) as { status?: { conditions?: Condition[] } };
    last = c.status?.conditions?.find((x) => x.type === 'Managed');
    if (last && pred(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Cluster ${name}: Managed condition never matched; last: ${JSON.stringify(last)}`);
}


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

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lab-hub-test-'));
  hub = await startHub({ port: HUB_PORT, stateDir: join(dir, 'hub'), fresh: true, resyncSeconds: 1, netns: NETNS });
  const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'fsm-controller', namespace: 'fsm-system', labels: { app: 'fsm-controller' } }, spec: { selector: { matchLabels: { app: 'fsm-controller' } }, template: { metadata: { labels: { app: 'fsm-controller' } }, spec: { containers: [{ name: 'fsm-controller', image: 'flomesh/fsm-controller:1.5.1' }] } } } };
  pop = await startServerProcess({
    name: 'pop-under-test',
    netns: NETNS,
    host: '127.0.0.1',
    port: POP_PORT,
    forwardHost: '127.0.0.3',
    stateDir: join(dir, 'pop'),
    crdFiles: FSM_CRD_FILES,
    fresh: true,
    seed: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'fsm-system' } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'no-fsm' } },
      deployment,
      { apiVersion: MESHCONFIG, kind: 'MeshConfig', metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' }, spec: { clusterSet: { isManaged: false, uid: 'pop-own-uid' } } },
    ],
  });
  hubObjects = client(hub.kubeconfigPath);
  popObjects = client(pop.kubeconfigPath);
  // on the POP: a ServiceAccount with only what the hub's controller needs, and a token for it (as `register` does)
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(pop.kubeconfigPath);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
  await core.createNamespacedServiceAccount({ namespace: 'fsm-system', body: { metadata: { name: 'fsm-hub' } } });
  await rbac.createClusterRole({
    body: {
      metadata: { name: 'fsm-hub' },
      rules: [
        { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list'] },
        { apiGroups: ['config.flomesh.io'], resources: ['meshconfigs'], verbs: ['get', 'list', 'patch', 'update'] },
      ],
    },
  });
  await rbac.createClusterRoleBinding({ body: { metadata: { name: 'fsm-hub' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'fsm-hub' }, subjects: [{ kind: 'ServiceAccount', name: 'fsm-hub', namespace: 'fsm-system' }] } });
  const tr = await core.createNamespacedServiceAccountToken({ name: 'fsm-hub', namespace: 'fsm-system', body: { spec: { audiences: [], expirationSeconds: 86400 } } });
  // the server as the hub sees it: the POP API inside the hub's namespace
  popKubeconfigForHub = tokenKubeconfig(pop.innerUrl, pop.pki.caCert, tr.status?.token as string);
});

afterAll(async () => {
  await pop?.stop({ purge: true });
  await hub?.stop(); // also removes the namespace it created
  expect(existsSync(`/run/netns/${NETNS}`)).toBe(false);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('lab hub: FSM multicluster join', () => {
  it('runs in its namespace on 10.99.0.1 and answers from the host through the forwarder', () => {
    expect(hub.labUrl).toBe(`https://10.99.0.1:${HUB_PORT}`);
    expect(hub.url).toBe(`https://127.0.0.2:${HUB_PORT}`);
    const pid = Number(readFileSync(join(hub.stateDir, 'server.pid'), 'utf8'));
    // the server process lives in the hub network namespace, not the host's
    expect(readFileSync(`/proc/${pid}/net/fib_trie`, 'utf8')).toContain('10.99.0.1');
    expect(readFileSync('/proc/self/net/fib_trie', 'utf8')).not.toContain('10.99.0.1');
  });

  it('refuses a Cluster that violates the real CRD schema with 422 and causes, accepts a valid one', async () => {
    const bad = await apiFailure(hubObjects.create({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'broken' }, spec: { gatewayHost: '10.99.0.12', gatewayPort: 99999, kubeconfig: 'x' } } as k8s.KubernetesObject));
    expect(bad.code).toBe(422);
    expect(bad.body.details?.causes).toEqual([
      { reason: 'FieldValueRequired', message: 'Required value', field: 'spec.fsmNamespace' },
      { reason: 'FieldValueInvalid', message: 'Invalid value: 99999: spec.gatewayPort in body should be less than or equal to 65535', field: 'spec.gatewayPort' },
    ]);
    const loop = await apiFailure(hubObjects.create(clusterDoc('loopback-gw', popKubeconfigForHub, { gatewayHost: '127.0.0.1' })));
    expect(loop.code).toBe(400);
    expect(loop.body.message).toContain('loopback');
    const ok = await hubObjects.create(clusterDoc('pop1', popKubeconfigForHub));
    expect((ok as { spec: { fsmMeshConfigName: string } }).spec.fsmMeshConfigName).toBe('fsm-mesh-config');
  });

  it('really connects to the POP API and reaches Managed=True; the POP MeshConfig is managed by this hub', async () => {
    const cond = await managed('pop1', (c) => c.status === 'True');
    expect(cond).toMatchObject({ reason: 'Success', message: 'Cluster eu/berlin/retail/pop1 joined ClusterSet successfully.' });
    const hubMc = (await hubObjects.read({ apiVersion: MESHCONFIG, kind: 'MeshConfig', metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' } })) as { spec: { clusterSet: { uid: string } } };
    const popMc = (await popObjects.read({ apiVersion: MESHCONFIG, kind: 'MeshConfig', metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' } })) as k8s.KubernetesObject & { spec: { clusterSet: Record<string, unknown> } };
    expect(popMc.spec.clusterSet).toMatchObject({ isManaged: true, controlPlaneUID: hubMc.spec.clusterSet.uid, region: 'eu', zone: 'berlin', group: 'retail', name: 'pop1', uid: 'pop-own-uid' });
    // the POP records the write under the hub controller's user agent, like kube-apiserver does
    expect(popMc.metadata?.managedFields?.map((m) => m.manager)).toContain('fsm-controller');
    // the installer's server-side apply takes (shared) ownership once; re-applying then changes nothing
    const first = await apply(clusterDoc('pop1', popKubeconfigForHub));
    expect(first.metadata?.managedFields?.map((m) => m.manager)).toContain('fsm-edge');
    const again = await apply(clusterDoc('pop1', popKubeconfigForHub));
    expect(again.metadata?.resourceVersion).toBe(first.metadata?.resourceVersion);
  });

  it('a wrong kubeconfig gives Managed=False with the reason, and fixing it recovers', async () => {
    const wrongToken = tokenKubeconfig(pop.innerUrl, pop.pki.caCert, 'eyJhbGciOiJIUzI1NiJ9.e30.not-a-real-signature');
    await apply(clusterDoc('pop2', wrongToken));
    const c = await managed('pop2', (x) => x.status === 'False');
    expect(c.reason).toBe('Failed');
    expect(c.message).toBe(`Cluster eu/berlin/retail/pop2 failed to join ClusterSet: the cluster API at ${pop.innerUrl} rejected the kubeconfig's credentials (401 Unauthorized) while reading the server version.`);
    await apply(clusterDoc('pop2', 'this is: [not a kubeconfig'));
    expect((await managed('pop2', (x) => x.message.includes('invalid kubeconfig'))).message).toContain('failed to join ClusterSet: invalid kubeconfig: kubeconfig is not valid YAML');
    await apply(clusterDoc('pop2', tokenKubeconfig(pop.innerUrl, hubCaPem(), 'x')));
    expect((await managed('pop2', (x) => x.message.includes('TLS'))).message).toContain(`TLS verification of the cluster API at ${pop.innerUrl} failed`);
    await apply(clusterDoc('pop2', popKubeconfigForHub));
    expect((await managed('pop2', (x) => x.status === 'True')).reason).toBe('Success');
  });

  it('the join uses the ServiceAccount token: revoking its RBAC binding on the POP fails the join with 403', async () => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(pop.kubeconfigPath);
    const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.deleteClusterRoleBinding({ name: 'fsm-hub' });
    try {
      await apply(clusterDoc('pop5', popKubeconfigForHub));
      const c = await managed('pop5', (x) => x.status === 'False');
      expect(c.message).toContain(`the kubeconfig's user is not allowed to do this (getting Deployment fsm-controller in namespace fsm-system)`);
      expect(c.message).toContain('User "system:serviceaccount:fsm-system:fsm-hub" cannot get resource "deployments"');
    } finally {
      await rbac.createClusterRoleBinding({ body: { metadata: { name: 'fsm-hub' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'fsm-hub' }, subjects: [{ kind: 'ServiceAccount', name: 'fsm-hub', namespace: 'fsm-system' }] } });
    }
    await managed('pop5', (x) => x.status === 'True');
  });

  it('an unreachable API and a POP without FSM give Managed=False with clear messages', async () => {
    await apply(clusterDoc('pop3', popKubeconfigForHub.replace(`:${POP_PORT}`, ':1')));
    expect((await managed('pop3', (x) => x.status === 'False')).message).toBe(`Cluster eu/berlin/retail/pop3 failed to join ClusterSet: cannot connect to the cluster API at https://127.0.0.1:1: connection refused (is k3s running and listening there?).`);
    await apply(clusterDoc('pop4', popKubeconfigForHub, { fsmNamespace: 'no-fsm' }));
    expect((await managed('pop4', (x) => x.status === 'False')).message).toContain('FSM Control Plane is not installed or not running in namespace no-fsm');
  });

  it('every simulated controller can fail: an injected fault turns Managed=False until removed', async () => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(hub.kubeconfigPath);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: 'kube-system', body: { metadata: { name: 'lab-apiserver-faults' }, data: { cluster: 'simulated hub outage' } } });
    expect((await managed('pop1', (x) => x.status === 'False')).message).toBe('Cluster eu/berlin/retail/pop1 failed to join ClusterSet: simulated hub outage.');
    await core.deleteNamespacedConfigMap({ name: 'lab-apiserver-faults', namespace: 'kube-system' });
    await managed('pop1', (x) => x.status === 'True');
  });

  it('a restarted hub keeps its Clusters and their state', async () => {
    // the other Clusters of this file point at the same member MeshConfig: leave pop1 its only manager
    for (const n of ['pop2', 'pop3', 'pop4', 'pop5']) await hubObjects.delete({ apiVersion: MC, kind: 'Cluster', metadata: { name: n } });
    const before = await hubObjects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop1' } });
    const oldPid = readFileSync(join(hub.stateDir, 'server.pid'), 'utf8');
    await hub.stop({ keepNetns: true }); // the POP server lives in the same namespace
    hub = await startHub({ port: HUB_PORT, stateDir: join(dir, 'hub'), resyncSeconds: 1, netns: NETNS });
    expect(readFileSync(join(hub.stateDir, 'server.pid'), 'utf8')).not.toBe(oldPid);
    hubObjects = client(hub.kubeconfigPath);
    const after = await hubObjects.read({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'pop1' } });
    expect(after.metadata?.uid).toBe(before.metadata?.uid);
    // the restarted controller really joins again: a changed zone reaches the POP's MeshConfig
    await apply(clusterDoc('pop1', popKubeconfigForHub, { zone: 'potsdam' }));
    expect((await managed('pop1', (x) => x.message.includes('eu/potsdam/retail/pop1'))).status).toBe('True');
    const popMc = (await popObjects.read({ apiVersion: MESHCONFIG, kind: 'MeshConfig', metadata: { name: 'fsm-mesh-config', namespace: 'fsm-system' } })) as unknown as { spec: { clusterSet: { zone: string } } };
    expect(popMc.spec.clusterSet.zone).toBe('potsdam');
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
    const srv = await startServerProcess({ name: 'node18', host: '127.0.0.1', port: 16445, stateDir: join(dir, 'node18'), crdFiles: FSM_CRD_FILES, fresh: true, node });
    try {
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(srv.kubeconfigPath);
      expect((await kc.makeApiClient(k8s.VersionApi).getCode()).gitVersion).toMatch(/k3s/);
      const objs = k8s.KubernetesObjectApi.makeApiClient(kc);
      const bad = await apiFailure(objs.create({ apiVersion: MC, kind: 'Cluster', metadata: { name: 'x' }, spec: {} } as k8s.KubernetesObject));
      expect(bad.code).toBe(422);
      const ok = await objs.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'default' }, stringData: { a: 'b' } } as k8s.KubernetesObject);
      expect((ok as { data: Record<string, string> }).data).toEqual({ a: 'Yg==' });
      const pid = Number(readFileSync(join(srv.stateDir, 'server.pid'), 'utf8'));
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]).toBe('/usr/bin/node');
      expect(readFileSync(join(srv.stateDir, 'server.log'), 'utf8')).toMatch(/"listening":"https:\/\/127\.0\.0\.1:16445","node":"v18\./);
    } finally {
      await srv.stop({ purge: true });
    }
  });
});
