// What `install`, `register` and the wizard print while `runSites` works, and how its results become output and
// an exit code. Decides nothing about the POPs: that is the engine's and the operations' job.

import cliProgress from 'cli-progress';
import { formatBytes } from '../bundle/inspect.js';
import type { SiteEvent, SiteResult } from '../engine/run-sites.js';
import type { PhaseReport, RunReport } from '../engine/runner.js';
import { DEFAULT_TIMEOUTS, type InstallOptions } from '../install/context.js';
import { formatRate } from '../install/sync.js';
import type { SiteRecord } from '../state/site-record.js';
import type { SyncProgress } from '../transport/host.js';
import { CliError, EXIT_FAILED, type Output, UsageError } from './output.js';

const SYMBOL: Record<PhaseReport['status'], string> = {
  done: '✓',
  unchanged: '=',
  planned: '~',
  pending: '…',
  failed: '✗',
  refused: '✗',
  'not-run': ' ',
};

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
}

/** One line per phase as it ends, on stderr (so `--json` keeps stdout clean), plus a sync progress bar on a TTY. */
export function runPrinter(out: Output, multi: boolean, verb: string) {
  const c = out.errColor;
  const tty = out.io.stderr.isTTY === true && !out.json;
  const bars = new Map<string, cliProgress.SingleBar>();
  const stopBar = (site: string) => {
    bars.get(site)?.stop();
    bars.delete(site);
  };
  const onEvent = (site: string, ev: SiteEvent) => {
    const prefix = multi ? `${site}: ` : '';
    if (ev.type === 'connected') return out.json ? undefined : out.note(`${prefix}${verb} ${site} on ${ev.host}`);
    if (ev.type === 'pinned') return out.note(`${site}: pinned host key ${ev.fingerprint} (${ev.label}) in ${ev.file}`);
    if (ev.type === 'warning') return out.warn(`${prefix}${ev.message}`);
    if (ev.type === 'phase-start') return;
    stopBar(site);
    const r = ev.report;
    const colour =
      r.status === 'failed' || r.status === 'refused' ? c.red : r.status === 'pending' ? c.yellow : r.status === 'done' ? c.green : c.dim;
    out.note(`${prefix}${colour(SYMBOL[r.status])} ${r.id.padEnd(12)} ${seconds(r.durationMs).padStart(6)}  ${r.summary}`);
    if (r.status === 'planned') for (const ch of r.changes) out.note(`${prefix}    - ${ch}`);
    for (const w of r.warnings) out.warn(`${prefix}${r.id}: ${w}`);
    if (r.status === 'refused') {
      out.note(`${prefix}    ${c.bold('refused:')} ${r.reason}`);
      out.note(`${prefix}    ${c.bold('fix:')} ${r.fix}`);
    } else if (r.status === 'failed' && r.error && r.error !== r.summary) {
      out.note(
        r.error
          .split('\n')
          .slice(1)
          .map((l) => `${prefix}    ${l}`)
          .join('\n'),
      );
    }
  };
  const onSyncProgress = tty
    ? (site: string, p: SyncProgress) => {
        let bar = bars.get(site);
        if (!bar) {
          bar = new cliProgress.SingleBar(
            {
              format: `${multi ? `${site}: ` : ''}  sync [{bar}] {percentage}% {sent}/{total} {rate} ETA {eta_formatted}`,
              stream: process.stderr,
              hideCursor: true,
              clearOnComplete: true,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.totalBytes || 1, 0, { sent: '0 B', total: formatBytes(p.totalBytes), rate: '' });
          bars.set(site, bar);
        }
        bar.setTotal(p.totalBytes || 1);
        bar.update(p.sentBytes, { sent: formatBytes(p.sentBytes), total: formatBytes(p.totalBytes), rate: formatRate(p.bytesPerSecond) });
      }
    : undefined;
  return {
    onEvent,
    onSyncProgress,
    stop: () => {
      for (const s of [...bars.keys()]) stopBar(s);
    },
  };
}

/** The `--json` document of one site: its run report, and the record the run wrote. */
export function siteJson(r: SiteResult<unknown>, extra: Record<string, unknown> = {}) {
  return { ...r.report, ...(r.record ? { record: r.record } : {}), ...extra };
}

/** `512k`, `2M`, `1.5m`, `100000` → bytes per second. */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?B(?:\/s)?)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--max-rate ${text}: expected a rate like 512k, 2M or 1000000 (bytes per second)`);
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * mult);
}

/** Install options from the environment: test and lab hooks for shorter waits (`FSM_EDGE_K3S_TIMEOUT=120` s, …). */
export function installOptionsFrom(env: NodeJS.ProcessEnv, base: Partial<InstallOptions> & { dryRun: boolean }): InstallOptions {
  const s = (name: string) => (env[name] && Number(env[name]) > 0 ? Number(env[name]) * 1000 : undefined);
  const o: InstallOptions = { ...DEFAULT_TIMEOUTS, ...base };
  const k = s('FSM_EDGE_K3S_TIMEOUT');
  const m = s('FSM_EDGE_MESH_TIMEOUT');
  const r = s('FSM_EDGE_REGISTER_TIMEOUT');
  if (k) o.k3sStartTimeoutMs = k;
  if (m) o.meshTimeoutMs = m;
  if (r) o.registerTimeoutMs = r;
  if (env.FSM_EDGE_STATE_DIR) o.stateDir = env.FSM_EDGE_STATE_DIR;
  return o;
}

/**
 * Exit status of a run over sites: a single site that failed throws (one error line with the fix); with many
 * sites the table says which failed and the exit code is 1.
 */
export function failIfNotOk(out: Output, results: readonly SiteResult<unknown>[], what: string): void {
  const failed = results.filter((r) => !r.report.ok);
  if (!failed.length) return;
  // With --json the document already carries every failure: exactly one JSON document goes to stdout.
  if (results.length > 1 || out.json) {
    out.exitCode = EXIT_FAILED;
    return;
  }
  const r: RunReport = failed[0]!.report;
  const refused = r.phases.some((p) => p.status === 'refused');
  throw new CliError(
    `${r.site}: ${refused ? 'refused' : 'failed'} in ${r.failedPhase ?? what}${refused ? ' — nothing was changed on the POP' : ''}`,
    EXIT_FAILED,
    r.failure ?? (refused ? 'refused' : 'failed'),
    refused
      ? undefined
      : r.failure === 'locked'
        ? 'wait for the other run to finish, then run again'
        : 'fix the cause above and run the same command again: it continues where it stopped',
  );
}

/** One line per site after an install (or its dry run): what happened, how long, how many round trips. */
export function printInstallResults(out: Output, results: readonly SiteResult<unknown>[], dryRun: boolean): void {
  for (const { report: rep, record } of results) {
    const reg = (record as SiteRecord | undefined)?.registration?.state;
    const what = dryRun
      ? rep.ok
        ? 'plan printed above; nothing was changed'
        : `refused${rep.failedPhase ? ` in ${rep.failedPhase}` : ''}`
      : rep.ok
        ? `installed${reg && reg !== 'none' ? `, registration ${reg}` : ''}`
        : `failed${rep.failedPhase ? ` in ${rep.failedPhase}` : ''}`;
    out.line(
      `${rep.ok ? out.color.green('✓') : out.color.red('✗')} ${rep.site}: ${what} (${seconds(rep.durationMs)}, ${rep.roundTrips} round trips)`,
    );
  }
}
