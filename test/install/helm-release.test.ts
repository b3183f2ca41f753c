// The FSM Helm release through the k3s stand-in's helm-controller + klipper-helm + deploy controller, run in
// process against the lab API server (the same code the stand-in k3s runs on a POP), driven by the product's
// helm-release.ts / pod-health.ts through the real @kubernetes/client-node. What is substituted: the POP's
// containerd (an image list), the kubelet's log reading (the CRI log files the stand-in writes, read directly
// instead of through `k3s kubectl logs`) and `rm` on the POP (run locally).
import { execSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
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
import {
  decodeReleaseDescription,
  helmErrorFromLog,
  inspectFsmRelease,
  readRelease,
  recoverFailedRelease,
  waitForHelmJob,
  type HelmLogReader,
} from '../../src/install/helm-release.js';
import { podsBlockedOnImages, type PopKubeClients } from '../../src/install/pod-health.js';
import { renderRegistries } from '../../src/install/render/k3s-config.js';
import type { Host } from '../../src/transport/host.js';
import type { InstallContext } from '../../src/install/context.js';
import { waitForMesh, type MeshPlan } from '../../src/install/mesh.js';

const NODE = 'pop-test';
const KLIPPER = 'docker.io/rancher/klipper-helm:v0.13.1-build20260715';
const VALUES = { fsm: { trafficInterceptionMode: 'PodLevel', fsmIngress: { enabled: false } } };
const IMAGES = fsmImagesForValues(VALUES).filter((i) => i.install);
const PREINSTALL = IMAGES.find((i) => i.usedBy.includes('pre-install'))!.ref;
const CONTROLLER = IMAGES.find((i) => i.usedBy.startsWith('fsm-controller Deployment'))!.ref;

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

/** The POP as the product reaches it: `rm` runs locally, `k3s kubectl logs` reads the kubelet's files. */
const host = {
  name: 'test-pop',
  run: async (cmd: string) => execSync(cmd, { encoding: 'utf8' }),
  exec: async (cmd: string) => {
    const m = /kubectl -n kube-system logs (\S+) -c helm --tail=200( --previous)?$/.exec(cmd);
    if (!m) return { code: 127, stdout: '', stderr: `unexpected command: ${cmd}` };
    return readLog(m[1]!, { previous: Boolean(m[2]) }).then(
      (stdout) => ({ code: 0, stdout, stderr: '' }),
      (e: Error) => ({ code: 1, stdout: '', stderr: e.message }),
    );
  },
} as unknown as Host;
const meshCtx = () => ({ popKube: kube, options: { meshTimeoutMs: 90_000 } }) as unknown as InstallContext;
const MESH_PLAN = { deployments: ['fsm-bootstrap', 'fsm-controller', 'fsm-injector'] } as MeshPlan;
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

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  setDebug(false);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'helm-release-'));
  fs.mkdirSync(path.join(dir, 'server', 'static', 'charts'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'server', 'manifests'), { recursive: true });
  buildFsmChart(path.join(dir, 'server', 'static', 'charts'));
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

describe('the mesh phase wait (waitForMesh) against the stricter stand-in', () => {
  const uninstall = () =>
    recoverFailedRelease(kube, host, {
      manifestPath: manifest('fsm-edge-fsm'),
      targetNamespace: 'fsm-system',
      timeoutMs: 60_000,
      intervalMs: 300,
      readLog,
    });

  it("fails with helm's own error (read from the helm pod's log), not klipper's termination line or a timeout", async () => {
    setImages([KLIPPER, ...IMAGES.map((i) => i.ref)]);
    fs.writeFileSync(manifest('fsm-edge-fsm'), helmChart('fsm', 'fsm-system', 'fsm:\n  image:\n    pullPolicy: Sometimes\n'));
    const err = await waitForMesh(meshCtx(), host, MESH_PLAN, undefined).catch((e: Error) => e);
    expect((err as Error).message).toContain("values don't meet the specifications of the schema(s)");
    expect((err as Error).message).toContain('fsm.image.pullPolicy');
    await uninstall();
  }, 150_000);

  it('names the image a Deployment waits for within seconds, not at meshTimeout', async () => {
    setImages([KLIPPER, ...IMAGES.map((i) => i.ref).filter((r) => r !== CONTROLLER)]);
    fs.writeFileSync(manifest('fsm-edge-fsm'), helmChart('fsm', 'fsm-system', YAML.stringify(VALUES)));
    const t0 = Date.now();
    const err = await waitForMesh(meshCtx(), host, MESH_PLAN, undefined).catch((e: Error) => e);
    expect((err as Error).message).toContain(`image ${CONTROLLER}`);
    expect((err as Error).message).toContain('ImagePullBackOff');
    expect(Date.now() - t0).toBeLessThan(45_000);
    await uninstall();
  }, 150_000);
});

describe('helm-controller Jobs as k3s runs them', () => {
  it("reports helm's own error from the crash-looping pod's log, not klipper's termination line, and stops retrying", async () => {
    setImages([KLIPPER, ...IMAGES.map((i) => i.ref)]);
    fs.writeFileSync(manifest('fsm-bad'), helmChart('fsm-bad', 'fsm-bad', 'fsm:\n  image:\n    pullPolicy: Sometimes\n'));
    const t0 = Date.now();
    const err = await waitForHelmJob(kube, {
      jobName: 'helm-install-fsm-bad',
      targetNamespace: 'fsm-bad',
      release: 'fsm-bad',
      timeoutMs: 120_000,
      intervalMs: 300,
      readLog,
    }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toContain("values don't meet the specifications of the schema(s)");
    expect(msg).toContain('fsm.image.pullPolicy');
    expect(msg).not.toMatch(/timed out/);
    // the stand-in puts only klipper's status line in the termination message, as the real one does
    const hc = (await kube.custom.getNamespacedCustomObject({
      group: 'helm.cattle.io',
      version: 'v1',
      plural: 'helmcharts',
      namespace: 'kube-system',
      name: 'fsm-bad',
    })) as { status?: { conditions?: Array<{ type: string; status: string; message?: string }> } };
    const failed = hc.status?.conditions?.find((c) => c.type === 'Failed');
    if (failed?.status === 'True') expect(failed.message).toBe('Job has reached configured number of retries without succeeding');
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 150_000);

  it('names an image that is not on the POP within seconds: the helm Job completes, the pods wait', async () => {
    setImages([KLIPPER, ...IMAGES.map((i) => i.ref).filter((r) => r !== CONTROLLER)]);
    fs.writeFileSync(manifest('fsm-noimg'), helmChart('fsm-noimg', 'fsm-noimg', YAML.stringify(VALUES)));
    await waitForHelmJob(kube, {
      jobName: 'helm-install-fsm-noimg',
      targetNamespace: 'fsm-noimg',
      release: 'fsm-noimg',
      timeoutMs: 60_000,
      intervalMs: 300,
      readLog,
    });
    expect((await readRelease(kube, 'fsm-noimg', 'fsm-noimg')).state).toBe('deployed');
    const waits = await until('image wait', async () => {
      const w = await podsBlockedOnImages(kube, 'fsm-noimg');
      return w.length ? w : undefined;
    });
    expect(waits.some((w) => w.image.endsWith(CONTROLLER.replace(/^docker\.io\//, '')))).toBe(true);
    expect(waits[0]!.reason).toBe('ImagePullBackOff');
    // the pull went to the loopback endpoint registries.yaml names, never off the POP
    expect(waits[0]!.message).toContain('dial tcp 127.0.0.1:1: connect: connection refused');
  }, 90_000);

  it('a failed release is sticky with failurePolicy abort; recoverFailedRelease uninstalls it and a re-apply installs', async () => {
    setImages([KLIPPER, ...IMAGES.map((i) => i.ref).filter((r) => r !== PREINSTALL)]);
    const text = helmChart('fsm', 'fsm-system', YAML.stringify(VALUES), { timeout: '2s' });
    fs.writeFileSync(manifest('fsm-edge-fsm'), text);
    // the pre-install hook's pod waits for its image: named at once, while helm still waits for the hook
    const err = await waitForHelmJob(kube, {
      jobName: 'helm-install-fsm',
      targetNamespace: 'fsm-system',
      timeoutMs: 60_000,
      intervalMs: 300,
      readLog,
    }).catch((e: Error) => e);
    expect((err as Error).message).toContain(PREINSTALL.replace(/^docker\.io\//, ''));
    expect((err as Error).message).toMatch(/ImagePullBackOff/);
    // helm gives up on the hook after its timeout: the release is failed
    const failed = await until('release failed', async () => {
      const st = await inspectFsmRelease(kube, 'fsm-system');
      return st.state === 'failed' ? st : undefined;
    });
    expect(failed.reason).toContain('failed pre-install');
    // the cause is fixed (the image arrives), yet every later run only waits for an operator
    setImages([KLIPPER, ...IMAGES.map((i) => i.ref)]);
    const sticky = await waitForHelmJob(kube, {
      jobName: 'helm-install-fsm',
      targetNamespace: 'fsm-system',
      timeoutMs: 60_000,
      intervalMs: 300,
      readLog,
    }).catch((e: Error) => e);
    expect((sticky as Error).message).toContain('failed pre-install');
    await until('operator intervention', async () => {
      const pods = srv.store.list('v1', 'Pod', { namespace: 'kube-system', labelSelector: 'job-name=helm-install-fsm' });
      const msg = JSON.stringify(pods.map((p) => p.status));
      const job = srv.store.get('batch/v1', 'Job', 'helm-install-fsm', 'kube-system');
      return /waiting for operator intervention/.test(msg) || JSON.stringify(job?.status ?? {}).includes('BackoffLimitExceeded')
        ? true
        : undefined;
    });
    expect((await inspectFsmRelease(kube, 'fsm-system')).state).toBe('failed');

    const done = await recoverFailedRelease(kube, host, {
      manifestPath: manifest('fsm-edge-fsm'),
      targetNamespace: 'fsm-system',
      timeoutMs: 60_000,
      intervalMs: 300,
      readLog,
    });
    expect(done.join('\n')).toContain('deleted HelmChart kube-system/fsm');
    expect(done.join('\n')).toMatch(/uninstalled release fsm \(revision 1, failed: Release "fsm" failed: failed pre-install/);
    expect((await readRelease(kube, 'fsm-system', 'fsm')).state).toBe('absent');
    expect(fs.existsSync(manifest('fsm-edge-fsm'))).toBe(false);
    // the very same manifest again (k3s would skip it if its Addon still recorded that checksum)
    fs.writeFileSync(manifest('fsm-edge-fsm'), text);
    await waitForHelmJob(kube, { jobName: 'helm-install-fsm', targetNamespace: 'fsm-system', timeoutMs: 60_000, intervalMs: 300, readLog });
    expect((await inspectFsmRelease(kube, 'fsm-system')).state).toBe('deployed');
  }, 200_000);
});

describe('reading what helm left', () => {
  const enc = (b: Buffer) => Buffer.from(b.toString('base64')).toString('base64');
  it('decodes info.description of a release record, and refuses a decompression bomb or garbage', () => {
    expect(
      decodeReleaseDescription(enc(gzipSync(JSON.stringify({ info: { status: 'failed', description: 'Release "fsm" failed: x' } })))),
    ).toBe('Release "fsm" failed: x');
    // 64 MiB of valid JSON from a few KiB: bounded decompression refuses it instead of parsing it
    const bomb = gzipSync(
      Buffer.concat([Buffer.from('{"info":{"description":"bomb"},"pad":"'), Buffer.alloc(64 << 20, 0x20), Buffer.from('"}')]),
    );
    expect(bomb.length).toBeLessThan(200_000);
    expect(decodeReleaseDescription(enc(bomb))).toBeUndefined();
    expect(decodeReleaseDescription('not base64 at all %%%')).toBeUndefined();
    expect(decodeReleaseDescription(undefined)).toBeUndefined();
  });
  it("takes helm's error from a klipper-helm log without the xtrace lines", () => {
    const log =
      "+ CHART=https://10.43.0.1:443/static/charts/fsm-1.5.1.tgz\n+ echo 'Installing helm chart'\n+ helm install fsm x\nError: INSTALLATION FAILED: values don't meet the specifications\nfsm:\n- fsm.image.pullPolicy: must be one of\n";
    expect(helmErrorFromLog(log)).toBe(
      "Error: INSTALLATION FAILED: values don't meet the specifications\nfsm:\n- fsm.image.pullPolicy: must be one of",
    );
    expect(
      helmErrorFromLog("+ echo x\nRelease status is 'failed' and failure policy is 'abort'; waiting for operator intervention\n"),
    ).toContain('waiting for operator intervention');
  });
});
