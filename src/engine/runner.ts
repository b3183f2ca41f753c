// Runs phases in order against one host: each phase is skipped when the POP's journal says it finished with
// the same inputs and its own check agrees, else applied (or, in a dry run, planned — same code path). Every
// finished phase is journaled at once, so a kill at any point loses at most the phase in flight, and that
// phase is idempotent. Emits a line per phase; returns one report for `--json`.

import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Host } from '../transport/host.js';
import { Changes, PhaseRefusal, type Phase, type PhaseOutcome } from './phase.js';
import { inputsDigest, JournalStore, type Journal, type JournalRun } from './journal.js';

export interface StepOutcome extends PhaseOutcome {
  /**
   * The phase could not finish for a reason outside the POP that is not a failure (the hub is down):
   * reported, not journaled, so the next run (or `fsm-edge register`) does it.
   */
  pending?: string;
}

export interface InstallPhase<Ctx> extends Phase<Ctx> {
  /** What the result depends on (rendered files, digests, versions); a change re-runs the phase. */
  inputs?(ctx: Ctx): unknown | Promise<unknown>;
  /** Runs every time (facts, preflight, sync): it feeds later phases, or is as cheap as its own check. */
  readonly always?: boolean;
  apply(ctx: Ctx, host: Host, changes: Changes): Promise<StepOutcome>;
}

export type PhaseStatus = 'done' | 'unchanged' | 'planned' | 'pending' | 'failed' | 'refused' | 'not-run';

export interface PhaseReport {
  id: string;
  title: string;
  status: PhaseStatus;
  durationMs: number;
  summary: string;
  changes: string[];
  warnings: string[];
  metrics: Record<string, number>;
  /** Refusals: the reason and the fix. */
  reason?: string;
  fix?: string;
  error?: string;
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
  roundTrips: number;
  bytesSent: number;
}

export type RunEvent =
  | { type: 'phase-start'; id: string; title: string }
  | { type: 'phase-end'; report: PhaseReport }
  | { type: 'warning'; message: string };

export interface RunOptions {
  site: string;
  operation?: string;
  dryRun: boolean;
  journalPath?: string;
  bundleDigest?: string;
  onEvent?: (ev: RunEvent) => void;
  /** Stop before a phase when aborted (Ctrl-C): the journal stays consistent. */
  signal?: AbortSignal;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export async function runPhases<Ctx>(
  phases: InstallPhase<Ctx>[],
  ctx: Ctx,
  host: Host,
  opts: RunOptions,
): Promise<RunReport> {
  const started = Date.now();
  const runId = `${new Date(started).toISOString().replace(/[:.]/g, '').slice(0, 15)}-${randomUUID().slice(0, 8)}`;
  const store = new JournalStore(host, opts.journalPath);
  const emit = opts.onEvent ?? (() => {});
  const warnings: string[] = [];
  const reports: PhaseReport[] = [];
  const report = (): RunReport => {
    const stats = host.stats();
    const failed = reports.find((r) => r.status === 'failed' || r.status === 'refused');
    return {
      site: opts.site,
      host: host.name,
      operation: opts.operation ?? 'install',
      runId,
      dryRun: opts.dryRun,
      ok: !failed,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      phases: reports,
      warnings,
      ...(failed ? { failedPhase: failed.id, error: failed.error ?? failed.reason } : {}),
      roundTrips: stats.roundTrips,
      bytesSent: stats.bytesSent,
    };
  };

  let journal: Journal;
  try {
    const read = await store.read(opts.site);
    journal = read.journal;
    if (read.warning) {
      warnings.push(read.warning);
      emit({ type: 'warning', message: read.warning });
    }
  } catch (e) {
    reports.push({ id: 'journal', title: 'read the install journal', status: 'failed', durationMs: 0, summary: '', changes: [], warnings: [], metrics: {}, error: errorText(e) });
    return report();
  }

  const run: JournalRun = {
    id: runId,
    operation: opts.operation ?? 'install',
    startedAt: new Date(started).toISOString(),
    outcome: 'running',
    controller: hostname(),
    ...(opts.bundleDigest ? { bundleDigest: opts.bundleDigest } : {}),
  };
  // The run is journaled when the first phase writes; a dry run writes nothing at all.
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
  for (const phase of phases) {
    if (stopped || opts.signal?.aborted) {
      reports.push({ id: phase.id, title: phase.title, status: 'not-run', durationMs: 0, summary: '', changes: [], warnings: [], metrics: {} });
      continue;
    }
    emit({ type: 'phase-start', id: phase.id, title: phase.title });
    const t0 = Date.now();
    const base = { id: phase.id, title: phase.title, changes: [] as string[], warnings: [] as string[], metrics: {} as Record<string, number> };
    let r: PhaseReport;
    try {
      const digest = inputsDigest(phase.inputs ? await phase.inputs(ctx) : null);
      const entry = journal.phases[phase.id];
      const journaled = !phase.always && entry?.inputs === digest;
      if (journaled && (!phase.check || (await phase.check(ctx, host)))) {
        r = { ...base, status: 'unchanged', durationMs: Date.now() - t0, summary: `unchanged since ${entry.finishedAt}` };
      } else {
        const changes = new Changes(opts.dryRun);
        const out = await phase.apply(ctx, host, changes);
        const status: PhaseStatus = out.pending ? 'pending' : opts.dryRun ? (changes.planned.length ? 'planned' : 'unchanged') : out.changes.length ? 'done' : 'unchanged';
        r = {
          ...base,
          status,
          durationMs: Date.now() - t0,
          summary: out.summary,
          changes: opts.dryRun ? changes.planned : out.changes,
          warnings: out.warnings ?? [],
          metrics: out.metrics ?? {},
        };
        if (out.pending) pending = true;
        else if (!opts.dryRun && !phase.always) {
          journal.phases[phase.id] = { inputs: digest, finishedAt: new Date().toISOString(), durationMs: r.durationMs, summary: out.summary, runId };
          await save();
        }
      }
    } catch (e) {
      stopped = true;
      r =
        e instanceof PhaseRefusal
          ? { ...base, status: 'refused', durationMs: Date.now() - t0, summary: e.reason, reason: e.reason, fix: e.fix, error: e.message }
          : { ...base, status: 'failed', durationMs: Date.now() - t0, summary: errorText(e).split('\n')[0] ?? '', error: errorText(e) };
      // A refusal changed nothing, and nothing is written for it either; a failure is journaled (best effort:
      // the link or the disk may be what failed) so the next run, or another controller, sees where it stopped.
      if (r.status === 'failed' && !opts.dryRun) {
        run.outcome = 'failed';
        run.failedPhase = phase.id;
        run.error = (r.error ?? '').slice(0, 500);
        run.finishedAt = new Date().toISOString();
        await save().catch(() => {});
      }
    }
    for (const w of r.warnings) warnings.push(`${phase.id}: ${w}`);
    reports.push(r);
    emit({ type: 'phase-end', report: r });
  }

  if (!stopped && runJournaled) {
    run.outcome = pending ? 'pending' : 'done';
    run.finishedAt = new Date().toISOString();
    await save().catch((e) => warnings.push(`could not finish the journal: ${errorText(e)}`));
  }
  return report();
}
