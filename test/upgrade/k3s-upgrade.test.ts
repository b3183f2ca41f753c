// The k3s upgrade's way back, against a recording host: the new k3s is not ready in time → the kept binary is
// put back, k3s restarted and waited for, the journal says "rolled-back" and the site fails saying which version
// runs; when the old one does not come back either, it says so. Also what the k3s phase plans for an upgrade
// (keep the running binary before the new one is assembled; restart under the bound) and for a POP left
// half-upgraded (the new binary is never kept over the good copy).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BundleDoc } from '../../src/bundle/format.js';
import { loadSites } from '../../src/config/index.js';
import { emptyJournal, JOURNAL_PATH, type Journal } from '../../src/engine/journal.js';
import { runPhases } from '../../src/engine/runner.js';
import { POP_PREVIOUS_K3S, POP_PREVIOUS_K3S_VERSION } from '../../src/engine/pop-layout.js';
import type { ExecOptions, ExecResult } from '../../src/transport/host.js';
import { DEFAULT_TIMEOUTS, type InstallContext } from '../../src/install/context.js';
import { parseFacts } from '../../src/install/facts.js';
import { type K3sFiles, k3sPhase, k3sUpgradeOf } from '../../src/install/k3s.js';
import { K3sUpgradeError, keepPreviousScript, restartUpgradedK3s } from '../../src/install/k3s-upgrade.js';
import { RecordingHost } from '../engine/recording-host.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'fsm-edge-k3s-upgrade-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

/** Answers the upgrade's own `sh -s` scripts: each restart and restore in turn from a queue of exit codes. */
class UpgradeHost extends RecordingHost {
  restarts: number[] = [];
  restores: number[] = [];
  scripts: string[] = [];
  override async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const stdin = opts.stdin === undefined ? '' : Buffer.from(opts.stdin).toString('utf8');
    if (command === 'sh -s' && !stdin.includes('@@fsm-edge-change-')) {
      this.roundTrips++;
      this.scripts.push(stdin);
      if (stdin.includes('systemctl restart k3s')) {
        const code = this.restarts.shift() ?? 0;
        return { code, stdout: '', stderr: code === 124 ? 'k3s did not start within 30s\nlast k3s log lines:' : '' };
      }
      if (stdin.includes('fsm-edge-restore')) {
        const code = this.restores.shift() ?? 0;
        return { code, stdout: '', stderr: code ? `no previous k3s binary kept at ${POP_PREVIOUS_K3S}` : '' };
      }
      return { code: 0, stdout: '', stderr: '' };
    }
    return super.exec(command, opts);
  }
}

const U = { from: 'v1.37.2+k3s1', to: 'v1.37.3+k3s1' };

describe('restartUpgradedK3s', () => {
  it('the new k3s never starts: the previous binary goes back, k3s runs again, the journal and the error say "rolled back"', async () => {
    const host = new UpgradeHost();
    host.restarts = [124, 0];
    const journal: Journal = emptyJournal('pop1');
    const waits: number[] = [];
    const err = await restartUpgradedK3s(U, {
      host,
      journal,
      timeoutMs: 30_000,
      waitReady: async (ms) => (waits.push(ms), 'v1.37.2+k3s1'),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(K3sUpgradeError);
    const e = err as K3sUpgradeError;
    expect(e.rolledBack).toBe(true);
    expect(e.kind).toBe('failed');
    expect(e.message.split('\n')[0]).toBe(
      'k3s upgrade to v1.37.3+k3s1 failed (k3s did not start within 30s); rolled back to v1.37.2+k3s1, running',
    );
    expect(e.fix).toMatch(/journalctl -u k3s/);
    expect(journal.k3sRollback).toMatchObject({ ...U, outcome: 'rolled-back', reason: 'k3s did not start within 30s' });
    // restart (failed), restore, restart (old), then the gates for the old one only
    expect(host.scripts.map((s) => (s.includes('fsm-edge-restore') ? 'restore' : 'restart'))).toEqual(['restart', 'restore', 'restart']);
    expect(host.scripts[1]).toContain(`mv -f /usr/local/bin/k3s.fsm-edge-restore /usr/local/bin/k3s`);
    expect(host.scripts[1]).toContain('*"v1.37.2+k3s1"*');
    expect(host.scripts[0]).toContain('timeout 30 systemctl restart k3s');
    expect(waits).toHaveLength(1);
  });

  it('started but never ready within the bound: rolled back too (the readiness gates are part of the bound)', async () => {
    const host = new UpgradeHost();
    host.restarts = [0, 0];
    const journal = emptyJournal('pop1');
    let calls = 0;
    const err = await restartUpgradedK3s(U, {
      host,
      journal,
      timeoutMs: 30_000,
      waitReady: async () => {
        if (calls++ === 0) throw new Error('timed out after 30s waiting for the POP API /readyz (last: not ready)');
        return 'v1.37.2+k3s1';
      },
    }).then(
      () => {
        throw new Error('expected the upgrade to fail');
      },
      (e: unknown) => e as K3sUpgradeError,
    );
    expect(err.message).toMatch(/^k3s upgrade to v1\.37\.3\+k3s1 failed \(timed out after 30s waiting for the POP API \/readyz/);
    expect(err.message).toMatch(/rolled back to v1\.37\.2\+k3s1, running/);
    expect(journal.k3sRollback?.outcome).toBe('rolled-back');
  });

  it('when the previous k3s does not come back either, it says so and journals rollback-failed', async () => {
    const host = new UpgradeHost();
    host.restarts = [124];
    host.restores = [3];
    const journal = emptyJournal('pop1');
    const err = await restartUpgradedK3s(U, { host, journal, timeoutMs: 30_000, waitReady: async () => '' }).then(
      () => {
        throw new Error('expected the upgrade to fail');
      },
      (e: unknown) => e as K3sUpgradeError,
    );
    expect(err.rolledBack).toBe(false);
    expect(err.message.split('\n')[0]).toMatch(
      /rolling back to v1\.37\.2\+k3s1 failed too \(no previous k3s binary kept at .*\): k3s is not running$/,
    );
    expect(journal.k3sRollback?.outcome).toBe('rollback-failed');
  });

  it('a new k3s that becomes ready clears an earlier rollback from the journal', async () => {
    const host = new UpgradeHost();
    const journal: Journal = { ...emptyJournal('pop1'), k3sRollback: { ...U, outcome: 'rolled-back', reason: 'x', at: 'then' } };
    await restartUpgradedK3s(U, { host, journal, timeoutMs: 30_000, waitReady: async () => 'v1.37.3+k3s1' });
    expect(journal.k3sRollback).toBeUndefined();
    expect(host.scripts).toHaveLength(1);
  });
});

describe('keepPreviousScript', () => {
  it('keeps the binary only when told its version, by rename, and never lets a non-version into the script', () => {
    const s = keepPreviousScript('v1.37.2+k3s1');
    expect(s).toContain(`mv -f ${POP_PREVIOUS_K3S}.tmp ${POP_PREVIOUS_K3S}`);
    expect(s).toContain(`echo v1.37.2+k3s1 > ${POP_PREVIOUS_K3S_VERSION}`);
    expect(keepPreviousScript(undefined)).not.toContain(POP_PREVIOUS_K3S);
    expect(() => keepPreviousScript('v1; rm -rf /')).toThrow(/not a version/);
  });
});

const FACTS = `machine=x86_64\nkernel=6.1.0\nos_id=debian\nos_version=12\nos_pretty=Debian 12\nhostname=pop1\ninit=systemd\ncpus=2\nmem_kb=4000000\ndisk_free_kb=20000000\ndefault_route=eth0\ncgroup2=1\nbtf=1\nbpffs=/sys/fs/bpf\nbpf_syscall=1\niptables=1`;

function context(running: string): InstallContext {
  const file = path.join(tmp, `site-${Math.random().toString(16).slice(2)}.yaml`);
  writeFileSync(
    file,
    `apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop1 }\nspec:\n  ssh: { host: 127.0.0.9, user: root, agent: true, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }\n`,
  );
  const doc = {
    name: 'v3',
    versions: { k3s: 'v1.37.3+k3s1', fsm: '1.5.1', pipy: '1.5.12', chart: '1.5.2' },
    arches: { amd64: { features: [], files: [], images: [] } },
  } as unknown as BundleDoc;
  return {
    site: loadSites([file]).sites[0]!,
    configDir: tmp,
    bundle: { dir: tmp, doc, digest: digest(3), signer: 'k', verifyArch: async () => {} },
    options: { ...DEFAULT_TIMEOUTS, k3sStartTimeoutMs: 30_000, dryRun: false },
    facts: parseFacts(`${FACTS}\nk3s_version=k3s version ${running} (abc)\nk3s_active=active\nk3s_ready=ok\nk3s_ours=1`),
    decisions: { arch: 'amd64', content: doc.arches.amd64!, interception: 'iptables', interceptionReason: 'x' },
    metrics: {},
    installed: {},
  };
}

const FILES: K3sFiles = { config: 'c\n', registries: 'r\n', plan: 'p\n', scriptDigest: digest(2), assembleOutputs: 3 };
const probe = 'token=1\nunit=1\nactive=active';

describe('the k3s phase on an installed POP', () => {
  const env = (host: RecordingHost) => ({ host, dryRun: true, signal: new AbortController().signal, probe });

  it('an upgrade keeps the running k3s before assembling the new one, and restarts with a way back', async () => {
    const ctx = context('v1.37.2+k3s1');
    expect(k3sUpgradeOf(ctx)).toEqual(U);
    const host = new RecordingHost();
    const live = await k3sPhase.check(ctx, FILES, env(host));
    const planned = k3sPhase.plan(ctx, FILES, live, env(host)).map((c) => c.description);
    const keep = planned.findIndex((d) => d.startsWith('keep k3s v1.37.2+k3s1'));
    const assemble = planned.findIndex((d) => d.startsWith('assemble'));
    expect(keep).toBeGreaterThanOrEqual(0);
    expect(keep).toBeLessThan(assemble);
    expect(planned.at(-1)).toBe('restart k3s on v1.37.3+k3s1 (back to v1.37.2+k3s1 if it is not ready within 30s)');
  });

  it('a POP left half-upgraded (the new binary in place, not ready) is not an upgrade: the good copy is not overwritten', async () => {
    const ctx = context('v1.37.3+k3s1');
    ctx.facts!.k3s!.ready = false;
    expect(k3sUpgradeOf(ctx)).toBeUndefined();
    const host = new RecordingHost();
    const live = await k3sPhase.check(ctx, FILES, env(host));
    const planned = k3sPhase.plan(ctx, FILES, live, env(host));
    const keep = planned.find((c) => c.description.startsWith('keep'));
    expect(keep && 'script' in keep ? keep.script : '').not.toContain(POP_PREVIOUS_K3S);
    expect(planned.at(-1)!.description).toBe('restart k3s');
  });

  it('a re-run after a rolled-back upgrade warns that it tries again', async () => {
    const ctx = context('v1.37.2+k3s1');
    ctx.journal = {
      ...emptyJournal('pop1'),
      k3sRollback: { ...U, outcome: 'rolled-back', reason: 'k3s did not start within 30s', at: 'T' },
    };
    const live = await k3sPhase.check(ctx, FILES, env(new RecordingHost()));
    expect(live.warnings).toEqual([
      'the last upgrade to k3s v1.37.3+k3s1 (T) was rolled back to v1.37.2+k3s1: k3s did not start within 30s; trying again',
    ]);
  });
});

describe('through the runner', () => {
  it('a failed upgrade is journaled on the POP with what became of k3s, for the next run to read', async () => {
    const ctx = context('v1.37.2+k3s1');
    const host = new UpgradeHost();
    host.probes.k3s = probe;
    host.restarts = [124, 124];
    const phase = { ...k3sPhase, prepare: () => FILES };
    const report = await runPhases([phase], ctx, host, {
      site: 'pop1',
      operation: 'install',
      dryRun: false,
      onJournal: (j) => (ctx.journal = j),
    });
    expect(report.ok).toBe(false);
    expect(report.failedPhase).toBe('k3s');
    expect(report.error).toMatch(
      /^k3s upgrade to v1\.37\.3\+k3s1 failed \(k3s did not start within 30s\); rolling back to v1\.37\.2\+k3s1 failed too/,
    );
    const written = JSON.parse(host.files.get(JOURNAL_PATH)!.toString('utf8')) as Journal;
    expect(written.k3sRollback).toMatchObject({ ...U, outcome: 'rollback-failed' });
    expect(written.runs.at(-1)).toMatchObject({ outcome: 'failed', failedPhase: 'k3s' });
  });
});
