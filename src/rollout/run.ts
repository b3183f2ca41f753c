// Runs a rollout plan wave by wave through the engine's runSites: a failure budget that stops new starts when it
// is spent (sites already running finish), a gate between waves (failures within budget, every installed site
// Managed on its hub), an optional soak (wait, then a dry run of each passed site must plan no change), state
// written after each site, and a resume that skips done sites — from the state, or, when that is lost, from
// the POP journals (the truth) confirmed by a dry run. Prints nothing: events go to `onProgress`.

import {
  type RunSitesOptions,
  runSites,
  type SiteEvent,
  type SiteOperation,
  type SiteResult,
  type SiteTarget,
} from '../engine/run-sites.js';
import type { RunReport } from '../engine/runner.js';
import { outcomeOf, type SiteFacts, type SiteOutcome, type SiteStatus, spendsBudget } from './outcome.js';
import type { RolloutPlan, Wave } from './plan.js';
import { readRolloutState, type RolloutState, rolloutId, rolloutReportDir, rolloutStatePath, writeRolloutState } from './state.js';

export type StoppedBy = 'canary' | 'budget' | 'soak' | 'interrupted';

export interface WaveReport {
  name: string;
  canary: boolean;
  maxFailures: number;
  sites: SiteOutcome[];
  gate: 'passed' | 'failed' | 'not-reached';
  soak?: 'passed' | 'failed';
}

export interface RolloutReport {
  version: 1;
  fleet: string;
  id: string;
  dryRun: boolean;
  resumed: boolean;
  bundle: { name?: string; digest: string };
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Every site ok (a tolerated failure still makes this false: the exit code is 1). */
  ok: boolean;
  outcome: 'done' | 'stopped';
  stoppedBy?: StoppedBy;
  stopReason?: string;
  policy: { parallel: number; maxFailures: number; soakSeconds: number };
  /** The share of the fleet this run took (`--shard i/n`); absent for the whole fleet. */
  shard?: { index: number; count: number };
  /** A merged report: the shard reports it was made of. */
  shards?: Array<{ index: number; count: number; id: string; outcome: 'done' | 'stopped'; ok: boolean; stoppedBy?: StoppedBy }>;
  waves: WaveReport[];
  counts: Record<SiteStatus, number>;
  warnings: string[];
  files?: { state: string; json: string; html: string; logs?: string };
}

export type RolloutEvent =
  | { type: 'wave-start'; wave: Wave; toRun: string[]; doneEarlier: string[] }
  | { type: 'wave-end'; wave: WaveReport }
  | { type: 'soak'; wave: string; seconds: number }
  | { type: 'derived'; done: string[]; notDone: string[] }
  | { type: 'stopped'; by: StoppedBy; reason: string }
  | { type: 'warning'; message: string }
  /** A site's run ended (the outcome as the report will have it, before any soak). */
  | { type: 'site-end'; outcome: SiteOutcome };

export interface RolloutInput<Ctx> {
  fleet: string;
  plan: RolloutPlan;
  targets: readonly SiteTarget[];
  bundle: { name?: string; digest: string };
  /** The operation for a real run (false) or a dry run (true): install, in the CLI. */
  operation(dryRun: boolean): SiteOperation<Ctx>;
  /** What the operation learnt about a site (arch, registration, the journal's bundle). */
  facts(result: SiteResult<Ctx>): SiteFacts;
  /** Passed to every runSites call: the opened bundle, trust keys, host-key policy, events, env. */
  runOptions: Omit<RunSitesOptions, 'dryRun' | 'parallel' | 'shouldStart' | 'signal'>;
  stateDir: string;
  resume: boolean;
  /** This run's share of the fleet (the targets are already that share): names its state and report. */
  shard?: { index: number; count: number };
  signal?: AbortSignal;
  onProgress?(ev: RolloutEvent): void;
  /** Waits for the soak (tests pass a fake); resolves early when the signal fires. */
  sleep?(ms: number, signal?: AbortSignal): Promise<void>;
}

const STATUSES: SiteStatus[] = ['ok', 'failed', 'unhealthy', 'not-started', 'interrupted', 'skipped'];

export function countStatuses(waves: readonly WaveReport[]): Record<SiteStatus, number> {
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<SiteStatus, number>;
  for (const w of waves) for (const s of w.sites) counts[s.status]++;
  return counts;
}

function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** A site is done when its POP's journal names this bundle and a dry run of the operation plans no change. */
export function doneByJournal(report: RunReport, facts: SiteFacts, bundleDigest: string): boolean {
  return (
    report.ok &&
    facts.journalBundleDigest === bundleDigest &&
    report.phases.length > 0 &&
    report.phases.every((p) => p.status === 'unchanged')
  );
}

function notStartedOutcome(site: string, wave: string, note: string): SiteOutcome {
  return { site, wave, status: 'not-started', note, durationMs: 0, bytesSent: 0, roundTrips: 0, phases: [] };
}

export async function runRollout<Ctx>(input: RolloutInput<Ctx>): Promise<RolloutReport> {
  const started = new Date();
  const { plan, signal } = input;
  const progress = (ev: RolloutEvent) => input.onProgress?.(ev);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    progress({ type: 'warning', message });
  };
  const id = rolloutId(input.fleet, input.bundle.digest, input.shard);
  const byName = new Map(input.targets.map((t) => [t.site.metadata.name, t]));
  for (const w of plan.waves) for (const s of w.sites) if (!byName.has(s)) throw new Error(`internal: planned site ${s} has no target`);

  // What earlier runs of this rollout finished: from the state, or (state lost) from the POP journals.
  const doneEarlier = new Map<string, SiteOutcome>();
  let saved: RolloutState | undefined;
  if (input.resume) {
    const read = readRolloutState(input.stateDir, id);
    if (read.warning) warn(read.warning);
    saved = read.state;
    if (saved && saved.bundleDigest === input.bundle.digest) {
      for (const o of Object.values(saved.sites))
        if (o.status === 'ok') doneEarlier.set(o.site, { ...(o as SiteOutcome), doneEarlier: true });
    } else {
      await deriveFromJournals();
    }
  }
  const state: RolloutState = {
    version: 1,
    fleet: input.fleet,
    id,
    bundleDigest: input.bundle.digest,
    startedAt: saved?.startedAt ?? started.toISOString(),
    updatedAt: started.toISOString(),
    sites: Object.fromEntries([...doneEarlier].map(([k, v]) => [k, v])),
  };
  const save = () => {
    try {
      writeRolloutState(input.stateDir, state);
    } catch (e) {
      warn(`could not write the rollout state ${rolloutStatePath(input.stateDir, id)}: ${(e as Error).message}`);
    }
  };
  save();

  const waves: WaveReport[] = [];
  let totalFailures = 0;
  let stop: { by: StoppedBy; reason: string } | undefined;
  const stopWith = (by: StoppedBy, reason: string) => {
    if (stop) return;
    stop = { by, reason };
    progress({ type: 'stopped', by, reason });
  };

  for (const [i, wave] of plan.waves.entries()) {
    const last = i === plan.waves.length - 1;
    const earlier = wave.sites.filter((s) => doneEarlier.has(s));
    const toRun = wave.sites.filter((s) => !doneEarlier.has(s));
    if (stop || signal?.aborted) {
      if (!stop) stopWith('interrupted', 'interrupted (SIGINT or SIGTERM) before this wave started');
      waves.push({
        name: wave.name,
        canary: wave.canary,
        maxFailures: wave.maxFailures,
        sites: wave.sites.map(
          (s) => doneEarlier.get(s) ?? notStartedOutcome(s, wave.name, `not started: the rollout stopped (${stop!.by})`),
        ),
        gate: 'not-reached',
      });
      continue;
    }
    progress({ type: 'wave-start', wave, toRun, doneEarlier: earlier });
    const report = await runWave(wave, toRun);
    waves.push(report);

    const waveFailures = report.sites.filter((s) => spendsBudget(s.status)).length;
    if (signal?.aborted) stopWith('interrupted', `interrupted (SIGINT or SIGTERM) during ${wave.name}`);
    else if (wave.canary && waveFailures > 0)
      stopWith('canary', `${waveFailures} of ${wave.sites.length} canary site(s) failed or are not healthy`);
    else if (waveFailures > wave.maxFailures)
      stopWith('budget', `${wave.name}: ${waveFailures} failed, more than its budget of ${wave.maxFailures}`);
    else if (totalFailures > plan.maxFailures)
      stopWith('budget', `${totalFailures} sites failed, more than the rollout's budget of ${plan.maxFailures}`);
    // (A cast: TypeScript cannot see that stopWith, a closure, assigned `stop` above.)
    const stoppedBy = (stop as { by: StoppedBy } | undefined)?.by;
    report.gate = !stoppedBy ? 'passed' : stoppedBy === 'interrupted' ? 'not-reached' : 'failed';
    if (!stop && plan.soakSeconds > 0 && !last) await soak(wave, report);
    progress({ type: 'wave-end', wave: report });
  }

  const finished = new Date();
  const all = waves.flatMap((w) => w.sites);
  const result: RolloutReport = {
    version: 1,
    fleet: input.fleet,
    id,
    dryRun: false,
    resumed: input.resume,
    bundle: input.bundle,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    ok: !stop && all.every((s) => s.status === 'ok'),
    outcome: stop ? 'stopped' : 'done',
    ...(stop ? { stoppedBy: stop.by, stopReason: stop.reason } : {}),
    policy: { parallel: plan.parallel, maxFailures: plan.maxFailures, soakSeconds: plan.soakSeconds },
    ...(input.shard ? { shard: input.shard } : {}),
    waves,
    counts: countStatuses(waves),
    warnings,
    files: {
      state: rolloutStatePath(input.stateDir, id),
      json: `${rolloutReportDir(input.stateDir, id)}/report.json`,
      html: `${rolloutReportDir(input.stateDir, id)}/report.html`,
    },
  };
  save();
  return result;

  async function deriveFromJournals(): Promise<void> {
    const targets = input.targets;
    const results = await runSites(targets, input.operation(true), {
      ...input.runOptions,
      dryRun: true,
      parallel: plan.parallel,
      ...(signal ? { signal } : {}),
    });
    const done: string[] = [];
    for (const r of results) {
      const facts = input.facts(r);
      if (!doneByJournal(r.report, facts, input.bundle.digest)) continue;
      const o = outcomeOf(r, waveOf(r.site), facts, needsHub(r.site));
      if (o.status !== 'ok') continue;
      done.push(r.site);
      doneEarlier.set(r.site, { ...o, doneEarlier: true, note: 'the POP journal names this bundle and a dry run plans no change' });
    }
    progress({ type: 'derived', done, notDone: targets.map((t) => t.site.metadata.name).filter((n) => !done.includes(n)) });
  }

  function waveOf(site: string): string {
    return plan.waves.find((w) => w.sites.includes(site))?.name ?? '';
  }

  function needsHub(site: string): boolean {
    return byName.get(site)?.site.spec.hub !== undefined;
  }

  async function runWave(wave: Wave, toRun: string[]): Promise<WaveReport> {
    let waveFailures = 0;
    const counted = new Set<string>();
    const outcomes = new Map<string, SiteOutcome>();
    const notStarted = new Map<string, string>();
    const spend = (site: string) => {
      if (counted.has(site)) return;
      counted.add(site);
      waveFailures++;
      totalFailures++;
    };
    const base = input.operation(false);
    // The operation, observed: each site's outcome is known (and saved) the moment its run ends.
    const op: SiteOperation<Ctx> = {
      ...base,
      finish: (ctx, report, pins) => {
        const record = base.finish?.(ctx, report, pins);
        const facts = input.facts({ site: report.site, report, ctx, ...(record !== undefined ? { record } : {}) });
        const o = outcomeOf({ site: report.site, report }, wave.name, facts, needsHub(report.site));
        if (spendsBudget(o.status)) spend(report.site);
        outcomes.set(report.site, o);
        state.sites[report.site] = o;
        save();
        progress({ type: 'site-end', outcome: o });
        return record;
      },
    };
    const budgetLeft = () => waveFailures <= wave.maxFailures && totalFailures <= plan.maxFailures && !(wave.canary && waveFailures > 0);
    const onEvent = (site: string, ev: SiteEvent) => {
      // Sites stopped before their phases (unreachable, refused host key) never reach `finish`.
      if (ev.type === 'phase-end' && (ev.report.status === 'failed' || ev.report.status === 'refused') && ev.report.failure !== 'aborted')
        spend(site);
      input.runOptions.onEvent?.(site, ev);
    };
    const results = await runSites(
      toRun.map((s) => byName.get(s)!),
      op,
      {
        ...input.runOptions,
        dryRun: false,
        parallel: plan.parallel,
        ...(signal ? { signal } : {}),
        onEvent,
        shouldStart: (site) => {
          if (signal?.aborted) return false;
          if (!budgetLeft()) {
            notStarted.set(
              site,
              `not started: the failure budget was spent (${waveFailures} failed in ${wave.name}, ${totalFailures} in the rollout)`,
            );
            return false;
          }
          state.sites[site] = { site, wave: wave.name, status: 'running', startedAt: new Date().toISOString() };
          save();
          return true;
        },
      },
    );
    const sites = wave.sites.map((name): SiteOutcome => {
      const earlier = doneEarlier.get(name);
      if (earlier) return earlier;
      const r = results.find((x) => x.site === name)!;
      const why = notStarted.get(name);
      const o = why
        ? notStartedOutcome(name, wave.name, why)
        : (outcomes.get(name) ?? outcomeOf(r, wave.name, input.facts(r), needsHub(name)));
      if (spendsBudget(o.status)) spend(name);
      // Sites stopped before their phases (unreachable, refused host key) never reached `finish`.
      if (!why && !outcomes.has(name)) progress({ type: 'site-end', outcome: o });
      state.sites[name] = o;
      return o;
    });
    save();
    return { name: wave.name, canary: wave.canary, maxFailures: wave.maxFailures, sites, gate: 'not-reached' };
  }

  /** Waits, then checks the wave's ok sites again: a dry run must plan no change and the site must stay Managed. */
  async function soak(wave: Wave, report: WaveReport): Promise<void> {
    progress({ type: 'soak', wave: wave.name, seconds: plan.soakSeconds });
    await (input.sleep ?? sleepFor)(plan.soakSeconds * 1000, signal);
    if (signal?.aborted) return stopWith('interrupted', `interrupted during the soak after ${wave.name}`);
    const ok = report.sites.filter((s) => s.status === 'ok');
    const results = await runSites(
      ok.map((s) => byName.get(s.site)!),
      input.operation(true),
      { ...input.runOptions, dryRun: true, parallel: plan.parallel, ...(signal ? { signal } : {}) },
    );
    let failures = 0;
    for (const r of results) {
      const facts = input.facts(r);
      const o = outcomeOf(r, wave.name, facts, needsHub(r.site));
      const changes = r.report.phases.filter((p) => p.status === 'planned').map((p) => p.id);
      if (o.status === 'ok' && changes.length === 0) continue;
      failures++;
      totalFailures++;
      const i = report.sites.findIndex((s) => s.site === r.site);
      const why = o.reason ?? o.note ?? o.status;
      const soaked: SiteOutcome = {
        ...report.sites[i]!,
        status: 'unhealthy',
        note: `after the ${plan.soakSeconds}s soak: ${changes.length ? `drifted (a dry run plans changes in ${changes.join(', ')})` : why}`,
        reason: changes.length ? `drifted during the soak: ${changes.join(', ')} would change` : (o.reason ?? 'not healthy after the soak'),
        fix: o.fix ?? 'look at the POP for what undid the install (k3s and FSM logs), then resume: the install repairs it',
      };
      report.sites[i] = soaked;
      state.sites[r.site] = soaked;
    }
    report.soak = failures ? 'failed' : 'passed';
    save();
    const waveFailures = report.sites.filter((s) => spendsBudget(s.status)).length;
    if (failures && (wave.canary || waveFailures > wave.maxFailures || totalFailures > plan.maxFailures)) {
      report.gate = 'failed';
      stopWith('soak', `${failures} site(s) of ${wave.name} were not healthy after the ${plan.soakSeconds}s soak`);
    }
  }
}

/**
 * `rollout --dry-run`: the waves, and per site what a real run would do — a dry run of the operation on every
 * site (no lock, nothing written): its arch, what it would send, and why it would be skipped (already on this
 * bundle) or stop (refused by preflight, unreachable).
 */
export async function previewRollout<Ctx>(input: Omit<RolloutInput<Ctx>, 'resume' | 'sleep'>): Promise<RolloutReport> {
  const started = new Date();
  const { plan } = input;
  const byName = new Map(input.targets.map((t) => [t.site.metadata.name, t]));
  const ordered = plan.waves.flatMap((w) => w.sites.map((s) => byName.get(s)!));
  const results = await runSites(ordered, input.operation(true), {
    ...input.runOptions,
    dryRun: true,
    parallel: plan.parallel,
    ...(input.signal ? { signal: input.signal } : {}),
  });
  const waves: WaveReport[] = plan.waves.map((w) => ({
    name: w.name,
    canary: w.canary,
    maxFailures: w.maxFailures,
    gate: 'not-reached',
    sites: w.sites.map((name) => {
      const r = results.find((x) => x.site === name)!;
      const facts = input.facts(r);
      const o = outcomeOf(r, w.name, facts, false);
      const sends = r.report.phases.find((p) => p.id === 'sync')?.summary;
      if (doneByJournal(r.report, facts, input.bundle.digest))
        return { ...o, status: 'skipped', note: 'already on this bundle (its POP journal) and nothing to change' };
      if (o.status === 'failed') {
        const refused = r.report.phases.find((p) => p.status === 'refused');
        return {
          ...o,
          note: refused
            ? `would stop: refused by ${refused.id}`
            : `would stop: ${o.failure ?? 'failed'} in ${o.failedPhase ?? 'the dry run'}`,
        };
      }
      const changes = r.report.phases.filter((p) => p.status === 'planned').map((p) => p.id);
      return { ...o, ...(sends ? { sends } : {}), note: changes.length ? `would change: ${changes.join(', ')}` : 'nothing to change' };
    }),
  }));
  const finished = new Date();
  return {
    version: 1,
    fleet: input.fleet,
    id: rolloutId(input.fleet, input.bundle.digest, input.shard),
    dryRun: true,
    resumed: false,
    bundle: input.bundle,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    ok: waves.every((w) => w.sites.every((s) => s.status === 'ok' || s.status === 'skipped')),
    outcome: 'done',
    policy: { parallel: plan.parallel, maxFailures: plan.maxFailures, soakSeconds: plan.soakSeconds },
    ...(input.shard ? { shard: input.shard } : {}),
    waves,
    counts: countStatuses(waves),
    warnings: [],
  };
}
