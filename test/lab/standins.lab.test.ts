// The stand-ins for what cannot be downloaded here (k3s, its install.sh, the FSM chart), exercised the way the
// installer uses them: on a real systemd POP of the lab, with real containerd and real systemd.
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { popDown, popExec, popUp } from './pop.js';
import type { PopInfo } from './types.js';
import { buildK3sStandIn, K3S_STANDIN_VERSION, K3S_SYSTEM_IMAGES } from './standins/build.js';
import { buildFsmChart, fsmImagesForValues } from './standins/fsm-chart.js';
import { writeOciArchive } from './standins/oci-archive.js';
import { renderRegistries } from '../../src/install/render/k3s-config.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'standins-test-'));
let pop: PopInfo | undefined;

const sh = async (cmd: string, input?: Buffer | string) => {
  if (!pop) throw new Error('no POP');
  return popExec(pop, cmd, { allowFail: true, input, timeoutMs: 240_000 });
};
const put = async (file: string, dest: string, mode = '644') => {
  const r = await sh(
    `mkdir -p "$(dirname ${dest})" && cat > ${dest}.part && chmod ${mode} ${dest}.part && mv ${dest}.part ${dest}`,
    fs.readFileSync(file),
  );
  expect(r.code, r.stderr).toBe(0);
};
const journal = async () => (await sh('journalctl -u k3s --no-pager -o cat')).stdout;
const kubectl = async (args: string) => sh(`k3s kubectl ${args}`);
async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const FSM_VALUES = { fsm: { trafficInterceptionMode: 'NodeLevel', fsmIngress: { enabled: true } } };

beforeAll(async () => {
  await buildK3sStandIn('amd64', path.join(work, 'k3s'));
  await buildK3sStandIn('arm64', path.join(work, 'k3s-arm64'));
  buildFsmChart(work);
  const fsmImages = fsmImagesForValues(FSM_VALUES)
    .filter((i) => i.install)
    .map((i) => i.ref);
  writeOciArchive(
    path.join(work, 'good.tar'),
    [...Object.values(K3S_SYSTEM_IMAGES), ...fsmImages].map((ref) => ({ ref, archs: ['amd64'] })),
  );
  writeOciArchive(path.join(work, 'wrong-arch.tar'), [{ ref: 'flomesh/only-for-arm64:1.0', archs: ['arm64'] }]);
  pop = await popUp({ systemd: true, arch: 'amd64' });
  await put(path.join(work, 'k3s'), '/usr/local/bin/k3s', '755');
  await put(path.join(import.meta.dirname, 'standins', 'install.sh'), '/root/install.sh', '755');
}, 300_000);

afterAll(async () => {
  if (pop) await popDown(pop);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('k3s stand-in binary', () => {
  it('prints a real-looking version and refuses to run on a foreign architecture', () => {
    const v = spawnSync(path.join(work, 'k3s'), ['--version'], { encoding: 'utf8' });
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(
      new RegExp(`^k3s version ${K3S_STANDIN_VERSION.replace('+', '\\+')} \\([0-9a-f]{8}\\)\\ngo version go1\\.\\d+`),
    );
    const foreign = spawnSync(path.join(work, 'k3s-arm64'), ['--version'], { encoding: 'utf8' });
    expect(foreign.status).toBe(126);
    expect(foreign.stderr).toContain('Exec format error');
  });
});

describe('install.sh stand-in', () => {
  it('fails without INSTALL_K3S_SKIP_DOWNLOAD the way the real script fails offline, creating nothing', async () => {
    const r = await sh('INSTALL_K3S_VERSION=v1.37.1+k3s1 /root/install.sh');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[ERROR]  Download failed');
    expect(r.stdout).toContain('Downloading hash https://github.com/k3s-io/k3s/releases/download/v1.37.1+k3s1/sha256sum-amd64.txt');
    expect((await sh('test -e /etc/systemd/system/k3s.service')).code).not.toBe(0);
  });

  it('with SKIP_DOWNLOAD and SKIP_START writes the real unit, a 0600 env file, scripts and symlinks, enables but does not start', async () => {
    const r = await sh(
      "INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_START=true K3S_TOKEN_FILE=/etc/rancher/k3s/cluster-token INSTALL_K3S_EXEC='server --disable=servicelb' /root/install.sh",
    );
    expect(r.code, r.stderr).toBe(0);
    const unit = (await sh('cat /etc/systemd/system/k3s.service')).stdout;
    expect(unit).toContain('Type=notify');
    expect(unit).toContain('EnvironmentFile=-/etc/systemd/system/k3s.service.env');
    expect(unit).toContain('KillMode=process');
    expect(unit).toMatch(/ExecStart=\/usr\/local\/bin\/k3s \\\n\s+server \\\n\s+'--disable=servicelb' \\/);
    const env = await sh('stat -c %a /etc/systemd/system/k3s.service.env && cat /etc/systemd/system/k3s.service.env');
    expect(env.stdout).toContain('600\n');
    expect(env.stdout).toContain("K3S_TOKEN_FILE='/etc/rancher/k3s/cluster-token'");
    expect(
      (
        await sh('test -x /usr/local/bin/k3s-killall.sh && test -x /usr/local/bin/k3s-uninstall.sh && readlink /usr/local/bin/kubectl')
      ).stdout.trim(),
    ).toBe('k3s');
    expect((await sh('systemctl is-enabled k3s')).stdout.trim()).toBe('enabled');
    expect((await sh('systemctl is-active k3s')).stdout.trim()).toBe('inactive');
  });
});

describe('k3s stand-in under systemd', () => {
  it('refuses to start on a config value k3s cannot parse (cluster-init: maybe)', async () => {
    await sh("mkdir -p /etc/rancher/k3s && printf 'cluster-init: maybe\\n' > /etc/rancher/k3s/config.yaml");
    const bad = await sh('systemctl start k3s');
    expect(bad.code).not.toBe(0);
    expect(await journal()).toContain('invalid boolean value \\"maybe\\" for flag -cluster-init');
    await sh('systemctl stop k3s; systemctl reset-failed k3s');
  });

  it("starts (READY only when up), skips an unknown config key with k3s's warning, imports a correct archive and rejects a wrong-arch one in the journal", async () => {
    await sh('openssl rand -hex 16 > /etc/rancher/k3s/cluster-token && chmod 600 /etc/rancher/k3s/cluster-token');
    const config = {
      'write-kubeconfig-mode': '0640',
      'token-file': '/etc/rancher/k3s/cluster-token',
      'tls-san': [pop!.sshHost, pop!.labAddress],
      'node-label': ['edge.flomesh.io/site=test'],
      disable: ['traefik'],
      'not-a-k3s-flag': true,
      'disable-default-registry-endpoint': true,
    };
    await sh(`cat > /etc/rancher/k3s/config.yaml`, YAML.stringify(config));
    await sh('cat > /etc/rancher/k3s/registries.yaml', renderRegistries(['flomesh/fsm-controller:1.5.1', 'ghcr.io/x/y:1']));
    await put(path.join(work, 'good.tar'), '/var/lib/rancher/k3s/agent/images/good.tar');
    await put(path.join(work, 'wrong-arch.tar'), '/var/lib/rancher/k3s/agent/images/wrong-arch.tar');
    const start = await sh('systemctl start k3s');
    expect(start.code, start.stderr).toBe(0);
    // Type=notify: `systemctl start` returned, so READY was sent, after the stand-in said it is up
    // journald ingests the service's output asynchronously: wait until the lines have landed
    const log = await eventually(
      'journal lines',
      async () => {
        const j = await journal();
        return j.includes('k3s is up and running') && j.includes('wrong-arch.tar:') ? j : undefined;
      },
      30_000,
    );
    expect(log).toContain('Unknown flag --not-a-k3s-flag found in config.yaml, skipping');
    expect(log).toContain('Imported docker.io/rancher/mirrored-pause:3.10.2');
    expect(log).toMatch(/Error encountered while importing \/var\/lib\/rancher\/k3s\/agent\/images\/wrong-arch\.tar: .+/);
    const images = (await sh('k3s crictl images')).stdout;
    expect(images).toContain('docker.io/flomesh/fsm-controller');
    expect(images).not.toContain('only-for-arm64');
    const files = await sh('stat -c "%a %n" /etc/rancher/k3s/k3s.yaml /var/lib/rancher/k3s/server/token /etc/rancher/node/password');
    expect(files.stdout).toContain('640 /etc/rancher/k3s/k3s.yaml');
    expect(files.stdout).toContain('600 /var/lib/rancher/k3s/server/token');
    expect(files.stdout).toContain('600 /etc/rancher/node/password');
    const token = (await sh('cat /var/lib/rancher/k3s/server/token')).stdout.trim();
    const password = (await sh('cat /etc/rancher/k3s/cluster-token')).stdout.trim();
    expect(token).toMatch(new RegExp(`^K10[0-9a-f]{64}::server:${password}$`));
    // containerd's certs.d as k3s renders it from registries.yaml: only the refusing loopback mirror, no fallback
    const hosts = await sh(
      'cat /var/lib/rancher/k3s/agent/etc/containerd/certs.d/docker.io/hosts.toml /var/lib/rancher/k3s/agent/etc/containerd/certs.d/_default/hosts.toml',
    );
    expect(hosts.code, hosts.stderr).toBe(0);
    expect(hosts.stdout).toContain('[host."http://127.0.0.1:1/v2"]');
    expect(hosts.stdout).not.toMatch(/^server =/m);
    expect((await kubectl('get --raw /readyz')).stdout.trim()).toBe('ok');
    await eventually('node Ready', async () => /\bReady\b/.test((await kubectl('get nodes')).stdout) || undefined);
    await eventually(
      'coredns available',
      async () => (await kubectl('-n kube-system rollout status deploy/coredns --timeout=5s')).code === 0 || undefined,
    );
  });

  it('serves the Kubernetes API over TLS on 6443 to the client certificate in k3s.yaml, and no one else', async () => {
    const kc = YAML.parse((await sh('cat /etc/rancher/k3s/k3s.yaml')).stdout) as {
      clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
      users: Array<{ user: { 'client-certificate-data': string; 'client-key-data': string } }>;
    };
    expect(kc.clusters[0]!.cluster.server).toBe('https://127.0.0.1:6443');
    const b = (s: string) => Buffer.from(s, 'base64');
    const get = (withCert: boolean) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request(
          {
            host: pop!.sshHost,
            port: 6443,
            path: '/api/v1/nodes',
            ca: b(kc.clusters[0]!.cluster['certificate-authority-data']),
            ...(withCert ? { cert: b(kc.users[0]!.user['client-certificate-data']), key: b(kc.users[0]!.user['client-key-data']) } : {}),
          },
          (res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const ok = await eventually(
      'node listed',
      async () => {
        const r = await get(true);
        return r.status === 200 && (JSON.parse(r.body) as { items: unknown[] }).items.length > 0 ? r : undefined;
      },
      60_000,
    );
    const nodes = JSON.parse(ok.body) as { items: Array<{ metadata: { name: string; labels: Record<string, string> } }> };
    expect(nodes.items[0]!.metadata.name).toBe(pop!.name);
    expect(nodes.items[0]!.metadata.labels['kubernetes.io/arch']).toBe('amd64');
    expect(nodes.items[0]!.metadata.labels['edge.flomesh.io/site']).toBe('test');
    expect([401, 403]).toContain((await get(false)).status);
  });

  it("fails a HelmChart whose chart file is missing: helm's error in the crash-looping pod's log, klipper's line as termination message, then Job and HelmChart Failed", async () => {
    const hc = {
      apiVersion: 'helm.cattle.io/v1',
      kind: 'HelmChart',
      metadata: { name: 'nochart', namespace: 'kube-system' },
      spec: { chart: 'https://%{KUBERNETES_API}%/static/charts/nochart-1.0.0.tgz', targetNamespace: 'default', backOffLimit: 2 },
    };
    await sh('cat > /var/lib/rancher/k3s/server/manifests/nochart.yaml', YAML.stringify(hc));
    // between tries (restartPolicy OnFailure, kubelet back-off 10 s) the pod is in CrashLoopBackOff
    const last = await eventually(
      'CrashLoopBackOff',
      async () => {
        const j = (await kubectl('-n kube-system get pods -l job-name=helm-install-nochart -o json')).stdout;
        const cs = (
          JSON.parse(j || '{"items":[]}') as {
            items: Array<{
              status?: {
                containerStatuses?: Array<{
                  state: { waiting?: { reason: string } };
                  lastState?: { terminated?: { exitCode: number; message: string } };
                }>;
              };
            }>;
          }
        ).items[0]?.status?.containerStatuses?.[0];
        return cs?.state.waiting?.reason === 'CrashLoopBackOff' ? cs.lastState?.terminated : undefined;
      },
      60_000,
    );
    expect(last?.exitCode).toBe(1);
    expect(last?.message).toBe('Installing helm chart\n');
    expect((await kubectl('-n kube-system logs job/helm-install-nochart')).stdout).toContain(
      'Error: INSTALLATION FAILED: failed to fetch https://10.43.0.1:443/static/charts/nochart-1.0.0.tgz : 404 Not Found',
    );
    await eventually(
      'job failed',
      async () =>
        (await kubectl('-n kube-system wait --for=condition=Failed job/helm-install-nochart --timeout=5s')).code === 0 || undefined,
    );
    // the Job controller deleted the pod, and its log with it
    expect((await kubectl('-n kube-system logs job/helm-install-nochart')).code).not.toBe(0);
    const failed = await eventually('HelmChart Failed', async () => {
      const status = JSON.parse((await kubectl('-n kube-system get helmchart nochart -o json')).stdout) as {
        status?: { conditions?: Array<{ type: string; status: string; reason?: string; message: string }> };
      };
      return status.status?.conditions?.find((c) => c.type === 'Failed' && c.status === 'True');
    });
    expect(failed.reason).toBe('Job failed');
    expect(failed.message).toBe('Job has reached configured number of retries without succeeding');
  });

  it('installs the FSM chart stand-in through a HelmChart; fsm-xnetwork is Ready only once bpffs is mounted', async () => {
    await put(path.join(work, 'fsm-1.5.1.tgz'), '/var/lib/rancher/k3s/server/static/charts/fsm-1.5.1.tgz');
    const hc = {
      apiVersion: 'helm.cattle.io/v1',
      kind: 'HelmChart',
      metadata: { name: 'fsm', namespace: 'kube-system' },
      spec: {
        chart: 'https://%{KUBERNETES_API}%/static/charts/fsm-1.5.1.tgz',
        targetNamespace: 'fsm-system',
        createNamespace: true,
        failurePolicy: 'abort',
        valuesContent: YAML.stringify(FSM_VALUES),
      },
    };
    await sh('cat > /var/lib/rancher/k3s/server/manifests/fsm.yaml', YAML.stringify(hc));
    await eventually(
      'helm-install-fsm complete',
      async () => (await kubectl('-n kube-system wait --for=condition=Complete job/helm-install-fsm --timeout=5s')).code === 0 || undefined,
    );
    for (const d of ['fsm-controller', 'fsm-bootstrap', 'fsm-injector', 'fsm-ingress']) {
      await eventually(d, async () => (await kubectl(`-n fsm-system rollout status deploy/${d} --timeout=5s`)).code === 0 || undefined);
    }
    await eventually(
      'MeshConfig',
      async () =>
        (await kubectl('-n fsm-system get meshconfig fsm-mesh-config -o jsonpath={.spec.traffic.interceptionMode}')).stdout ===
          'NodeLevel' || undefined,
    );
    const pod = await eventually('xnetwork pod reason', async () => {
      const s = (
        await kubectl(
          '-n fsm-system get pods -l app=fsm-xnetwork -o jsonpath={.items[0].status.containerStatuses[0].state.waiting.message}',
        )
      ).stdout;
      return s || undefined;
    });
    expect(pod).toContain('bpf filesystem is not mounted at /opt/bpf');
    expect((await sh('mkdir -p /opt/bpf && mount -t bpf bpf /opt/bpf')).code).toBe(0);
    await eventually(
      'xnetwork ready',
      async () => (await kubectl('-n fsm-system rollout status ds/fsm-xnetwork --timeout=5s')).code === 0 || undefined,
    );
  });

  it("a HelmChart whose values break the chart schema fails with helm's schema error (in the pod's log)", async () => {
    const hc = {
      apiVersion: 'helm.cattle.io/v1',
      kind: 'HelmChart',
      metadata: { name: 'fsm-bad', namespace: 'kube-system' },
      spec: {
        chart: 'https://%{KUBERNETES_API}%/static/charts/fsm-1.5.1.tgz',
        targetNamespace: 'fsm-bad',
        createNamespace: true,
        backOffLimit: 2,
        valuesContent: 'fsm:\n  image:\n    pullPolicy: Sometimes\n',
      },
    };
    await sh('cat > /var/lib/rancher/k3s/server/manifests/fsm-bad.yaml', YAML.stringify(hc));
    const out = await eventually(
      'helm error in the log',
      async () => {
        const r = await kubectl('-n kube-system logs job/helm-install-fsm-bad');
        return r.stdout.includes("values don't meet the specifications of the schema(s)") ? r.stdout : undefined;
      },
      60_000,
    );
    expect(out).toContain('fsm.image.pullPolicy');
  });

  it('failurePolicy abort is sticky: after a failed release every run waits for operator intervention; deleting the HelmChart uninstalls it', async () => {
    // a pre-install hook image that is not on the node: helm waits for the hook until --timeout, the release fails
    const hc = {
      apiVersion: 'helm.cattle.io/v1',
      kind: 'HelmChart',
      metadata: { name: 'fsm-sticky', namespace: 'kube-system' },
      spec: {
        chart: 'https://%{KUBERNETES_API}%/static/charts/fsm-1.5.1.tgz',
        targetNamespace: 'fsm-sticky',
        createNamespace: true,
        failurePolicy: 'abort',
        backOffLimit: 3,
        timeout: '3s',
        valuesContent: YAML.stringify({
          ...FSM_VALUES,
          fsm: { ...FSM_VALUES.fsm, image: { name: { fsmPreinstall: 'fsm-preinstall-not-imported' } } },
        }),
      },
    };
    await sh('cat > /var/lib/rancher/k3s/server/manifests/fsm-sticky.yaml', YAML.stringify(hc));
    const hook = await eventually(
      'hook pod waits for its image',
      async () =>
        (
          await kubectl(
            '-n fsm-sticky get pods -l job-name=fsm-preinstall -o jsonpath={.items[0].status.containerStatuses[0].state.waiting.message}',
          )
        ).stdout || undefined,
      60_000,
    );
    expect(hook).toContain('dial tcp 127.0.0.1:1: connect: connection refused');
    await eventually(
      'release failed',
      async () =>
        (await kubectl('-n fsm-sticky get secret -l owner=helm,name=fsm-sticky,status=failed -o name')).stdout.trim() || undefined,
      60_000,
    );
    await eventually(
      'waiting for operator intervention',
      async () => {
        const j = (await kubectl('-n kube-system get pods -l job-name=helm-install-fsm-sticky -o json')).stdout;
        return /Release status is 'failed' and failure policy is 'abort'; waiting for operator intervention/.test(j) || undefined;
      },
      120_000,
    );
    await kubectl('-n kube-system delete helmchart fsm-sticky');
    await eventually(
      'HelmChart uninstalled and gone',
      async () => (await kubectl('-n kube-system get helmchart fsm-sticky')).code !== 0 || undefined,
      120_000,
    );
    expect((await kubectl('-n fsm-sticky get secret -l owner=helm -o name')).stdout.trim()).toBe('');
    expect((await kubectl('-n kube-system get events -o json')).stdout).toContain(
      'Uninstalled HelmChart using Job kube-system/helm-delete-fsm-sticky',
    );
  });

  it('etcd-snapshot save + cluster-reset restore bring back the state of the snapshot (embedded etcd only)', async () => {
    expect((await sh('k3s etcd-snapshot save')).stderr).toContain('etcd database not found in /var/lib/rancher/k3s/server/db');
    await sh(
      "printf 'cluster-init: true\\n' > /etc/rancher/k3s/config.yaml.d-etcd && mkdir -p /etc/rancher/k3s/config.yaml.d && mv /etc/rancher/k3s/config.yaml.d-etcd /etc/rancher/k3s/config.yaml.d/50-etcd.yaml",
    );
    expect((await sh('systemctl restart k3s')).code).toBe(0);
    expect((await sh('ls /var/lib/rancher/k3s/server/db')).stdout).toContain('state.db.migrated');
    expect(
      (await kubectl('-n default create -f /dev/stdin <<EOF\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: before-snapshot}\nEOF'))
        .code,
    ).toBe(0);
    const save = await sh('sleep 1; k3s etcd-snapshot save');
    expect(save.stderr).toMatch(/Snapshot on-demand-pop\d+-\d+ saved\./);
    const snap = (await sh('k3s etcd-snapshot ls')).stdout.split('\n')[1]!.split(/\s+/)[0]!;
    expect(
      (await kubectl('-n default create -f /dev/stdin <<EOF\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-snapshot}\nEOF')).code,
    ).toBe(0);
    expect((await sh(`k3s server --cluster-reset --cluster-reset-restore-path=${snap}`)).code).not.toBe(0); // k3s still running
    await sh('systemctl stop k3s');
    const reset = await sh(`k3s server --cluster-reset --cluster-reset-restore-path=${snap}`);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stderr).toContain('Managed etcd cluster membership has been reset, restart without --cluster-reset flag now');
    expect((await sh('systemctl start k3s')).code).toBe(0);
    const cms = (await kubectl('-n default get configmaps -o name')).stdout;
    expect(cms).toContain('configmap/before-snapshot');
    expect(cms).not.toContain('configmap/after-snapshot');
  });

  it('`systemctl kill k3s` really stops it and containerd; the restart imports the archives again', async () => {
    const before = (await journal()).split('Importing images from /var/lib/rancher/k3s/agent/images/good.tar').length;
    const pids = (await sh('systemctl show -p MainPID --value k3s; pgrep -f "^containerd -c /var/lib/rancher/k3s"')).stdout
      .trim()
      .split('\n');
    expect(pids.length).toBe(2);
    await sh('systemctl kill --signal=SIGKILL k3s');
    await eventually('old processes gone', async () => (await sh(`kill -0 ${pids.join(' ')} 2>/dev/null`)).code !== 0 || undefined, 20_000);
    await eventually(
      'restarted and re-imported',
      async () => {
        const n = (await journal()).split('Importing images from /var/lib/rancher/k3s/agent/images/good.tar').length;
        return n > before && (await sh('systemctl is-active k3s')).stdout.trim() === 'active' ? true : undefined;
      },
      60_000,
    );
  });
});
