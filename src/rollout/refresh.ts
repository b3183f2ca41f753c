// `fsm-edge status --refresh`: ask the POPs instead of trusting this controller's records. Each POP's journal
// (the truth: it lives on the POP, whoever installed it) is read over SSH — host keys checked against the pins,
// never accepted, since a status must not trust a new key; a bounded wait per POP; a limited number at once —
// and the controller's record of the site is rebuilt from it: the bundle the POP last installed and its last
// run. A POP that does not answer is reported as such and its record is left as it was.

import pLimit from 'p-limit';
import type { SiteTarget } from '../engine/run-sites.js';
import { type Journal, JournalStore } from '../engine/journal.js';
import { connectHost } from '../transport/connect.js';
import type { Host } from '../transport/host.js';
import { HostKeyError } from '../transport/host-keys.js';
import { readSiteRecord, type RunSummary, type SiteRecord, writeSiteRecord } from '../state/site-record.js';

export interface PopView {
  site: string;
  reachable: boolean;
  /** Why the POP did not answer (unreachable, timed out, host key refused). */
  error?: string;
  checkedAt: string;
  bundle?: { name: string; digest: string; installedAt: string };
  lastRun?: { id: string; operation: string; outcome: string; startedAt: string; failedPhase?: string; controller?: string };
  /** The journal was damaged or belonged to another site. */
  warning?: string;
}

export interface RefreshOptions {
  /** The controller's state directory (records). */
  root: string;
  /** POPs asked at once (default 16). */
  concurrency?: number;
  /** Per POP, connecting and reading included (default 20 s). */
  timeoutMs?: number;
  /** Opens the connection (default: SSH with the site's pinned host keys, none accepted). */
  connect?: (t: SiteTarget) => Promise<Host>;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
}

export const REFRESH_TIMEOUT_MS = 20_000;

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '';
}

/** Reads one POP's journal within `timeoutMs`; a connection that arrives after the deadline is closed. */
async function askPop(
  t: SiteTarget,
  o: Required<Pick<RefreshOptions, 'timeoutMs' | 'connect'>>,
  at: string,
): Promise<{ view: PopView; journal?: Journal }> {
  const site = t.site.metadata.name;
  let host: Host | undefined;
  let late = false;
  const work = (async () => {
    const h = await o.connect(t);
    host = h;
    if (late) {
      // The deadline passed while connecting: nobody waits for this connection any more.
      await h.close().catch(() => {});
      throw new Error('connected after the deadline');
    }
    return new JournalStore(host).read(site);
  })();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${o.timeoutMs < 1000 ? `${o.timeoutMs} ms` : `${Math.round(o.timeoutMs / 1000)}s`}`)),
      o.timeoutMs,
    );
  });
  try {
    const { journal, warning } = await Promise.race([work, deadline]);
    // A damaged journal is reported, and rewrites no record (it says nothing about what is installed).
    return { view: { ...fromJournal(site, journal, at), ...(warning ? { warning } : {}) }, ...(warning ? {} : { journal }) };
  } catch (e) {
    work.catch(() => {});
    const error = e instanceof HostKeyError ? `host key refused: ${firstLine(e)}` : firstLine(e);
    return { view: { site, reachable: false, error, checkedAt: at } };
  } finally {
    clearTimeout(timer);
    late = true;
    if (host) await (host as Host).close().catch(() => {});
  }
}

export function fromJournal(site: string, j: Journal, at: string): PopView {
  const last = j.runs.at(-1);
  return {
    site,
    reachable: true,
    checkedAt: at,
    ...(j.bundle ? { bundle: { name: j.bundle.name, digest: j.bundle.digest, installedAt: j.bundle.installedAt } } : {}),
    ...(last
      ? {
          lastRun: {
            id: last.id,
            operation: last.operation,
            outcome: last.outcome,
            startedAt: last.startedAt,
            ...(last.failedPhase ? { failedPhase: last.failedPhase } : {}),
            ...(last.controller ? { controller: last.controller } : {}),
          },
        }
      : {}),
  };
}

/** The record as the POP's journal has it: bundle and last run from the journal; the rest as it was. */
export function recordFromJournal(rec: SiteRecord | undefined, t: SiteTarget, j: Journal, at: string): SiteRecord {
  const ssh = t.site.spec.ssh;
  const base: SiteRecord = rec ?? {
    version: 1,
    site: t.site.metadata.name,
    updatedAt: at,
    host: { address: ssh.host, port: ssh.port, user: ssh.user, hostKeys: [...(ssh.hostKeys ?? [])] },
    versions: {},
    // Not in the journal: what the install chose is known again after the next install or rollout.
    modes: { datastore: 'unknown', profile: 'unknown', ingress: false, multicluster: false },
    registration: { state: 'none', reason: 'not known to this controller: record rebuilt from the POP journal' },
    escrowed: [],
    history: [],
  };
  const next: SiteRecord = { ...base, updatedAt: at };
  if (j.bundle) {
    const same = base.bundle?.digest === j.bundle.digest;
    next.bundle = { name: j.bundle.name, digest: j.bundle.digest, ...(same && base.bundle?.signer ? { signer: base.bundle.signer } : {}) };
  } else delete next.bundle;
  const last = j.runs.at(-1);
  if (last && last.id !== base.lastRun?.id) {
    const run = runSummary(j, last);
    next.lastRun = run;
    if (run.ok) next.lastSuccess = run;
    if (!next.history.some((h) => h.id === run.id))
      next.history = [
        ...next.history,
        {
          id: run.id,
          operation: run.operation,
          ok: run.ok,
          startedAt: run.startedAt,
          durationMs: run.durationMs,
          ...(run.failedPhase ? { failedPhase: run.failedPhase } : {}),
        },
      ];
  }
  return next;
}

function runSummary(j: Journal, run: Journal['runs'][number]): RunSummary {
  const phases = Object.entries(j.phases)
    .filter(([, p]) => p.runId === run.id)
    .map(([id, p]) => ({ id, status: 'done', durationMs: p.durationMs, summary: p.summary }));
  return {
    id: run.id,
    operation: run.operation,
    ok: run.outcome === 'done',
    dryRun: false,
    startedAt: run.startedAt,
    durationMs: run.finishedAt ? Date.parse(run.finishedAt) - Date.parse(run.startedAt) : 0,
    ...(run.failedPhase ? { failedPhase: run.failedPhase } : {}),
    ...(run.error ? { error: run.error } : {}),
    phases,
    // The journal does not keep what a run cost on the wire.
    roundTrips: 0,
    bytesSent: 0,
  };
}

/** Asks every POP (at most `concurrency` at once), rewrites the records of those that answered. */
export async function refreshFromPops(targets: readonly SiteTarget[], o: RefreshOptions): Promise<PopView[]> {
  const env = o.env ?? process.env;
  const connect =
    o.connect ?? ((t: SiteTarget) => connectHost(t.site, { baseDir: t.configDir, acceptNewHostKey: false, env }) as Promise<Host>);
  const limit = pLimit(Math.max(1, o.concurrency ?? 16));
  const now = o.now ?? (() => new Date());
  return Promise.all(
    targets.map((t) =>
      limit(async () => {
        const at = now().toISOString();
        const { view, journal } = await askPop(t, { timeoutMs: o.timeoutMs ?? REFRESH_TIMEOUT_MS, connect }, at);
        const name = t.site.metadata.name;
        if (journal) writeSiteRecord(o.root, recordFromJournal(readSiteRecord(o.root, name), t, journal, at));
        return view;
      }),
    ),
  );
}
