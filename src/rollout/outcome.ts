// What became of one site in a rollout, decided from the engine's report (its typed failure, not message text)
// and what the operation learnt about the site (arch, registration, the bundle its journal names).

import type { FailureKind } from '../engine/failure.js';
import type { SiteResult } from '../engine/run-sites.js';
import type { RunReport } from '../engine/runner.js';

export type SiteStatus = 'ok' | 'failed' | 'unhealthy' | 'not-started' | 'interrupted' | 'skipped';

/** What the rollout needs to know about a site beyond the run report (for install: from its record and journal). */
export interface SiteFacts {
  arch?: string;
  /** Registration on the hub after the run; `none` for a site without a hub. */
  registration?: 'managed' | 'pending' | 'failed' | 'none';
  registrationReason?: string;
  /** The bundle the POP's journal says it last installed successfully. */
  journalBundleDigest?: string;
}

export interface SiteOutcome {
  site: string;
  wave: string;
  status: SiteStatus;
  /** Why a site was skipped, not started, or is unhealthy; or that it was done by an earlier run of this rollout. */
  note?: string;
  doneEarlier?: boolean;
  arch?: string;
  host?: string;
  runId?: string;
  startedAt?: string;
  durationMs: number;
  bytesSent: number;
  roundTrips: number;
  phases: Array<{ id: string; status: string; durationMs: number; summary: string }>;
  registration?: string;
  failure?: FailureKind;
  failedPhase?: string;
  reason?: string;
  fix?: string;
  /** Dry runs: what the site would be sent (the sync phase's plan). */
  sends?: string;
}

/** The fix for a failure the phase did not name one for, by kind. */
export function fixFor(kind: FailureKind | undefined, resume: string): string {
  switch (kind) {
    case 'unreachable':
      return `check the link and SSH to the POP, then ${resume}`;
    case 'timeout':
      return `look at the POP (journal, k3s and FSM logs) for what it was waiting on, then ${resume}`;
    case 'locked':
      return `another controller is working on this POP: wait for it to finish, then ${resume}`;
    case 'aborted':
      return resume;
    default:
      return `fix the cause above, then ${resume}: the site continues from its POP journal`;
  }
}

const RESUME = 'run the rollout again with --resume';

/** A site's outcome from its run. `needsHub`: the site registers with a hub, so it must end Managed. */
export function outcomeOf(result: SiteResult<unknown>, wave: string, facts: SiteFacts, needsHub: boolean): SiteOutcome {
  const r: RunReport = result.report;
  const failed = r.phases.find((p) => p.status === 'failed' || p.status === 'refused');
  const base: SiteOutcome = {
    site: r.site,
    wave,
    status: 'ok',
    ...(facts.arch ? { arch: facts.arch } : {}),
    host: r.host,
    runId: r.runId,
    startedAt: r.startedAt,
    durationMs: r.durationMs,
    bytesSent: r.bytesSent,
    roundTrips: r.roundTrips,
    phases: r.phases.map((p) => ({ id: p.id, status: p.status, durationMs: p.durationMs, summary: p.summary })),
    ...(facts.registration ? { registration: facts.registration } : {}),
  };
  if (r.failure === 'aborted') {
    const before = r.failedPhase === 'start' || r.failedPhase === 'connect';
    return {
      ...base,
      status: before ? 'not-started' : 'interrupted',
      failure: 'aborted',
      ...(r.failedPhase ? { failedPhase: r.failedPhase } : {}),
      fix: RESUME,
    };
  }
  if (!r.ok) {
    return {
      ...base,
      status: 'failed',
      ...(r.failure ? { failure: r.failure } : {}),
      ...(r.failedPhase ? { failedPhase: r.failedPhase } : {}),
      reason: failed?.reason ?? (r.error ?? failed?.summary ?? 'failed').split('\n')[0]!,
      fix: failed?.fix ?? fixFor(r.failure, RESUME),
    };
  }
  // The runner stops between phases when the run is interrupted; such a report has no failure but is not done.
  if (r.phases.some((p) => p.status === 'not-run')) return { ...base, status: 'interrupted', failure: 'aborted', fix: RESUME };
  if (needsHub && facts.registration !== 'managed') {
    const why = facts.registrationReason ? `: ${facts.registrationReason}` : '';
    return {
      ...base,
      status: 'unhealthy',
      note: `installed, but registration is ${facts.registration ?? 'unknown'}${why}`,
      reason: `the hub does not report the site Managed (${facts.registration ?? 'unknown'})`,
      fix: 'check the hub (its controller and the site’s Cluster resource), run `fsm-edge register` for the site, then resume',
    };
  }
  return base;
}

/** Counts against the failure budget: a failure, or a site installed but not healthy at the gate. */
export const spendsBudget = (s: SiteStatus) => s === 'failed' || s === 'unhealthy';
