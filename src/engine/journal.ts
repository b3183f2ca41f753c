// The journal on the POP (`/var/lib/fsm-edge/journal.json`): which phases finished, with which inputs, in
// which run. A re-run after any failure — a dropped link, a killed controller, a crashed POP — reads it and
// continues where it stopped; a different controller (a colleague's laptop, a fleet runner) sees the same
// state because it lives on the POP, not on whoever started the install. Written atomically (temp + rename).

import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Host } from '../transport/host.js';
import { POP_JOURNAL } from './pop-layout.js';

export const JOURNAL_PATH = POP_JOURNAL;
const KEEP_RUNS = 20;

export interface JournalPhase {
  /** Digest of what the phase's result depends on; a change re-runs it. */
  inputs: string;
  finishedAt: string;
  durationMs: number;
  summary: string;
  /** The run that finished it. */
  runId: string;
}

export interface JournalRun {
  id: string;
  /** `install`, `register`, later `upgrade`, `restore`. */
  operation: string;
  startedAt: string;
  finishedAt?: string;
  outcome: 'running' | 'done' | 'failed' | 'pending';
  /** Bundle digest the run installed from (recovery re-installs the same bundle). */
  bundleDigest?: string;
  /** Where it stopped and why (never secrets: messages come from our own errors). */
  failedPhase?: string;
  error?: string;
  /** Who ran it, for a fleet with many controllers. */
  controller?: string;
}

/** The bundle the POP's last successful install ran from: what a later run must not silently go back from. */
export interface JournalBundle {
  name: string;
  digest: string;
  /** The bundle's build serial and time (bundle.json `build`), when it has them. */
  serial?: number;
  createdAt?: string;
  installedAt: string;
}

/** The last k3s upgrade that did not hold: the new binary never became ready and the previous one was restored. */
export interface JournalK3sRollback {
  from: string;
  to: string;
  /** `rolled-back`: the previous k3s runs again; `rollback-failed`: it did not come back either. */
  outcome: 'rolled-back' | 'rollback-failed';
  reason: string;
  at: string;
}

export interface Journal {
  version: 1;
  site: string;
  phases: Record<string, JournalPhase>;
  runs: JournalRun[];
  bundle?: JournalBundle;
  /** The bundle installed before `bundle` (an upgrade replaced it): its blobs stay in the store for going back. */
  previousBundle?: JournalBundle;
  /** Blob hex digests (this POP's arch) of `bundle` and `previousBundle`, by bundle digest: what the store keeps. */
  bundleBlobs?: Record<string, string[]>;
  k3sRollback?: JournalK3sRollback;
}

export function emptyJournal(site: string): Journal {
  return { version: 1, site, phases: {}, runs: [] };
}

/** Canonical JSON (sorted keys) so equal inputs always give the same digest. */
export function canonicalJson(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonicalJson).join(',')}]`;
  if (x && typeof x === 'object') {
    const entries = Object.entries(x as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(x ?? null);
}

export function inputsDigest(x: unknown): string {
  return 'sha256:' + createHash('sha256').update(canonicalJson(x)).digest('hex');
}

const JournalBundleSchema = z.object({
  name: z.string(),
  digest: z.string(),
  serial: z.number().optional(),
  createdAt: z.string().optional(),
  installedAt: z.string(),
});

const JournalSchema = z.object({
  version: z.literal(1),
  site: z.string(),
  phases: z.record(
    z.string(),
    z.object({ inputs: z.string(), finishedAt: z.string(), durationMs: z.number(), summary: z.string(), runId: z.string() }),
  ),
  runs: z.array(
    z.looseObject({
      id: z.string(),
      operation: z.string(),
      startedAt: z.string(),
      outcome: z.enum(['running', 'done', 'failed', 'pending']),
    }),
  ),
  bundle: JournalBundleSchema.optional(),
  previousBundle: JournalBundleSchema.optional(),
  bundleBlobs: z.record(z.string(), z.array(z.string().regex(/^[a-f0-9]{64}$/))).optional(),
  k3sRollback: z
    .object({
      from: z.string(),
      to: z.string(),
      outcome: z.enum(['rolled-back', 'rollback-failed']),
      reason: z.string(),
      at: z.string(),
    })
    .optional(),
});

export class JournalStore {
  /** The batched probe's section that carries the journal text. */
  static readonly SECTION = 'journal';

  constructor(
    private readonly host: Host,
    readonly path = JOURNAL_PATH,
  ) {}

  /** The journal, or a fresh one. A damaged journal is not fatal: the phases' own checks still hold. */
  async read(site: string): Promise<{ journal: Journal; warning?: string }> {
    const buf = await this.host.readFile(this.path, { sudo: true });
    return this.parse(buf?.toString('utf8'), site);
  }

  /** Parses journal text read from the POP (by `read`, or by the run's batched probe). */
  parse(text: string | undefined, site: string): { journal: Journal; warning?: string } {
    if (!text?.trim()) return { journal: emptyJournal(site) };
    try {
      const j = JournalSchema.parse(JSON.parse(text)) as Journal;
      if (j.site !== site) {
        return {
          journal: emptyJournal(site),
          warning: `the POP's journal belongs to site "${j.site}", not "${site}"; starting a new one (every phase re-checks the host)`,
        };
      }
      return { journal: j };
    } catch (e) {
      const why = e instanceof z.ZodError ? 'unknown journal format' : (e as Error).message;
      return {
        journal: emptyJournal(site),
        warning: `the POP's journal ${this.path} is unreadable (${why}); starting a new one (every phase re-checks the host)`,
      };
    }
  }

  async write(journal: Journal): Promise<void> {
    journal.runs = journal.runs.slice(-KEEP_RUNS);
    // Atomic (temp file + rename, parent created): a cut link leaves the previous journal, never half of one.
    await this.host.writeFile(this.path, JSON.stringify(journal, null, 2) + '\n', { sudo: true, mode: 0o644 });
  }
}
