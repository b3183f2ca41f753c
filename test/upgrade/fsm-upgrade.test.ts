// The FSM way back after a failed chart upgrade, through the k3s stand-in's helm-controller + klipper-helm +
// deploy controller run in process against the lab API server (as test/install/helm-release.test.ts does): FSM
// chart 1.5.1 installed, an upgrade to chart 1.5.2 whose objects the API refuses leaves the release `failed`
// (sticky under `failurePolicy: abort`), and the way-back manifest fsmRollbackPlan makes (the kept HelmChart,
// the kept chart served as previous-<file>, klipper's `retry` policy) brings the release back to `deployed` on
// chart 1.5.1 — the objects carry that chart's version again. Substituted: the POP's file copies (done here).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminKubeconfig, createPki } from '../lab/apiserver/pki.js';
import { createApiServer } from '../lab/apiserver/server.js';
import type { ApiServer } from '../lab/apiserver/types.js';
import { REFERENCE_DIR } from '../lab/reference.js';
import { ADDON_CRD } from '../lab/standins/build.js';
import { buildFsmChart, fsmImagesForValues } from '../lab/standins/fsm-chart.js';
import { AgentState } from '../lab/standins/k3s/agent-state.js';
import type { Containerd, ImageInfo } from '../lab/standins/k3s/containerd.js';
import { deployController } from '../lab/standins/k3s/addons.js';
import { helmController } from '../lab/standins/k3s/helm.js';
import { hostConfigs } from '../lab/standins/k3s/registries.js';
import { workloadController } from '../lab/standins/k3s/workloads.js';
import { setDebug } from '../lab/standins/k3s/log.js';
import { readRelease, waitForHelmJob, type HelmLogReader } from '../../src/install/helm-release.js';
import type { PopKubeClients } from '../../src/install/pod-health.js';
import { renderRegistries } from '../../src/install/render/k3s-config.js';
import { fsmRollbackPlan } from '../../src/install/mesh-rollback.js';

const NODE = 'pop-test';
const KLIPPER = 'docker.io/rancher/klipper-helm:v0.13.1-build20260715';
const VALUES = { fsm: { trafficInterceptionMode: 'PodLevel', fsmIngress: { enabled: false } } };
const IMAGES = fsmImagesForValues(VALUES).filter((i) => i.install);

let dir: string;
let srv: ApiServer;
let kube: PopKubeClients;
const images = new Map<string, ImageInfo>();
let generation = 0;
const containerd = {
  get generation() {
    return generation;
  },
  images: async () => [...images.values()],
} as unknown as Containerd;

function setImages(refs: string[]) {
  images.clear();
  for (const ref of refs) images.set(ref, { ref, digest: 'sha256:0', size: '1', platforms: 'linux/amd64', complete: true });
  generation++;
}

/** The kubelet's CRI log file of a pod's helm container, newest (or the one before). */
const readLog: HelmLogReader = async (pod, { previous }) => {
  const podDir = fs.readdirSync(path.join(dir, 'pods')).find((d) => d.startsWith(`kube-system_${pod}_`));
  if (!podDir) throw new Error(`no logs for ${pod}`);
  const files = fs
    .readdirSync(path.join(dir, 'pods', podDir, 'helm'))
    .map((f) => Number.parseInt(f, 10))
    .sort((a, b) => b - a);
  const n = files[previous ? 1 : 0];
  if (n === undefined) throw new Error('previous terminated container not found');
  return fs
    .readFileSync(path.join(dir, 'pods', podDir, 'helm', `${n}.log`), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ').slice(3).join(' '))
    .join('\n');
};

const manifest = (name: string) => path.join(dir, 'server', 'manifests', `${name}.yaml`);

function helmChart(name: string, ns: string, valuesContent: string, extra: Record<string, unknown> = {}) {
  return YAML.stringify({
    apiVersion: 'helm.cattle.io/v1',
    kind: 'HelmChart',
    metadata: { name, namespace: 'kube-system' },
    spec: {
      chart: 'https://%{KUBERNETES_API}%/static/charts/fsm-1.5.1.tgz',
      targetNamespace: ns,
      createNamespace: true,
      failurePolicy: 'abort',
      backOffLimit: 2,
      timeout: '600s',
      valuesContent,
      ...extra,
    },
  });
}

beforeAll(async () => {
  setDebug(false);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'helm-release-'));
  fs.mkdirSync(path.join(dir, 'server', 'static', 'charts'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'server', 'manifests'), { recursive: true });
  buildFsmChart(path.join(dir, 'server', 'static', 'charts'));
  buildFsmChart(path.join(dir, 'server', 'static', 'charts'), '1.5.2', { valuesFrom: '1.5.1' });
  fs.writeFileSync(path.join(dir, 'addon-crd.yaml'), ADDON_CRD);
  const pki = createPki(path.join(dir, 'pki'), ['127.0.0.1']);
  const agent = new AgentState(NODE, containerd);
  agent.ready = true;
  agent.registryHosts = hostConfigs(YAML.parse(renderRegistries(IMAGES.map((i) => i.ref))), true);
  srv = await createApiServer({
    port: 0,
    tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert },
    crdFiles: [
      path.join(REFERENCE_DIR, 'k3s/helm-controller-v0.17.7/helm.cattle.io_helmcharts.yaml'),
      path.join(REFERENCE_DIR, 'k3s/helm-controller-v0.17.7/helm.cattle.io_helmchartconfigs.yaml'),
      path.join(dir, 'addon-crd.yaml'),
    ],
    controllers: [
      deployController(dir, NODE, new Set()),
      workloadController(agent),
      helmController({ dataDir: dir, agent, jobImage: KLIPPER, podLogDir: path.join(dir, 'pods'), restartDelayMs: () => 1500 }),
    ],
  });
  for (const ns of ['kube-system', 'default'])
    if (!srv.store.get('v1', 'Namespace', ns)) srv.store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  srv.store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { 'kubernetes.io/os': 'linux' } } });
  const node = srv.store.get('v1', 'Node', NODE)!;
  srv.store.updateStatus({ ...node, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }] } });
  const kc = new k8s.KubeConfig();
  kc.loadFromString(adminKubeconfig(pki, srv.url));
  kube = {
    core: kc.makeApiClient(k8s.CoreV1Api),
    batch: kc.makeApiClient(k8s.BatchV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
  } as PopKubeClients;
}, 120_000);

afterAll(async () => {
  await srv?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const job = () => kube.batch.readNamespacedJob({ name: 'helm-install-fsm', namespace: 'kube-system' }).then((j) => j.metadata?.uid);
const wait = (previousJobUid?: string, chart?: string) =>
  waitForHelmJob(kube, {
    jobName: 'helm-install-fsm',
    targetNamespace: 'fsm-system',
    timeoutMs: 120_000,
    intervalMs: 300,
    readLog,
    ...(previousJobUid ? { previousJobUid } : {}),
    ...(chart ? { chart } : {}),
  });
const chartLabel = async () =>
  (await srv.store.get('apps/v1', 'Deployment', 'fsm-controller', 'fsm-system'))?.metadata.labels?.['app.kubernetes.io/version'];
const setFault = (msg?: string) => {
  const cm = srv.store.get('v1', 'ConfigMap', 'lab-apiserver-faults', 'kube-system');
  if (cm) srv.store.delete('v1', 'ConfigMap', 'lab-apiserver-faults', 'kube-system');
  if (msg)
    srv.store.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'lab-apiserver-faults', namespace: 'kube-system' },
      data: { 'helm-apply': msg },
    } as never);
};

describe('going back to the previous FSM chart after a failed upgrade', () => {
  it('a failed upgrade is sticky under abort; the way-back manifest (retry policy, kept chart) makes it deployed on the old chart', async () => {
    setImages([KLIPPER, ...IMAGES.map((i) => i.ref)]);
    const v1 = helmChart('fsm', 'fsm-system', YAML.stringify(VALUES));
    fs.writeFileSync(manifest('fsm-edge-fsm'), v1);
    await wait();
    expect(await chartLabel()).toBe('1.5.1');

    // The upgrade: chart 1.5.2; the API refuses one of its objects, so helm leaves the new revision failed.
    setFault('admission webhook "lab" denied the request');
    const uid1 = await job();
    const v2 = v1.replace('static/charts/fsm-1.5.1.tgz', 'static/charts/fsm-1.5.2.tgz');
    fs.writeFileSync(manifest('fsm-edge-fsm'), v2);
    const err = await wait(uid1).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/admission webhook "lab" denied the request/);
    expect((await readRelease(kube, 'fsm-system', 'fsm')).state).toBe('failed');
    setFault(undefined);

    // The way back: what the mesh phase writes (here the POP's file copies are done in place).
    const back = fsmRollbackPlan(Buffer.from(v1), sha256(v1));
    fs.copyFileSync(
      path.join(dir, 'server', 'static', 'charts', 'fsm-1.5.1.tgz'),
      path.join(dir, 'server', 'static', 'charts', back.servedAs),
    );
    const uid2 = await job();
    fs.writeFileSync(manifest('fsm-edge-fsm'), back.manifest);
    await wait(uid2, back.chartUrl);
    const rel = await readRelease(kube, 'fsm-system', 'fsm');
    expect(rel.state).toBe('deployed');
    expect(rel.revision).toBeGreaterThan(2);
    expect(await chartLabel()).toBe('1.5.1');
    expect(back.chartVersion).toBe('1.5.1');
  }, 300_000);
});
