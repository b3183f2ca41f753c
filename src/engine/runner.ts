// Runs phases in order against one host. Before the first phase: the POP lock (real runs), then ONE batched
// probe that reads the journal and every phase's live state. Then per phase: prepare, check, plan, and in a real
// run apply exactly the planned changes and settle. Every finished phase is journaled at once, so a kill at any
// point loses at most the phase in flight, and every phase is idempotent. Emits events; returns one report.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Host } from '../transport/host.js';
import { errorText, failureKind, type FailureKind, PhaseRefusal } from './failure.js';
import { inputsDigest, type Journal, type JournalRun, JournalStore } from './journal.js';
import { type AnyPhase, isScriptChange, type PhaseEnv, type PhaseResult, type PlannedChange } from './phase.js';
import { runScriptBatch, type ScriptChange } from './script-batch.js';
import { parseProbe, probeScript } from './probe.js';

export type PhaseStatus = 'done' | 'unchanged' | 'planned' | 'pending' | 'failed' | 'refused' | 'not-run';

export interface PhaseReport {
  id: string;
  title: string;
  status: PhaseStatus;
  durationMs: number;
  summary: string;
  /** What changed (real run) or would change (dry run), in the order the changes run. */
  changes: string[];
  warnings: string[];
  metrics: Record<string, number>;
  /** Refusals: the reason and the fix. */
  reason?: string;
  fix?: string;
  error?: string;
  failure?: FailureKind;
}

export interface RunReport {
  site: string;
  host: string;
  operation: string;
  runId: string;
  dryRun: boolean;
  ok: boolean;
  startedAt: string;
  durationMs: number;
  phases: PhaseReport[];
  warnings: string[];
  failedPhase?: string;
  error?: string;
  failure?: FailureKind;
  roundTrips: number;
  bytesSent: number;
}

export type RunEvent =
  | { type: 'phase-start'; id: string; title: string }
  | { type: 'phase-end'; report: PhaseReport }
  | { type: 'warning'; message: string };

export interface RunOptions {
  site: string;
  operation: string;
  dryRun: boolean;
  journalPath?: string;
  bundleDigest?: string;
  onEvent?: (ev: RunEvent) => void;
  /** Stops before the next change (Ctrl-C): the journal stays consistent. */
  signal?: AbortSignal;
  /** Called with the journal as read from the POP, before the first phase (downgrade checks, recovery). */
  onJournal?: (journal: Journal) => void;
  /** Called when every phase succeeded (or is pending), just before the run's last journal write. */
  onSuccess?: (journal: Journal) => void;
}

/** Pseudo-phases the runner itself reports on when they fail. */
const LOCK_STEP = { id: 'lock', title: 'lock the POP' };
const PROBE_STEP = { id: 'probe', title: 'read the POP' };

function blankReport(step: { id: string; title: string }): PhaseReport {
  return { ...step, status: 'not-run', durationMs: 0, summary: '', changes: [], warnings: [], metrics: {} };
}

function failedReport(step: { id: string; title: string }, e: unknown, t0: number): PhaseReport {
  const kind = failureKind(e);
  if (e instanceof PhaseRefusal) {
    return {
      ...blankReport(step),
      status: 'refused',
      durationMs: Date.now() - t0,
      summary: e.reason,
      reason: e.reason,
      fix: e.fix,
      error: e.message,
      failure: kind,
    };
  }
  const text = errorText(e);
  return {
    ...blankReport(step),
    status: 'failed',
    durationMs: Date.now() - t0,
    summary: text.split('\n')[0] ?? '',
    error: text,
    failure: kind,
  };
}

export function newRunId(now = Date.now()): string {
  return `${new Date(now).toISOString().replace(/[:.]/g, '').slice(0, 15)}-${randomUUID().slice(0, 8)}`;
}

export async function runPhases<Ctx>(phases: AnyPhase<Ctx>[], ctx: Ctx, host: Host, opts: RunOptions): Promise<RunReport> {
  const started = Date.now();
  const runId = newRunId(started);
  const store = new JournalStore(host, opts.journalPath);
  const emit = opts.onEvent ?? (() => {});
  const signal = opts.signal ?? new AbortController().signal;
  const warnings: string[] = [];
  const reports: PhaseReport[] = [];
  const report = (): RunReport => {
    const stats = host.stats();
    const failed =
      reports.find((r) => r.status === 'failed' || r.status === 'refused') ??
      // Stopped by the operator between phases: not a failure of the POP, but not done either.
      (signal.aborted ? reports.find((r) => r.status === 'not-run') : undefined);
    return {
      site: opts.site,
      host: host.name,
      operation: opts.operation,
      runId,
      dryRun: opts.dryRun,
      ok: !failed,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      phases: reports,
      warnings,
      ...(failed
        ? {
            failedPhase: failed.id,
            error: failed.error ?? failed.reason ?? 'stopped before this phase (interrupted)',
            failure: failed.failure ?? ('aborted' as const),
          }
        : {}),
      roundTrips: stats.roundTrips,
      bytesSent: stats.bytesSent,
    };
  };
  const warn = (message: string) => {
    warnings.push(message);
    emit({ type: 'warning', message });
  };

  // One controller at a time: held for the whole run, released when the run (or the controller) ends.
  // A dry run only reads, so it neither takes nor waits for the lock.
  let lock: { release(): Promise<void> } | undefined;
  if (!opts.dryRun) {
    const t0 = Date.now();
    try {
      lock = await host.lock({
        controller: hostname(),
        runId,
        operation: opts.operation,
        startedAt: new Date(started).toISOString(),
        pid: process.pid,
      });
    } catch (e) {
      reports.push(failedReport(LOCK_STEP, e, t0));
      return report();
    }
  }
  try {
    return await runLocked();
  } finally {
    await lock?.release().catch(() => {});
  }

  async function runLocked(): Promise<RunReport> {
    // Every phase's live state and the journal in one round trip.
    const t0 = Date.now();
    let sections: Map<string, string>;
    let journal: Journal;
    try {
      const probing = phases.filter((p) => p.probe).map((p) => ({ id: p.id, script: p.probe!(ctx) }));
      const out = await host.run(probeScript(store.path, probing), { sudo: true, timeoutMs: 120_000 });
      sections = parseProbe(out);
      const read = store.parse(sections.get(JournalStore.SECTION), opts.site);
      journal = read.journal;
      if (read.warning) warn(read.warning);
    } catch (e) {
      reports.push(failedReport(PROBE_STEP, e, t0));
      return report();
    }
    opts.onJournal?.(journal);

    const run: JournalRun = {
      id: runId,
      operation: opts.operation,
      startedAt: new Date(started).toISOString(),
      outcome: 'running',
      controller: hostname(),
      ...(opts.bundleDigest ? { bundleDigest: opts.bundleDigest } : {}),
    };
    // The run is journaled with the first phase that finishes; a dry run writes nothing at all.
    let runJournaled = false;
    const save = async () => {
      if (opts.dryRun) return;
      if (!runJournaled) {
        journal.runs.push(run);
        runJournaled = true;
      }
      await store.write(journal);
    };

    let stopped = false;
    let pending = false;
    // Whether this run's success changes what the journal says beyond the phases (e.g. a new bundle installed).
    const before = JSON.stringify(journal.bundle ?? null);
    const changedJournal = () => {
      const probe = structuredClone(journal);
      opts.onSuccess?.(probe);
      return JSON.stringify(probe.bundle ?? null) !== before;
    };
    for (const phase of phases) {
      if (stopped || signal.aborted) {
        reports.push(blankReport(phase));
        continue;
      }
      emit({ type: 'phase-start', id: phase.id, title: phase.title });
      const p0 = Date.now();
      let r: PhaseReport;
      try {
        r = await runPhase(phase, sections.get(phase.id) ?? '');
      } catch (e) {
        stopped = true;
        r = failedReport(phase, signal.aborted ? Object.assign(new Error(`stopped: ${errorText(e)}`), { kind: 'aborted' }) : e, p0);
        // A refusal changed nothing and writes nothing; a failure is journaled (best effort: the link or the disk
        // may be what failed) so the next run, or another controller, sees where it stopped.
        if (r.status === 'failed' && !opts.dryRun) {
          run.outcome = 'failed';
          run.failedPhase = phase.id;
          run.error = (r.error ?? '').slice(0, 500);
          run.finishedAt = new Date().toISOString();
          await save().catch(() => {});
        }
      }
      if (r.status === 'pending') pending = true;
      for (const w of r.warnings) warnings.push(`${phase.id}: ${w}`);
      reports.push(r);
      emit({ type: 'phase-end', report: r });
    }
    if (signal.aborted && !stopped) stopped = true;

    // A run that changed nothing and left nothing pending writes nothing: a re-run costs the lock and the probe
    // only. (The controller's site record still counts it.)
    if (!stopped && !opts.dryRun && (runJournaled || pending || changedJournal())) {
      opts.onSuccess?.(journal);
      run.outcome = pending ? 'pending' : 'done';
      run.finishedAt = new Date().toISOString();
      await save().catch((e) => warn(`could not finish the journal: ${errorText(e)}`));
    }
    return report();

    async function runPhase(phase: AnyPhase<Ctx>, probe: string): Promise<PhaseReport> {
      const t0 = Date.now();
      const env: PhaseEnv = { host, dryRun: opts.dryRun, signal, probe };
      const prep = phase.prepare ? await phase.prepare(ctx, env) : undefined;
      const live = await phase.check(ctx, prep, env);
      const planned = phase.plan(ctx, prep, live, env);
      const digest = inputsDigest(phase.inputs ? phase.inputs(ctx, prep) : null);
      const entry = journal.phases[phase.id];
      const journaled = !phase.always && entry?.inputs === digest;
      const base = { id: phase.id, title: phase.title };
      const finish = (status: PhaseStatus, changes: string[], res: PhaseResult): PhaseReport => ({
        ...base,
        status,
        durationMs: Date.now() - t0,
        summary:
          res.summary ?? (changes.length ? changes.join(', ') : journaled ? `unchanged since ${entry!.finishedAt}` : 'nothing to change'),
        changes,
        warnings: res.warnings ?? [],
        metrics: res.metrics ?? {},
      });

      if (opts.dryRun) {
        const descriptions = planned.map((c) => c.description);
        const res = phase.describe?.(ctx, prep, live, descriptions, true) ?? {};
        return finish(descriptions.length ? 'planned' : 'unchanged', descriptions, res);
      }

      const applied: string[] = [];
      await applyChanges(host, planned, signal, applied);
      const mustSettle = phase.always || applied.length > 0 || !journaled || phase.healthy?.(live) === false;
      const res: PhaseResult =
        mustSettle && phase.settle
          ? await phase.settle(ctx, prep, live, env, applied)
          : (phase.describe?.(ctx, prep, live, applied, false) ?? {});
      if (res.pending) return { ...finish('pending', applied, res), summary: res.summary ?? `pending: ${res.pending}` };
      const status: PhaseStatus = applied.length ? 'done' : 'unchanged';
      if (!phase.always && (applied.length > 0 || !journaled)) {
        journal.phases[phase.id] = {
          inputs: digest,
          finishedAt: new Date().toISOString(),
          durationMs: Date.now() - t0,
          summary: res.summary ?? applied.join(', '),
          runId,
        };
        await save();
      }
      return finish(status, applied, res);
    }
  }
}

/**
 * Executes exactly the planned changes, in order: code changes one by one, consecutive shell changes as one
 * remote command. `applied` receives each description as its change completes (also when a later one fails).
 */
export async function applyChanges(host: Host, planned: readonly PlannedChange[], signal: AbortSignal, applied: string[]): Promise<void> {
  for (let i = 0; i < planned.length; ) {
    signal.throwIfAborted();
    const c = planned[i]!;
    if (!isScriptChange(c)) {
      await c.run();
      applied.push(c.description);
      i++;
      continue;
    }
    let j = i;
    while (j < planned.length && isScriptChange(planned[j]!)) j++;
    await runScriptBatch(host, planned.slice(i, j) as ScriptChange[], (done) => applied.push(done.description));
    i = j;
  }
}
