// A rollout of an older bundle over a POP that runs a newer one: the site is refused by preflight — nothing is
// changed or journaled — and the rollout's outcome for it says "refused", why, and the fix (--allow-downgrade);
// with --allow-downgrade it goes ahead. Through the engine's runner on a recording host, read by outcomeOf.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BundleDoc } from '../../src/bundle/format.js';
import { loadSites } from '../../src/config/index.js';
import { JOURNAL_PATH, type Journal } from '../../src/engine/journal.js';
import { runPhases } from '../../src/engine/runner.js';
import { DEFAULT_TIMEOUTS, type InstallContext } from '../../src/install/context.js';
import { factsPhase } from '../../src/install/facts.js';
import { preflightPhase } from '../../src/install/preflight.js';
import { outcomeOf } from '../../src/rollout/outcome.js';
import { RecordingHost } from '../engine/recording-host.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'fsm-edge-downgrade-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

const FACTS = `machine=x86_64\nkernel=6.1.0\nos_id=debian\nos_version=12\nos_pretty=Debian 12\nhostname=pop1\ninit=systemd\ncpus=2\nmem_kb=4000000\ndisk_free_kb=20000000\ndefault_route=eth0\ncgroup2=1\nbtf=1\nbpffs=/sys/fs/bpf\nbpf_syscall=1\niptables=1\nk3s_version=k3s version v1.37.2+k3s1 (abc)\nk3s_active=active\nk3s_ready=ok\nk3s_ours=1\nsshd_allow_tcp_forwarding=yes`;

function context(serial: number, allowDowngrade: boolean): InstallContext {
  const file = path.join(tmp, `site-${Math.random().toString(16).slice(2)}.yaml`);
  writeFileSync(
    file,
    `apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop1 }\nspec:\n  ssh: { host: 127.0.0.9, user: root, agent: true, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }\n`,
  );
  const doc = {
    name: 'lab',
    versions: { k3s: 'v1.37.1+k3s1', fsm: '1.5.1', pipy: '1.5.12', chart: '1.5.1' },
    build: { serial, createdAt: '2026-11-29T09:00:00.000Z' },
    arches: { amd64: { features: ['core'], files: [], images: [] } },
  } as unknown as BundleDoc;
  return {
    site: loadSites([file]).sites[0]!,
    configDir: tmp,
    bundle: { dir: tmp, doc, digest: digest(1), signer: 'k', verifyArch: async () => {} },
    options: { ...DEFAULT_TIMEOUTS, dryRun: false, allowDowngrade },
    metrics: {},
    installed: {},
  };
}

function popRunning(serial: number): RecordingHost {
  const host = new RecordingHost();
  host.probes.facts = FACTS;
  const journal: Journal = {
    version: 1,
    site: 'pop1',
    phases: {},
    runs: [],
    bundle: { name: 'lab-v2', digest: digest(2), serial, createdAt: '2026-11-29T10:00:00.000Z', installedAt: 'T' },
  };
  host.files.set(JOURNAL_PATH, Buffer.from(JSON.stringify(journal)));
  return host;
}

async function run(ctx: InstallContext, host: RecordingHost) {
  const report = await runPhases([factsPhase, preflightPhase], ctx, host, {
    site: 'pop1',
    operation: 'install',
    dryRun: false,
    onJournal: (j) => (ctx.journal = j),
  });
  return outcomeOf({ site: 'pop1', report }, 'wave 1', {}, false);
}

describe('rollout of an older bundle', () => {
  it('is refused per site, with the reason and the fix, and nothing is written on the POP', async () => {
    const host = popRunning(2000);
    const o = await run(context(1000, false), host);
    expect(o).toMatchObject({ status: 'failed', failure: 'refused', failedPhase: 'preflight' });
    expect(o.reason).toMatch(/^the POP runs bundle lab-v2 \(build 2000, .*\), newer than lab \(build 1000, .*\)$/);
    expect(o.fix).toMatch(/--allow-downgrade/);
    expect(host.calls.filter((c) => c.kind === 'write')).toEqual([]);
    expect(host.changes).toEqual([]);
  });

  it('goes ahead with --allow-downgrade, and a newer or the same bundle is never refused', async () => {
    expect((await run(context(1000, true), popRunning(2000))).status).toBe('ok');
    expect((await run(context(3000, false), popRunning(2000))).status).toBe('ok');
    expect((await run(context(2000, false), popRunning(2000))).status).toBe('ok');
  });
});
