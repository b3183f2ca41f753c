// The apply logic of every install phase against a recording Host: for a given live state (the probe sections a
// POP would print), what each phase plans, and that applying runs exactly those changes — the remote commands
// it sends, batched as the engine sends them. Then the agreement test: a dry run and a real run of the same
// phase on the same live state list the same changes, in the same order, for every phase and state.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApiException } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import type { BundleDoc } from '../../src/bundle/format.js';
import { loadSites } from '../../src/config/index.js';
import type { AnyPhase, PhaseEnv } from '../../src/engine/phase.js';
import { FSM_MANIFEST_PATH, K3S_CONFIG_PATH, K3S_REGISTRIES_PATH, K3S_TOKEN_PATH, POP_ASSEMBLE_PLAN } from '../../src/engine/pop-layout.js';
import { applyChanges, runPhases } from '../../src/engine/runner.js';
import type { InstallContext } from '../../src/install/context.js';
import { DEFAULT_TIMEOUTS } from '../../src/install/context.js';
import { describeFacts, parseFacts } from '../../src/install/facts.js';
import { interceptionPhase } from '../../src/install/interception.js';
import { K3S_PROBE, type K3sFiles, k3sPhase } from '../../src/install/k3s.js';
import { type MeshPlan, meshPhase } from '../../src/install/mesh.js';
import { recordPhase, TOKEN_SECRET } from '../../src/install/record.js';
import { syncPhase } from '../../src/install/sync.js';
import type { SiteSecrets } from '../../src/state/secrets.js';
import { RecordingHost } from '../engine/recording-host.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'fsm-edge-phases-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

const FACTS_OK = `machine=x86_64\nkernel=6.1.0\nos_id=debian\nos_version=12\nos_pretty=Debian 12\nhostname=pop1\ninit=systemd\ncpus=2\nmem_kb=4000000\ndisk_free_kb=20000000\ndefault_route=eth0\ncgroup2=1\nbtf=1\nbpffs=/sys/fs/bpf\nbpf_syscall=1\niptables=1`;

function doc(): BundleDoc {
  const file = (role: string, name: string, n: number, size: number) => ({ role, name, digest: digest(n), size, url: '' });
  return {
    kind: 'FsmEdgeBundle',
    schemaVersion: 1,
    name: 'test',
    versions: { k3s: 'v1.31.4+k3s1', fsm: '1.5.1', pipy: '1.5.12', chart: '1.5.1' },
    recipe: {},
    index: { digest: digest(99), size: 10 },
    arches: {
      amd64: {
        features: ['core'],
        files: [file('k3s-binary', 'k3s', 1, 1000), file('pop-script', 'assemble.sh', 2, 200), file('fsm-chart', 'fsm-1.5.1.tgz', 3, 300)],
        images: [],
        totals: { blobs: 3, bytes: 1500 },
      },
    },
    totals: { blobs: 3, bytes: 1500 },
  } as unknown as BundleDoc;
}

function context(extra: Partial<InstallContext> = {}): InstallContext {
  const file = path.join(tmp, `site-${Math.random().toString(16).slice(2)}.yaml`);
  writeFileSync(
    file,
    `apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop1 }\nspec:\n  ssh: { host: 127.0.0.9, user: root, agent: true, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }\n`,
  );
  const site = loadSites([file]).sites[0]!;
  const d = doc();
  return {
    site,
    configDir: tmp,
    bundle: { dir: path.join(tmp, 'bundle'), doc: d, digest: digest(7), signer: 'test-key', verifyArch: async () => {} },
    options: { ...DEFAULT_TIMEOUTS, dryRun: false, stateDir: path.join(tmp, `state-${Math.random().toString(16).slice(2)}`) },
    facts: parseFacts(FACTS_OK),
    decisions: { arch: 'amd64', content: d.arches.amd64!, interception: 'ebpf', interceptionReason: 'eBPF (auto)' },
    metrics: {},
    installed: {},
    ...extra,
  };
}

const env = (host: RecordingHost, probe: string, dryRun = false): PhaseEnv => ({
  host,
  dryRun,
  signal: new AbortController().signal,
  probe,
});

/** What a phase plans on this live state, and what applying it does on a recording host. */
async function planAndApply<P, L>(
  phase: AnyPhase<InstallContext>,
  ctx: InstallContext,
  prep: P,
  probe: string,
  host = new RecordingHost(),
) {
  const e = env(host, probe);
  const live: L = await phase.check(ctx, prep, e);
  const planned = phase.plan(ctx, prep, live, e);
  const applied: string[] = [];
  await applyChanges(host, planned, e.signal, applied);
  return { planned: planned.map((c) => c.description), applied, host, live };
}

const K3S_FILES: K3sFiles = {
  config: 'node-name: pop1\n',
  registries: 'mirrors: {}\n',
  plan: 'file k3s\n',
  scriptDigest: digest(2),
  assembleOutputs: 4,
};

function k3sProbe(o: { config?: string; registries?: string; plan?: string; token?: boolean; unit?: boolean; active?: boolean }): string {
  const line = (p: string, c?: string) => `sha ${p} ${c === undefined ? '-' : sha(c)}`;
  return [
    line(K3S_CONFIG_PATH, o.config),
    line(K3S_REGISTRIES_PATH, o.registries),
    line(POP_ASSEMBLE_PLAN, o.plan),
    `token=${o.token ? 1 : 0}`,
    `unit=${o.unit ? 1 : 0}`,
    `active=${o.active ? 'active' : 'inactive'}`,
  ].join('\n');
}
const installedK3s = {
  config: K3S_FILES.config,
  registries: K3S_FILES.registries,
  plan: K3S_FILES.plan,
  token: true,
  unit: true,
  active: true,
};
const healthyFacts = parseFacts(`${FACTS_OK}\nk3s_version=k3s version v1.31.4+k3s1 (abc)\nk3s_active=active\nk3s_ready=ok\nk3s_ours=1`);

describe('k3s phase', () => {
  it('on a fresh POP: token, files, assembly, install.sh and start, all in one remote command', async () => {
    const r = await planAndApply(k3sPhase, context(), K3S_FILES, k3sProbe({}));
    expect(r.planned).toEqual([
      'generate the k3s cluster token (kept on the POP, mode 0600)',
      `write ${K3S_CONFIG_PATH}`,
      `write ${K3S_REGISTRIES_PATH}`,
      `write the assembly plan ${POP_ASSEMBLE_PLAN}`,
      'assemble the k3s binary, install.sh, the FSM chart and 4 outputs from the blob store',
      'run install.sh (INSTALL_K3S_SKIP_DOWNLOAD=true, INSTALL_K3S_SKIP_START=true)',
      'start k3s',
    ]);
    expect(r.applied).toEqual(r.planned);
    expect(r.host.commands()).toEqual(['sh -s']);
    expect(r.host.files.get(K3S_CONFIG_PATH)?.toString()).toBe(K3S_FILES.config);
    expect(r.host.files.get(POP_ASSEMBLE_PLAN)?.toString()).toBe(K3S_FILES.plan);
    // The token is made on the POP, never sent: no token bytes in what crossed the link.
    expect(r.host.changes[0]).toMatch(/dev\/urandom/);
    expect(r.host.calls.every((c) => !c.stdin?.includes('K10'))).toBe(true);
    expect(r.host.changes.at(-1)).toMatch(/timeout 300 systemctl restart k3s/);
  });

  it('changes nothing on a healthy POP with the same files', async () => {
    const r = await planAndApply(k3sPhase, context({ facts: healthyFacts }), K3S_FILES, k3sProbe(installedK3s));
    expect(r.planned).toEqual([]);
    expect(r.host.calls).toEqual([]);
  });

  it('rewrites only a changed config.yaml, then restarts', async () => {
    const r = await planAndApply(
      k3sPhase,
      context({ facts: healthyFacts }),
      K3S_FILES,
      k3sProbe({ ...installedK3s, config: 'node-name: old\n' }),
    );
    expect(r.planned).toEqual([`write ${K3S_CONFIG_PATH}`, 'restart k3s']);
  });

  const busyFacts = (ready = 'timeout', extra = '') =>
    parseFacts(`${FACTS_OK}\nk3s_version=k3s version v1.31.4+k3s1 (abc)\nk3s_active=active\nk3s_ready=${ready}\nk3s_ours=1${extra}`);
  const recheck = /timeout 60 \/usr\/local\/bin\/k3s kubectl get --raw \/readyz/;

  it('a running k3s of this bundle whose /readyz timed out in the probe is asked again, longer; a late ok leaves it alone', async () => {
    const busy = busyFacts();
    expect(busy.k3s).toMatchObject({ ready: false, readyTimedOut: true });
    expect(describeFacts(busy)).toMatch(/k3s v1\.31\.4\+k3s1 \(\/readyz did not answer within 10s\)/);
    const host = new RecordingHost();
    host.answers.push({ match: recheck, stdout: 'k3s_ready=ok\n' });
    const ctx = context({ facts: busy });
    const r = await planAndApply(k3sPhase, ctx, K3S_FILES, k3sProbe(installedK3s), host);
    expect(r.planned).toEqual([]);
    expect(host.calls.filter((c) => recheck.test(c.command ?? ''))).toEqual([
      expect.objectContaining({ kind: 'exec', sudo: true, timeoutMs: 75_000 }),
    ]);
    expect(k3sPhase.describe!(ctx, K3S_FILES, r.live, [], true).summary).toBe(
      'k3s v1.31.4+k3s1 installed and unchanged, ready (slow to answer /readyz)',
    );
  });

  it('a k3s that answered "not ready" in time, or is not ours, or not running, is not asked again', async () => {
    for (const facts of [
      busyFacts('[-]etcd failed'),
      parseFacts(`${FACTS_OK}\nk3s_version=k3s version v1.31.4+k3s1 (abc)\nk3s_active=active\nk3s_ready=timeout\nk3s_ours=0`),
      parseFacts(`${FACTS_OK}\nk3s_version=k3s version v1.31.4+k3s1 (abc)\nk3s_active=failed\nk3s_ready=timeout\nk3s_ours=1`),
      parseFacts(`${FACTS_OK}\nk3s_version=k3s version v1.30.0+k3s1 (abc)\nk3s_active=active\nk3s_ready=timeout\nk3s_ours=1`),
    ]) {
      const host = new RecordingHost();
      host.answers.push({ match: recheck, stdout: 'k3s_ready=ok\n' });
      const ctx = context({ facts });
      const e = env(host, k3sProbe(installedK3s), true);
      const planned = k3sPhase.plan(ctx, K3S_FILES, await k3sPhase.check(ctx, K3S_FILES, e), e);
      expect(host.commands().filter((c) => recheck.test(c))).toEqual([]);
      expect(planned.length).toBeGreaterThan(0);
    }
  });

  it('a running k3s of this bundle whose /readyz timed out twice (a busy POP) is waited for, not reassembled or restarted', async () => {
    const busy = busyFacts();
    const host = new RecordingHost();
    host.answers.push({ match: recheck, stdout: 'k3s_ready=timeout\n' });
    const r = await planAndApply(k3sPhase, context({ facts: busy }), K3S_FILES, k3sProbe(installedK3s), host);
    expect(host.commands().filter((c) => recheck.test(c))).toHaveLength(1);
    expect(r.planned).toEqual(['wait for the running k3s to answer /readyz (restart it only if it does not within 120s)']);
    // the restart comes only after the wait loop gave up
    const script = r.host.changes[0] ?? '';
    expect(script.indexOf('/readyz')).toBeLessThan(script.indexOf('systemctl restart k3s'));
    expect(execFileSync('sh', ['-n'], { input: script }).toString()).toBe('');
  });

  it('reinstalls k3s removed by hand (unit gone, k3s not running)', async () => {
    const r = await planAndApply(k3sPhase, context(), K3S_FILES, k3sProbe({ ...installedK3s, unit: false, active: false }));
    expect(r.planned).toEqual([
      'assemble the k3s binary, install.sh, the FSM chart and 4 outputs from the blob store',
      'run install.sh (INSTALL_K3S_SKIP_DOWNLOAD=true, INSTALL_K3S_SKIP_START=true)',
      'start k3s',
    ]);
  });

  it('a failed start stops the batch, keeps what was applied and names the fix', async () => {
    const host = new RecordingHost();
    host.failChange = {
      match: /systemctl restart k3s/,
      code: 124,
      stderr: 'k3s did not start within 300s\nlast k3s log lines:\nlevel=fatal msg="bad config"',
    };
    const ctx = context();
    const e = env(host, k3sProbe({}));
    const planned = k3sPhase.plan(ctx, K3S_FILES, await k3sPhase.check(ctx, K3S_FILES, e), e);
    const applied: string[] = [];
    await expect(applyChanges(host, planned, e.signal, applied)).rejects.toThrow(
      /start k3s: failed \(exit 124\)[\s\S]*bad config[\s\S]*fix: look at `journalctl -u k3s`/,
    );
    expect(applied).toHaveLength(6);
  });
});

function meshPrep(manifest = 'apiVersion: helm.cattle.io/v1\nkind: HelmChart\n'): MeshPlan & { validated: number } {
  const p = {
    validated: 0,
    async validate() {
      p.validated++;
    },
    chart: { name: 'fsm', version: '1.5.1' },
    chartFile: 'fsm-1.5.1.tgz',
    values: { values: {}, warnings: [], trafficInterceptionMode: 'NodeLevel' },
    manifest,
    deployments: ['fsm-bootstrap', 'fsm-controller', 'fsm-injector'],
  };
  return p as unknown as MeshPlan & { validated: number };
}
const healthyMesh = (m: string) =>
  `manifest ${sha(m)}\napi\ndeployment fsm-bootstrap 1/1\ndeployment fsm-controller 1/1\ndeployment fsm-injector 1/1\nhelmchart False`;

/** The POP's API as far as reading a helm release goes: the release secret's status label, and no Job. */
function releaseApi(status: 'deployed' | 'failed') {
  const notFound = new ApiException(404, 'Not Found', {}, {});
  return {
    core: {
      listNamespacedSecret: async () => ({
        items: [{ type: 'helm.sh/release.v1', metadata: { labels: { version: '1', status } }, data: {} }],
      }),
    },
    batch: { readNamespacedJob: async () => Promise.reject(notFound) },
    close: async () => {},
  } as unknown as InstallContext['popKube'];
}

describe('mesh phase', () => {
  it('writes the HelmChart manifest when it differs, after validating the values', async () => {
    const prep = meshPrep();
    const r = await planAndApply(meshPhase, context(), prep, '');
    expect(r.planned).toEqual([`write HelmChart kube-system/fsm (fsm-1.5.1.tgz, NodeLevel) to ${FSM_MANIFEST_PATH}`]);
    expect(prep.validated).toBe(1);
    expect(r.host.files.get(FSM_MANIFEST_PATH)?.toString()).toBe(prep.manifest);
    expect(r.host.calls.map((c) => c.kind)).toEqual(['write']);
  });

  it('changes nothing when the manifest is current and FSM is healthy', async () => {
    const prep = meshPrep();
    const r = await planAndApply(meshPhase, context(), prep, healthyMesh(prep.manifest));
    expect(r.planned).toEqual([]);
    expect(meshPhase.healthy!(r.live)).toBe(true);
  });

  it('notices FSM deleted by hand although the manifest is unchanged, and plans to apply the HelmChart again', async () => {
    const prep = meshPrep();
    const host = new RecordingHost();
    const ctx = context();
    const e = env(host, `manifest ${sha(prep.manifest)}\napi`);
    const live = await meshPhase.check(ctx, prep, e);
    expect(meshPhase.healthy!(live)).toBe(false);
    expect(meshPhase.plan(ctx, prep, live, e).map((c) => c.description)).toEqual([
      'apply HelmChart kube-system/fsm again (it was deleted; FSM: fsm-bootstrap missing, fsm-controller missing, fsm-injector missing)',
    ]);
  });

  it('waits (settles) rather than changing anything while deployments are merely not ready', async () => {
    const prep = meshPrep();
    const probe = healthyMesh(prep.manifest).replace('fsm-controller 1/1', 'fsm-controller 0/1');
    const r = await planAndApply(meshPhase, context({ popKube: releaseApi('deployed') }), prep, probe);
    expect(r.planned).toEqual([]);
    expect(meshPhase.healthy!(r.live)).toBe(false);
  });

  it('concludes nothing when the API did not answer the probe (k3s restarting): no reinstall, only a wait', async () => {
    const prep = meshPrep();
    const r = await planAndApply(meshPhase, context(), prep, `manifest ${sha(prep.manifest)}`);
    expect(r.planned).toEqual([]);
    expect(meshPhase.healthy!(r.live)).toBe(false);
  });

  it('a failed release (sticky under failurePolicy abort) is uninstalled first, then the manifest is written anew', async () => {
    const prep = meshPrep();
    const probe = healthyMesh(prep.manifest).replace('helmchart False', 'helmchart True');
    const ctx = context({ popKube: releaseApi('failed') });
    const host = new RecordingHost();
    const e = env(host, probe);
    const live = await meshPhase.check(ctx, prep, e);
    expect(meshPhase.plan(ctx, prep, live, e).map((c) => c.description)).toEqual([
      'uninstall the failed FSM release (release fsm is failed) so it can be installed again',
      `write HelmChart kube-system/fsm (fsm-1.5.1.tgz, NodeLevel) to ${FSM_MANIFEST_PATH}`,
    ]);
  });
});

describe('interception phase', () => {
  const prep = { mode: 'NodeLevel', daemonSet: 'fsm-xnetwork' };
  it('prepares bpffs on /opt/bpf (mount, fstab) in one shell change', async () => {
    const r = await planAndApply(interceptionPhase, context(), prep, 'loadable sch_ingress');
    expect(r.planned).toEqual([
      'prepare the host for NodeLevel interception (/opt/bpf, bpffs on /opt/bpf, /opt/bpf in /etc/fstab, module sch_ingress)',
    ]);
    expect(r.host.changes[0]).toMatch(/mount -t bpf bpf \/opt\/bpf/);
    expect(r.host.changes[0]).toMatch(/\/etc\/fstab/);
  });

  it('changes nothing when the host is prepared; unready DaemonSet means wait, not change', async () => {
    const ready = 'dir /opt/bpf\nmount /opt/bpf\nfstab /opt/bpf\nmodule sch_ingress\ndaemonset fsm-xnetwork 1 1';
    const r = await planAndApply(interceptionPhase, context(), prep, ready);
    expect(r.planned).toEqual([]);
    expect(interceptionPhase.healthy!(r.live)).toBe(true);
    const notReady = await planAndApply(interceptionPhase, context(), prep, ready.replace('1 1', '1 0'));
    expect(notReady.planned).toEqual([]);
    expect(interceptionPhase.healthy!(notReady.live)).toBe(false);
  });

  it('does not plan a module it cannot load (a container without /lib/modules)', async () => {
    const r = await planAndApply(interceptionPhase, context(), { mode: 'PodLevel' }, '');
    expect(r.planned).toEqual([]);
  });
});

describe('sync phase', () => {
  it('sends the blobs that are missing or stored with the wrong size (a short or empty blob is sent again)', async () => {
    const hex = (n: number) => digest(n).slice(7);
    const r = await planAndApply(syncPhase, context(), undefined, `${hex(1)} 1000\n${hex(2)} 0`);
    expect(r.planned).toEqual(['send 2 of 3 blobs (500 B) to /var/lib/fsm-edge/store']);
    expect(r.host.synced[0]!.map((w) => w.digest)).toEqual([digest(2), digest(3), digest(1)]);
  });

  it('sends nothing when every blob is stored with its size', async () => {
    const hex = (n: number) => digest(n).slice(7);
    const r = await planAndApply(syncPhase, context(), undefined, `${hex(1)} 1000\n${hex(2)} 200\n${hex(3)} 300`);
    expect(r.planned).toEqual([]);
    expect(r.host.calls).toEqual([]);
  });

  it('refuses before sending anything when the bundle fails verification for this arch', async () => {
    const { VerifyError } = await import('../../src/bundle/verify.js');
    const ctx = context();
    ctx.bundle = {
      ...ctx.bundle!,
      verifyArch: async () => Promise.reject(new VerifyError('blobs/sha256/01', 'content hashes to sha256:ff — the file is corrupt', 'b')),
    };
    const host = new RecordingHost();
    await expect(syncPhase.check(ctx, undefined, env(host, ''))).rejects.toThrow(/failed verification: blobs\/sha256\/01/);
    expect(host.calls).toEqual([]);
  });
});

describe('record phase', () => {
  it('escrows the k3s token once, encrypted, reading it from the POP', async () => {
    const ctx = context();
    const prep = recordPhase.prepare!(ctx, env(new RecordingHost(), '')) as { secrets: SiteSecrets };
    const host = new RecordingHost();
    host.files.set(K3S_TOKEN_PATH, Buffer.from('K10secret-token\n'));
    const e = env(host, '');
    const planned = recordPhase.plan(ctx, prep, await recordPhase.check(ctx, prep, e), e);
    expect(planned.map((c) => c.description)).toEqual(['escrow the k3s token in the controller’s encrypted state']);
    await applyChanges(host, planned, e.signal, []);
    expect(prep.secrets.get(TOKEN_SECRET)).toBe('K10secret-token');
    expect(recordPhase.plan(ctx, prep, await recordPhase.check(ctx, prep, e), e)).toEqual([]);
  });
});

describe('dry run and apply agree', () => {
  const cases: Array<{ name: string; phase: AnyPhase<InstallContext>; ctx: () => InstallContext; probe: string; prep?: () => unknown }> = [
    { name: 'k3s fresh', phase: k3sPhase, ctx: context, probe: k3sProbe({}), prep: () => K3S_FILES },
    {
      name: 'k3s config changed',
      phase: k3sPhase,
      ctx: () => context({ facts: healthyFacts }),
      probe: k3sProbe({ ...installedK3s, config: 'x\n' }),
      prep: () => K3S_FILES,
    },
    {
      name: 'k3s healthy',
      phase: k3sPhase,
      ctx: () => context({ facts: healthyFacts }),
      probe: k3sProbe(installedK3s),
      prep: () => K3S_FILES,
    },
    { name: 'mesh fresh', phase: meshPhase, ctx: context, probe: '', prep: () => meshPrep() },
    {
      name: 'interception fresh',
      phase: interceptionPhase,
      ctx: context,
      probe: '',
      prep: () => ({ mode: 'NodeLevel', daemonSet: 'fsm-xnetwork' }),
    },
    { name: 'sync partial', phase: syncPhase, ctx: context, probe: `${digest(1).slice(7)} 1000` },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      // The phase as the runner sees it, with prepare pinned to the fixture (rendering needs a real chart).
      const phase: AnyPhase<InstallContext> = { ...c.phase, ...(c.prep ? { prepare: c.prep } : {}), settle: async () => ({}) };
      const dryHost = new RecordingHost();
      dryHost.probes = { [phase.id]: c.probe };
      const dry = await runPhases([phase], c.ctx(), dryHost, { site: 'pop1', operation: 'install', dryRun: true });
      const realHost = new RecordingHost();
      realHost.probes = { [phase.id]: c.probe };
      const real = await runPhases([phase], c.ctx(), realHost, { site: 'pop1', operation: 'install', dryRun: false });
      expect(real.ok, real.error).toBe(true);
      expect(real.phases[0]!.changes).toEqual(dry.phases[0]!.changes);
      // The dry run sent nothing but its one read-only probe.
      expect(dryHost.commands()).toHaveLength(1);
      expect(dryHost.calls.filter((x) => x.kind !== 'exec')).toEqual([]);
    });
  }
});
