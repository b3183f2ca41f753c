import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RolloutSchema } from '../../src/config/fleet.js';
import { planRollout } from '../../src/rollout/plan.js';
import { previewRollout, type RolloutEvent, type RolloutReport, runRollout } from '../../src/rollout/run.js';
import { readRolloutState, rolloutId, rolloutStatePath, writeRolloutState } from '../../src/rollout/state.js';
import { DIGEST, FakeFleet } from './fake-fleet.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const stateDir = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'rollout-'));
  dirs.push(d);
  return d;
};
const names = (n: number) => Array.from({ length: n }, (_, i) => `pop${i + 1}`);

interface Run {
  fleet: FakeFleet;
  policy: unknown;
  root: string;
  resume?: boolean;
  signal?: AbortSignal;
  events?: RolloutEvent[];
  sleep?: () => Promise<void>;
  onSiteEvent?: (site: string, ev: { type: string; report?: { status: string } }) => void;
}

function rollout(r: Run): Promise<RolloutReport> {
  const targets = r.fleet.targets();
  const plan = planRollout(
    targets.map((t) => ({ name: t.site.metadata.name })),
    RolloutSchema.parse(r.policy),
  );
  return runRollout({
    fleet: 'edge',
    plan,
    targets,
    bundle: { name: 'test-bundle', digest: DIGEST },
    operation: r.fleet.operation,
    facts: r.fleet.facts,
    runOptions: r.onSiteEvent ? { onEvent: r.onSiteEvent } : {},
    stateDir: r.root,
    resume: r.resume === true,
    ...(r.signal ? { signal: r.signal } : {}),
    onProgress: (ev) => r.events?.push(ev),
    ...(r.sleep ? { sleep: r.sleep } : {}),
  });
}

const statuses = (rep: RolloutReport) => Object.fromEntries(rep.waves.flatMap((w) => w.sites.map((s) => [s.site, s.status])));

describe('rollout run', () => {
  it('installs every wave in order and reports each site with its figures', async () => {
    const fleet = new FakeFleet(names(5));
    const rep = await rollout({ fleet, policy: { canary: 1, waves: [2], parallel: 2 }, root: stateDir() });
    expect(rep.ok).toBe(true);
    expect(rep.outcome).toBe('done');
    expect(rep.waves.map((w) => [w.name, w.gate])).toEqual([
      ['canary', 'passed'],
      ['wave 1', 'passed'],
      ['wave 2', 'passed'],
    ]);
    expect(fleet.started[0]).toBe('pop1');
    const s = rep.waves[1]!.sites[0]!;
    expect(s).toMatchObject({ site: 'pop2', status: 'ok', arch: 'amd64' });
    expect(s.roundTrips).toBeGreaterThan(0);
    expect(s.phases.map((p) => p.id)).toEqual(['install']);
  });

  it('stops starting new sites once the budget is spent, and reports both failures', async () => {
    const fleet = new FakeFleet(names(5));
    fleet.pop('pop1').fail = 'unreachable';
    fleet.pop('pop2').fail = 'unreachable';
    const rep = await rollout({ fleet, policy: { parallel: 1, maxFailures: 1 }, root: stateDir() });
    expect(statuses(rep)).toEqual({ pop1: 'failed', pop2: 'failed', pop3: 'not-started', pop4: 'not-started', pop5: 'not-started' });
    expect(rep.waves[0]!.sites[0]).toMatchObject({ failure: 'unreachable', failedPhase: 'install', reason: 'connection lost' });
    expect(rep.waves[0]!.sites[0]!.fix).toMatch(/check the link.*--resume/);
    expect(rep.waves[0]!.sites[2]!.note).toMatch(/failure budget was spent/);
    expect(rep).toMatchObject({ ok: false, outcome: 'stopped', stoppedBy: 'budget' });
    // Nothing was attempted on the sites that were not started.
    expect(fleet.pop('pop3').host.calls).toEqual([]);
  });

  it('lets a site already running finish when the budget is spent by another', async () => {
    const fleet = new FakeFleet(names(4));
    let release!: () => void;
    fleet.pop('pop2').holdUntil = new Promise<void>((r) => (release = r));
    fleet.pop('pop1').fail = 'failed';
    const rep = await rollout({
      fleet,
      policy: { parallel: 2, maxFailures: 0 },
      root: stateDir(),
      // pop2 is mid-install when pop1 fails; it is released only then.
      onSiteEvent: (site, ev) => {
        if (site === 'pop1' && ev.type === 'phase-end' && ev.report?.status === 'failed') release();
      },
    });
    expect(statuses(rep)).toEqual({ pop1: 'failed', pop2: 'ok', pop3: 'not-started', pop4: 'not-started' });
    expect(fleet.pop('pop2').installs).toBe(1);
    expect(rep.stoppedBy).toBe('budget');
  });

  it('tolerates failures within the budget but still exits as not ok', async () => {
    const fleet = new FakeFleet(names(4));
    fleet.pop('pop2').fail = 'failed';
    const rep = await rollout({ fleet, policy: { parallel: 1, maxFailures: 1, waves: [2] }, root: stateDir() });
    expect(statuses(rep)).toEqual({ pop1: 'ok', pop2: 'failed', pop3: 'ok', pop4: 'ok' });
    expect(rep).toMatchObject({ ok: false, outcome: 'done' });
  });

  it('stops before wave 1 when the canary fails, whatever the budget', async () => {
    const fleet = new FakeFleet(names(4));
    fleet.pop('pop1').fail = 'failed';
    const rep = await rollout({ fleet, policy: { canary: 1, maxFailures: 3 }, root: stateDir() });
    expect(rep).toMatchObject({ ok: false, stoppedBy: 'canary' });
    expect(rep.waves.map((w) => w.gate)).toEqual(['failed', 'not-reached']);
    expect(statuses(rep)).toMatchObject({ pop2: 'not-started', pop3: 'not-started', pop4: 'not-started' });
    expect(fleet.started).toEqual(['pop1']);
  });

  it('gates on registration: an installed site whose hub does not say Managed spends the budget', async () => {
    const fleet = new FakeFleet(names(3), true);
    fleet.pop('pop1').registration = 'pending';
    const rep = await rollout({ fleet, policy: { canary: 1 }, root: stateDir() });
    expect(rep.waves[0]!.sites[0]).toMatchObject({ status: 'unhealthy', registration: 'pending' });
    expect(rep.stoppedBy).toBe('canary');
    expect(fleet.started).toEqual(['pop1']);
  });

  it('soaks, re-checks by dry run, and stops when a site drifted during the soak', async () => {
    const fleet = new FakeFleet(names(4));
    const rep = await rollout({
      fleet,
      policy: { canary: 2, soak: 600 },
      root: stateDir(),
      // During the soak something undoes pop2's install: the re-check's dry run plans a change.
      sleep: async () => {
        delete fleet.pop('pop2').installed;
      },
    });
    expect(rep.waves[0]).toMatchObject({ soak: 'failed', gate: 'failed' });
    expect(rep.waves[0]!.sites[1]).toMatchObject({ site: 'pop2', status: 'unhealthy' });
    expect(rep.waves[0]!.sites[1]!.reason).toMatch(/drifted during the soak: install/);
    expect(rep.stoppedBy).toBe('soak');
    expect(fleet.started).toEqual(['pop1', 'pop2']);
  });

  it('writes its state after each site and, with --resume, skips the sites done with this bundle', async () => {
    const fleet = new FakeFleet(names(4));
    const root = stateDir();
    const stop = new AbortController();
    // Ctrl-C once the first site has finished: no new site starts.
    const first = await rollout({
      fleet,
      policy: { parallel: 1 },
      root,
      signal: stop.signal,
      onSiteEvent: (site, ev) => {
        if (site === 'pop1' && ev.type === 'phase-end') stop.abort();
      },
    });
    expect(first).toMatchObject({ ok: false, stoppedBy: 'interrupted' });
    expect(statuses(first)).toEqual({ pop1: 'ok', pop2: 'not-started', pop3: 'not-started', pop4: 'not-started' });
    const saved = readRolloutState(root, rolloutId('edge', DIGEST)).state!;
    expect(saved.sites.pop1).toMatchObject({ status: 'ok' });

    const calls = fleet.pop('pop1').host.calls.length;
    const resumed = await rollout({ fleet, policy: { parallel: 1 }, root, resume: true });
    expect(resumed.ok).toBe(true);
    expect(resumed.waves[0]!.sites[0]).toMatchObject({ site: 'pop1', status: 'ok', doneEarlier: true });
    // pop1 was not touched again: not even a probe.
    expect(fleet.pop('pop1').host.calls.length).toBe(calls);
    expect(fleet.pop('pop1').installs).toBe(1);
    expect(fleet.started).toEqual(['pop1', 'pop2', 'pop3', 'pop4']);
  });

  it('re-runs a site the state says was running when the controller died (it continues from its journal)', async () => {
    const fleet = new FakeFleet(names(2));
    const root = stateDir();
    const id = rolloutId('edge', DIGEST);
    const ok = { site: 'pop1', wave: 'wave 1', status: 'ok' as const, durationMs: 1, bytesSent: 0, roundTrips: 2, phases: [] };
    writeRolloutState(root, {
      version: 1,
      fleet: 'edge',
      id,
      bundleDigest: DIGEST,
      startedAt: 'x',
      updatedAt: 'x',
      sites: { pop1: ok, pop2: { site: 'pop2', wave: 'wave 1', status: 'running', startedAt: 'x' } },
    });
    const rep = await rollout({ fleet, policy: {}, root, resume: true });
    expect(statuses(rep)).toEqual({ pop1: 'ok', pop2: 'ok' });
    expect(fleet.started).toEqual(['pop2']);
    expect(fleet.pop('pop1').host.calls).toEqual([]);
  });

  it('re-derives done sites from the POP journals when the rollout state is lost, confirmed by a dry run', async () => {
    const fleet = new FakeFleet(names(4));
    const root = stateDir();
    fleet.pop('pop4').fail = 'failed';
    const first = await rollout({ fleet, policy: { parallel: 1, maxFailures: 1 }, root });
    expect(statuses(first)).toEqual({ pop1: 'ok', pop2: 'ok', pop3: 'ok', pop4: 'failed' });
    rmSync(rolloutStatePath(root, rolloutId('edge', DIGEST)));
    // pop3's journal says it runs this bundle, but its install was undone by hand: the dry run plans a change.
    delete fleet.pop('pop3').installed;
    delete fleet.pop('pop4').fail;
    const writes = fleet.pop('pop1').host.calls.filter((c) => c.kind === 'write').length;

    const events: RolloutEvent[] = [];
    const rep = await rollout({ fleet, policy: { parallel: 1, maxFailures: 1 }, root, resume: true, events });
    expect(events.find((e) => e.type === 'derived')).toEqual({ type: 'derived', done: ['pop1', 'pop2'], notDone: ['pop3', 'pop4'] });
    expect(rep.ok).toBe(true);
    expect(rep.waves[0]!.sites[0]).toMatchObject({ site: 'pop1', doneEarlier: true });
    expect(rep.waves[0]!.sites[0]!.note).toMatch(/POP journal names this bundle/);
    expect(fleet.pop('pop1').installs).toBe(1);
    expect(fleet.pop('pop3').installs).toBe(2);
    expect(fleet.pop('pop4').installs).toBe(1);
    // The derivation was a dry run: pop1's journal was not written again.
    expect(fleet.pop('pop1').host.calls.filter((c) => c.kind === 'write').length).toBe(writes);
    expect(existsSync(rolloutStatePath(root, rolloutId('edge', DIGEST)))).toBe(true);
    expect(JSON.parse(readFileSync(rolloutStatePath(root, rolloutId('edge', DIGEST)), 'utf8')).sites.pop4.status).toBe('ok');
  });

  it('--dry-run previews each wave: what would change, what is skipped (already on this bundle), what would be refused', async () => {
    const fleet = new FakeFleet(names(3));
    const root = stateDir();
    await rollout({ fleet, policy: { parallel: 1 }, root });
    delete fleet.pop('pop2').installed;
    fleet.pop('pop3').refuse = 'arch arm64 is not in the bundle';
    const writes = [...fleet.pops.values()].map((p) => p.host.calls.filter((c) => c.kind === 'write').length);
    const targets = fleet.targets();
    const rep = await previewRollout({
      fleet: 'edge',
      plan: planRollout(
        targets.map((t) => ({ name: t.site.metadata.name })),
        RolloutSchema.parse({ canary: 1 }),
      ),
      targets,
      bundle: { digest: DIGEST },
      operation: fleet.operation,
      facts: fleet.facts,
      runOptions: {},
      stateDir: root,
    });
    expect(rep.dryRun).toBe(true);
    expect(rep.waves.map((w) => w.name)).toEqual(['canary', 'wave 1']);
    const [pop1, pop2, pop3] = rep.waves.flatMap((w) => w.sites);
    expect(pop1).toMatchObject({
      status: 'skipped',
      arch: 'amd64',
      note: 'already on this bundle (its POP journal) and nothing to change',
    });
    expect(pop2).toMatchObject({ status: 'ok', note: 'would change: install' });
    expect(pop3).toMatchObject({
      status: 'failed',
      note: 'would stop: refused by install',
      reason: 'arch arm64 is not in the bundle',
      fix: 'use the bundle for this arch',
    });
    expect(rep.ok).toBe(false);
    // A preview changes nothing: no journal write, no install.
    expect([...fleet.pops.values()].map((p) => p.host.calls.filter((c) => c.kind === 'write').length)).toEqual(writes);
    expect(fleet.pop('pop2').installs).toBe(1);
  });
});
