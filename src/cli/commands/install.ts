// `fsm-edge install`: put k3s and FSM on POPs from a bundle, over SSH or locally (issue 6).
// Also the shared pieces `register` and `status` use: loading sites with their hub, connecting, printing a
// line per phase.

import path from 'node:path';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import pLimit from 'p-limit';
import { loadSites, sourceOf, type Hub, type Site } from '../../config/index.js';
import { connectHost } from '../../transport/connect.js';
import { recordHostKeyPins, HostKeyError, type NewPin } from '../../transport/host-keys.js';
import type { Host, SyncProgress } from '../../transport/host.js';
import { DEFAULT_OPTIONS, installSite, type SiteRunResult } from '../../install/install.js';
import type { InstallOptions } from '../../install/context.js';
import type { PhaseReport, RunEvent, RunReport } from '../../engine/runner.js';
import { formatBytes } from '../../bundle/inspect.js';
import { formatRate } from '../../install/sync.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { CliError, EXIT_FAILED, EXIT_USAGE, outputFor, UsageError, type Output } from '../output.js';

export interface SiteSelection {
  site: Site;
  hub?: Hub;
  /** The file the site came from (relative paths; host-key pins are written back there). */
  file: string;
  configDir: string;
}

/** Sites from the given files (Site/Fleet/Hub mixed), filtered by `--site`, each with its Hub document. */
export function selectSites(files: string[], opts: { hub?: string; site?: string[] }): SiteSelection[] {
  const cfg = loadSites(opts.hub ? [...files, opts.hub] : files);
  let sites = cfg.sites;
  if (opts.site?.length) {
    const unknown = opts.site.filter((n) => !sites.some((s) => s.metadata.name === n));
    if (unknown.length) throw new UsageError(`no site named ${unknown.join(', ')} in ${files.join(', ')}`, `sites there: ${sites.map((s) => s.metadata.name).join(', ')}`);
    sites = sites.filter((s) => opts.site!.includes(s.metadata.name));
  }
  if (sites.length === 0) throw new UsageError(`no Site in ${files.join(', ')}`, 'give a Site or Fleet file');
  return sites.map((site) => {
    const file = sourceOf(site)?.file ?? files[0]!;
    let hub: Hub | undefined;
    if (site.spec.hub) {
      hub = cfg.hubs.find((h) => h.metadata.name === site.spec.hub!.ref);
      if (!hub) {
        throw new CliError(
          `site ${site.metadata.name} registers with hub "${site.spec.hub.ref}", but no Hub document of that name was given`,
          EXIT_USAGE,
          'config',
          'add the Hub document to the site file or pass it with --hub hub.yaml',
        );
      }
    }
    return { site, ...(hub ? { hub } : {}), file, configDir: path.dirname(path.resolve(file)) };
  });
}

/** `512k`, `2M`, `1.5m`, `100000` → bytes per second. */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?B(?:\/s)?)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--max-rate ${text}: expected a rate like 512k, 2M or 1000000 (bytes per second)`);
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * mult);
}

export interface ConnectOptions {
  acceptNewHostKey?: boolean;
  dryRun?: boolean;
}

/** Connects to a site's POP; host-key problems become an operator-facing error (nothing was run). */
export async function connectSite(sel: SiteSelection, opts: ConnectOptions, out: Output): Promise<{ host: Host; newPins: NewPin[] }> {
  const newPins: NewPin[] = [];
  let host: Host;
  try {
    host = await connectHost(sel.site, {
      baseDir: sel.configDir,
      acceptNewHostKey: opts.acceptNewHostKey === true,
      onNewHostKey: (pin) => newPins.push(pin),
      ...(out.debug ? { onLog: (l: string) => out.note(l) } : {}),
    });
  } catch (e) {
    if (e instanceof HostKeyError) throw new CliError(`${sel.site.metadata.name}: ${e.message}`, EXIT_FAILED, 'host-key');
    throw e;
  }
  if (newPins.length && !opts.dryRun) {
    await recordHostKeyPins(sel.file, newPins, sel.site.metadata.name);
    for (const p of newPins) out.note(`${sel.site.metadata.name}: pinned host key ${p.fingerprint} (${p.label}) in ${sel.file}`);
  }
  return { host, newPins };
}

const SYMBOL: Record<PhaseReport['status'], string> = {
  done: '✓',
  unchanged: '=',
  planned: '~',
  pending: '…',
  failed: '✗',
  refused: '✗',
  'not-run': ' ',
};

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
}

/** One line per phase as it ends, on stderr (so `--json` keeps stdout clean), plus a sync progress bar on a TTY. */
export function phasePrinter(out: Output, siteName: string, multi: boolean) {
  const c = out.errColor;
  const prefix = multi ? `${siteName}: ` : '';
  const tty = out.io.stderr.isTTY === true && !out.json;
  let bar: cliProgress.SingleBar | undefined;
  const stopBar = () => {
    bar?.stop();
    bar = undefined;
  };
  const onEvent = (ev: RunEvent) => {
    if (ev.type === 'warning') return out.warn(`${prefix}${ev.message}`);
    if (ev.type === 'phase-start') return;
    stopBar();
    const r = ev.report;
    const colour = r.status === 'failed' || r.status === 'refused' ? c.red : r.status === 'pending' ? c.yellow : r.status === 'done' ? c.green : c.dim;
    out.note(`${prefix}${colour(SYMBOL[r.status])} ${r.id.padEnd(12)} ${seconds(r.durationMs).padStart(6)}  ${r.summary}`);
    if (r.status === 'planned') for (const ch of r.changes) out.note(`${prefix}    - ${ch}`);
    for (const w of r.warnings) out.warn(`${prefix}${r.id}: ${w}`);
    if (r.status === 'refused') {
      out.note(`${prefix}    ${c.bold('refused:')} ${r.reason}`);
      out.note(`${prefix}    ${c.bold('fix:')} ${r.fix}`);
    } else if (r.status === 'failed' && r.error && r.error !== r.summary) {
      out.note(r.error.split('\n').slice(1).map((l) => `${prefix}    ${l}`).join('\n'));
    }
  };
  const onSyncProgress = tty
    ? (p: SyncProgress) => {
        if (!bar) {
          bar = new cliProgress.SingleBar(
            { format: `${prefix}  sync [{bar}] {percentage}% {sent}/{total} {rate} ETA {eta_formatted}`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.totalBytes || 1, 0, { sent: '0 B', total: formatBytes(p.totalBytes), rate: '' });
        }
        bar.setTotal(p.totalBytes || 1);
        bar.update(p.sentBytes, { sent: formatBytes(p.sentBytes), total: formatBytes(p.totalBytes), rate: formatRate(p.bytesPerSecond) });
      }
    : undefined;
  return { onEvent, onSyncProgress, stop: stopBar };
}

export function reportJson(r: SiteRunResult | { report: RunReport; record?: unknown }) {
  return { ...r.report, ...(r.record ? { record: r.record } : {}) };
}

interface InstallCliOptions {
  bundle: string;
  trustKey: string[];
  hub?: string;
  site: string[];
  dryRun?: boolean;
  acceptNewHostKey?: boolean;
  maxRate?: string;
  parallel: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('install')
    .description('install k3s and FSM on POPs from a verified airgap bundle and register them with the hub')
    .argument('<config...>', 'Site or Fleet files (site.yaml, fleet.yaml); a Hub document may sit in the same file')
    .requiredOption('--bundle <dir>', 'airgap bundle directory for the POP architecture')
    .option('--trust-key <file>', 'public key the bundle signature must verify against (repeatable)', repeatable, [])
    .option('--hub <file>', 'Hub document, when not in the config files')
    .option('--site <name>', 'only these sites of a Fleet (repeatable)', repeatable, [])
    .option('--dry-run', 'connect and check, then print what would change without changing anything')
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--max-rate <rate>', 'cap the upload rate per POP, e.g. 512k, 2M (bytes per second)')
    .option('--parallel <n>', 'POPs installed at the same time', '4')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
Every step is idempotent: running install again continues where it stopped and re-sends only missing blobs.
The bundle signature is checked before anything is sent. A hub that is down leaves the registration pending;
\`fsm-edge register\` completes it later.

Examples:
  fsm-edge install site.yaml --bundle airgap/bundles/fsm-edge-arm64 --trust-key signing.pub --dry-run
  fsm-edge install fleet.yaml --bundle airgap/bundles/fsm-edge-amd64 --max-rate 1M --json`,
    )
    .action(async function (this: Command, files: string[], opts: InstallCliOptions) {
      const out = outputFor(this);
      const parallel = Number(opts.parallel);
      if (!Number.isInteger(parallel) || parallel < 1) throw new UsageError(`--parallel ${opts.parallel}: expected a whole number ≥ 1`);
      const options: InstallOptions = {
        ...DEFAULT_OPTIONS,
        dryRun: opts.dryRun === true,
        trustKeys: opts.trustKey.map((f) => path.resolve(f)),
        ...(opts.maxRate ? { maxRate: parseRate(opts.maxRate) } : {}),
        ...timeoutOverrides(out.io.env),
      };
      if (options.trustKeys.length === 0) {
        throw new UsageError('no --trust-key given: the bundle signature must be checked against the signer’s public key', 'pass --trust-key signing.pub');
      }
      const sites = selectSites(files, opts);
      const multi = sites.length > 1;
      const limit = pLimit(parallel);
      const results = await Promise.all(
        sites.map((sel) =>
          limit(async () => {
            const name = sel.site.metadata.name;
            let host: Host | undefined;
            const printer = phasePrinter(out, name, multi);
            try {
              const conn = await connectSite(sel, { acceptNewHostKey: opts.acceptNewHostKey === true, dryRun: options.dryRun }, out);
              host = conn.host;
              if (!out.json) out.note(`${multi ? `${name}: ` : ''}${options.dryRun ? 'plan for' : 'installing'} ${name} on ${host.name}`);
              const r = await installSite({
                site: sel.site,
                ...(sel.hub ? { hub: sel.hub } : {}),
                configDir: sel.configDir,
                bundleDir: path.resolve(opts.bundle),
                options: { ...options, ...(printer.onSyncProgress ? { onSyncProgress: printer.onSyncProgress } : {}) },
                host,
                newHostKeys: conn.newPins.map((p) => p.fingerprint),
                onEvent: printer.onEvent,
              });
              return reportJson(r);
            } catch (e) {
              if (!multi) throw e;
              const err = e instanceof Error ? e.message : String(e);
              out.note(`${name}: ${out.errColor.red('✗')} ${err}`);
              return { site: name, ok: false, error: err };
            } finally {
              printer.stop();
              await host?.close().catch(() => {});
            }
          }),
        ),
      );
      const ok = results.every((r) => r.ok);
      out.result({ ok, dryRun: options.dryRun, sites: results }, () => {
        for (const r of results) {
          const rep = r as Partial<RunReport> & { site: string; ok: boolean; error?: string };
          const reg = (r as { record?: { registration?: { state: string } } }).record?.registration?.state;
          const what = options.dryRun ? 'plan printed above; nothing was changed' : rep.ok ? `installed${reg && reg !== 'none' ? `, registration ${reg}` : ''}` : `failed${rep.failedPhase ? ` in ${rep.failedPhase}` : ''}`;
          out.line(`${rep.ok ? out.color.green('✓') : out.color.red('✗')} ${rep.site}: ${what}${rep.durationMs !== undefined ? ` (${seconds(rep.durationMs)}, ${rep.roundTrips ?? 0} round trips)` : ''}`);
        }
      });
      if (!ok) {
        if (!multi) {
          const r = results[0] as Partial<RunReport>;
          const refused = r.phases?.some((p) => p.status === 'refused');
          throw new CliError(`${results[0]!.site}: ${refused ? 'refused' : 'failed'} in ${r.failedPhase ?? 'install'}${refused ? ' — nothing was changed on the POP' : ''}`, EXIT_FAILED, refused ? 'refused' : 'failed', refused ? undefined : 'fix the cause above and run the same command again: it continues where it stopped');
        }
        out.exitCode = EXIT_FAILED;
      }
    });
}

/** Test and lab hooks: shorter waits (`FSM_EDGE_K3S_TIMEOUT=120` seconds, …). */
export function timeoutOverrides(env: NodeJS.ProcessEnv): Partial<InstallOptions> {
  const s = (name: string) => (env[name] && Number(env[name]) > 0 ? Number(env[name]) * 1000 : undefined);
  const o: Partial<InstallOptions> = {};
  const k = s('FSM_EDGE_K3S_TIMEOUT');
  const m = s('FSM_EDGE_MESH_TIMEOUT');
  const r = s('FSM_EDGE_REGISTER_TIMEOUT');
  if (k) o.k3sStartTimeoutMs = k;
  if (m) o.meshTimeoutMs = m;
  if (r) o.registerTimeoutMs = r;
  if (env.FSM_EDGE_STATE_DIR) o.stateDir = env.FSM_EDGE_STATE_DIR;
  return o;
}
