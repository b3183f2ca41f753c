// `fsm-edge rollout`: install a bundle over a whole Fleet, unattended — canary, waves, failure budget, gates,
// soak, resume — by the rollout operation (src/rollout/). Parses options, prints its events, sets the exit code.

import path from 'node:path';
import type { Command } from 'commander';
import { stringify as stringifyYaml } from 'yaml';
import { shellQuote } from '../../transport/remote-command.js';
import { FsmEdgeError } from '../../config/errors.js';
import { loadSites } from '../../config/index.js';
import { SharedBundle } from '../../engine/shared-run.js';
import { selectSites } from '../../engine/targets.js';
import { rolloutInstall } from '../../rollout/install-rollout.js';
import type { SiteOutcome } from '../../rollout/outcome.js';
import { LiveTable, type LiveTableOptions, type TableStream } from '../../rollout/live-table.js';
import { CONFIG_DIR, type EmitJobInput, type JobFile, relativeInside, rolloutJob, setupCommands } from '../../rollout/emit-job.js';
import { planRollout } from '../../rollout/plan.js';
import { inShard, MAX_SHARDS, parseShard, shardLabel } from '../../rollout/shard.js';
import { secretsUsedBy } from '../../config/secrets-used.js';
import { formatBytesShort, formatDuration } from '../../rollout/report.js';
import type { RolloutEvent, RolloutReport } from '../../rollout/run.js';
import type { SiteEvent, SiteTarget } from '../../engine/run-sites.js';
import type { SyncProgress } from '../../transport/host.js';
import { stateDir } from '../../state/paths.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { EXIT_FAILED, type Output, outputFor, UsageError } from '../output.js';
import { installOptionsFrom, parseRate, runPrinter } from '../site-runs.js';

interface RolloutCliOptions {
  bundle: string;
  trustKey: string[];
  hub?: string;
  dryRun?: boolean;
  resume?: boolean;
  acceptNewHostKey?: boolean;
  allowDowngrade?: boolean;
  maxRate?: string;
  json?: boolean;
  shard?: string;
  emitJob?: boolean;
  shards?: string;
  image?: string;
  namespace: string;
  bundleClaim: string;
  stateClaim: string;
}

const MARK: Record<SiteOutcome['status'], string> = {
  ok: '✓',
  failed: '✗',
  unhealthy: '!',
  'not-started': '-',
  interrupted: '…',
  skipped: '=',
};

const earlier = (sites: readonly string[]) => (sites.length ? `, ${sites.length} done earlier` : '');

/** A site's result as it ends: `✓ pop1 ok 34s, 120.0 MiB, 15 round trips`, and for a failure its reason and fix. */
function siteEndLine(out: Output, s: SiteOutcome): string {
  const c = out.errColor;
  const colour = s.status === 'ok' ? c.green : s.status === 'failed' || s.status === 'unhealthy' ? c.red : c.dim;
  const figures = ` ${formatDuration(s.durationMs)}, ${formatBytesShort(s.bytesSent)}, ${s.roundTrips} round trips`;
  const lines = [`${colour(MARK[s.status])} ${s.site}: ${s.status}${figures}${s.note ? ` — ${s.note}` : ''}`];
  if (s.reason && s.status !== 'ok') lines.push(`    ${s.failure ?? 'reason'}${s.failedPhase ? ` in ${s.failedPhase}` : ''}: ${s.reason}`);
  if (s.fix && (s.status === 'failed' || s.status === 'unhealthy')) lines.push(`    fix: ${s.fix}`);
  return lines.join('\n');
}

function progressLine(out: Output, ev: RolloutEvent): string {
  const c = out.errColor;
  switch (ev.type) {
    case 'site-end':
      return siteEndLine(out, ev.outcome);
    case 'wave-start':
      return c.bold(
        `== ${ev.wave.name}: ${ev.toRun.length} site(s)${earlier(ev.doneEarlier)}, tolerates ${ev.wave.maxFailures} failure(s)`,
      );
    case 'wave-end': {
      const n = (s: SiteOutcome['status']) => ev.wave.sites.filter((x) => x.status === s).length;
      const failed = n('failed') + n('unhealthy');
      return `== ${ev.wave.name}: ${n('ok')} ok, ${failed} failed, ${n('not-started')} not started; gate ${ev.wave.gate}`;
    }
    case 'soak':
      return `== ${ev.wave}: soaking ${ev.seconds}s, then checking its sites again`;
    case 'derived': {
      const which = ev.done.length ? ` (${ev.done.join(', ')})` : '';
      return `no rollout state: the POP journals show ${ev.done.length} site(s) already on this bundle${which}`;
    }
    case 'stopped':
      return c.red(`rollout stopped (${ev.by}): ${ev.reason}`);
    case 'warning':
      return `${out.errColor.yellow('warning:')} ${ev.message}`;
  }
}

function printReport(out: Output, r: RolloutReport): void {
  for (const w of r.waves) {
    out.line(`${w.name}${r.dryRun ? '' : ` (gate ${w.gate}${w.soak ? `, soak ${w.soak}` : ''})`}`);
    for (const s of w.sites) {
      const figures =
        s.status === 'not-started' || s.doneEarlier
          ? ''
          : ` ${formatDuration(s.durationMs)}, ${formatBytesShort(s.bytesSent)}, ${s.roundTrips} round trips`;
      const note = s.note ? ` — ${s.note}` : '';
      const colour =
        s.status === 'ok' ? out.color.green : s.status === 'failed' || s.status === 'unhealthy' ? out.color.red : out.color.dim;
      out.line(`  ${colour(MARK[s.status])} ${s.site.padEnd(20)} ${(s.arch ?? '-').padEnd(6)} ${s.status}${figures}${note}`);
      if (s.sends) out.line(`      sync: ${s.sends}`);
      if (s.reason && s.status !== 'ok')
        out.line(`      ${s.failure ?? 'reason'}${s.failedPhase ? ` in ${s.failedPhase}` : ''}: ${s.reason}`);
      if (s.fix && (s.status === 'failed' || s.status === 'unhealthy')) out.line(`      fix: ${s.fix}`);
    }
  }
  const counts = Object.entries(r.counts)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  if (r.dryRun) {
    out.line(`dry run: ${counts}; nothing was changed`);
    return;
  }
  out.line(
    r.ok
      ? out.color.green(`rollout done: ${counts}`)
      : out.color.red(`rollout ${r.outcome}${r.stoppedBy ? ` by ${r.stoppedBy}: ${r.stopReason}` : ''} (${counts})`),
  );
  if (r.files) out.line(`report: ${r.files.html} (and report.json)${r.files.logs ? `; a log per site in ${r.files.logs}` : ''}`);
}

/**
 * What a rollout prints while it runs. On a terminal (and without --json) a live table: one line per running
 * site, its phase, a bar with rate and ETA during sync, per-wave counts; each phase's details go to the site's log
 * file. Otherwise plain lines on stderr, one per phase as it ends, as install prints them.
 */
export function rolloutPrinter(out: Output, totalSites: number | undefined, verb: string, tableOptions: Partial<LiveTableOptions> = {}) {
  const table =
    out.io.stderr.isTTY === true && !out.json
      ? new LiveTable({ stream: out.io.stderr as TableStream, ...(totalSites !== undefined ? { totalSites } : {}), ...tableOptions })
      : undefined;
  if (!table) {
    const plain = runPrinter(out, true, verb);
    return { ...plain, onProgress: (ev: RolloutEvent) => out.note(progressLine(out, ev)), note: (l: string) => out.note(l) };
  }
  return {
    onEvent: (site: string, ev: SiteEvent) => {
      if (ev.type === 'warning') table.print(`${site}: ${out.errColor.yellow('warning:')} ${ev.message}`);
      if (ev.type === 'pinned') table.print(`${site}: pinned host key ${ev.fingerprint} (${ev.label}) in ${ev.file}`);
      table.onSite(site, ev);
    },
    onSyncProgress: (site: string, p: SyncProgress) => table.onSync(site, p),
    onProgress: (ev: RolloutEvent) => table.onRollout(ev, progressLine(out, ev)),
    note: (l: string) => table.print(l),
    stop: () => table.stop(),
  };
}

/** `--emit-job`: the Indexed Job, and (as comments, or in --json) the kubectl lines creating what it mounts. */
function emitJob(out: Output, file: string, opts: RolloutCliOptions, targets: readonly SiteTarget[], fleet: string): void {
  const shards = Number(opts.shards);
  if (!opts.shards || !Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS)
    throw new UsageError(`--emit-job needs --shards N (1 … ${MAX_SHARDS})`, 'e.g. --emit-job --shards 4');
  if (!opts.image)
    throw new UsageError(
      '--emit-job needs --image: the fsm-edge container image the pods run',
      'e.g. --image registry.example/fsm-edge:0.1.0',
    );
  if (opts.shard) throw new UsageError('--emit-job and --shard do not go together', 'the Job gives each pod its --shard');
  if (opts.acceptNewHostKey)
    throw new UsageError(
      '--emit-job does not take --accept-new-host-key: a pod cannot confirm a new host key',
      'pin every POP’s key first',
    );
  const fleetPath = path.resolve(file);
  const fleetDir = path.dirname(fleetPath);
  const config = new Map<string, JobFile>();
  const secrets = new Map<string, JobFile>();
  const env = new Set<string>();
  const addConfig = (abs: string, what: string) => {
    if (abs === fleetPath) return;
    const rel = relativeInside(fleetDir, abs, what);
    config.set(rel, { path: rel, source: path.relative(process.cwd(), abs) || abs });
  };
  for (const t of targets) {
    addConfig(path.resolve(t.file), 'site file');
    for (const use of secretsUsedBy(t.site, t.hub)) {
      if ('env' in use.ref) env.add(use.ref.env);
      else {
        const abs = path.resolve(fleetDir, use.ref.file);
        const rel = relativeInside(fleetDir, abs, `${t.site.metadata.name} ${use.field}`);
        secrets.set(rel, { path: rel, source: path.relative(process.cwd(), abs) || abs });
      }
    }
  }
  if (opts.hub) addConfig(path.resolve(opts.hub), 'hub file');
  const trustKeys = opts.trustKey.map((k) => {
    addConfig(path.resolve(k), 'trust key');
    return relativeInside(fleetDir, path.resolve(k), 'trust key');
  });
  const input: EmitJobInput = {
    fleet,
    shards,
    image: opts.image,
    namespace: opts.namespace,
    fleetFile: path.basename(fleetPath),
    configFiles: [...config.values()],
    secretFiles: [...secrets.values()],
    secretEnv: [...env],
    trustKeys,
    bundle: path.basename(path.resolve(opts.bundle)),
    bundleClaim: opts.bundleClaim,
    stateClaim: opts.stateClaim,
    extraArgs: [
      ...(opts.hub ? ['--hub', `${CONFIG_DIR}/${relativeInside(fleetDir, path.resolve(opts.hub), 'hub file')}`] : []),
      ...(opts.maxRate ? ['--max-rate', opts.maxRate] : []),
      ...(opts.allowDowngrade ? ['--allow-downgrade'] : []),
      ...(opts.resume ? ['--resume'] : []),
      ...(opts.dryRun ? ['--dry-run'] : []),
    ],
  };
  const job = rolloutJob(input);
  const setup = setupCommands(input);
  out.result({ ok: true, job, setup }, () => {
    out.line(`# fsm-edge rollout of fleet ${fleet} in ${shards} shard(s): create what the Job mounts first:`);
    for (const l of setup) out.line(l.startsWith('#') ? l : `#   ${l}`);
    // No YAML anchors (the labels appear twice): plain documents for every tool that reads them.
    out.line(stringifyYaml(job, { aliasDuplicateObjects: false }).trimEnd());
  });
}

export function register(program: Command): void {
  program
    .command('rollout')
    .description('roll a bundle out over a Fleet: canary, waves, failure budget, gates, soak; resumable')
    .argument('<fleet>', 'Fleet file (fleet.yaml); its spec.rollout is the policy; a Hub document may sit in the same file')
    .requiredOption('--bundle <dir>', 'airgap bundle directory')
    .option('--trust-key <file>', 'public key the bundle signature must verify against (repeatable)', repeatable, [])
    .option('--hub <file>', 'Hub document, when not in the fleet file')
    .option('--dry-run', 'print the waves and what each site would get, without changing anything')
    .option('--resume', 'continue this fleet’s rollout of this bundle: sites already done are skipped')
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--allow-downgrade', 'install a bundle older than the one a POP last installed')
    .option('--max-rate <rate>', 'cap the upload rate per POP, e.g. 512k, 2M (bytes per second)')
    .option('--shard <i/n>', 'roll out only this share of the fleet (by site name; 0/4 … 3/4 together cover it)')
    .option('--emit-job', 'print a Kubernetes Indexed Job that runs --shards shards of this rollout; changes nothing')
    .option('--shards <n>', 'with --emit-job: how many shards (pods) the Job runs')
    .option('--image <ref>', 'with --emit-job: the fsm-edge container image')
    .option('--namespace <ns>', 'with --emit-job: the namespace of the Job', 'fsm-edge')
    .option('--bundle-claim <pvc>', 'with --emit-job: the volume claim holding the bundle directory', 'fsm-edge-bundles')
    .option('--state-claim <pvc>', 'with --emit-job: the claim (ReadWriteMany) for state and reports', 'fsm-edge-state')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
Policy (Fleet spec.rollout): parallel, canary (a count or {matchLabels}), waves (counts or "25%"), maxFailures and
maxFailuresPerWave (counts or percentages), soak (seconds). A spent budget stops new starts; running sites finish.
Ctrl-C or SIGTERM does the same; run the same command with --resume to continue. Each real run writes
report.json and report.html under the controller state directory (rollouts/<fleet>-<bundle>/).
Exit code: 0 every site ok, 1 a site failed or the rollout stopped, 2 bad usage or configuration.

Past one controller: --shard i/n takes the sites whose name hashes to shard i (rendezvous hashing: adding a site
moves no other), with the fleet's policy applied within the share (its own canary and waves). --emit-job prints
an Indexed Job running each shard in a pod; \`fsm-edge report merge\` joins the shards' reports into one.

Examples:
  fsm-edge rollout fleet.yaml --bundle airgap/bundles/fsm-edge-amd64 --trust-key signing.pub --dry-run
  fsm-edge rollout fleet.yaml --bundle airgap/bundles/fsm-edge-amd64 --trust-key signing.pub --resume --json
  fsm-edge rollout fleet.yaml --bundle airgap/bundles/fsm-edge-amd64 --trust-key signing.pub --emit-job --shards 4 \\
    --image registry.example/fsm-edge:0.1.0 | kubectl apply -f -`,
    )
    .action(async function (this: Command, file: string, opts: RolloutCliOptions) {
      const out = outputFor(this);
      if (opts.trustKey.length === 0) {
        throw new UsageError(
          'no --trust-key given: the bundle signature must be checked against the signer’s public key',
          'pass --trust-key signing.pub',
        );
      }
      if (opts.dryRun && opts.resume)
        throw new UsageError('--dry-run and --resume do not go together', 'a dry run already skips sites that are on this bundle');
      const shard = opts.shard !== undefined ? parseShard(opts.shard) : undefined;
      const allTargets = selectSites([file], opts.hub ? { hub: opts.hub } : {});
      const targets = shard ? allTargets.filter((t) => inShard(t.site.metadata.name, shard)) : allTargets;
      const fleets = loadSites(opts.hub ? [file, opts.hub] : [file]).fleets;
      if (fleets.length !== 1)
        throw new UsageError(
          `${file}: expected one Fleet document, found ${fleets.length}`,
          'give the Fleet file (Site files go in its spec.sites)',
        );
      const fleet = fleets[0]!;
      if (opts.emitJob) {
        emitJob(out, file, opts, allTargets, fleet.metadata.name);
        return;
      }
      if (shard && targets.length === 0) {
        out.note(`shard ${shardLabel(shard)}: no site of ${fleet.metadata.name} falls in this share; nothing to do`);
        out.result({ ok: true, fleet: fleet.metadata.name, shard, sites: [] }, () => out.line('nothing to do'));
        return;
      }
      const plan = planRollout(
        targets.map((t) => ({ name: t.site.metadata.name, ...(t.site.metadata.labels ? { labels: t.site.metadata.labels } : {}) })),
        fleet.spec.rollout,
      );
      let bundle: SharedBundle;
      try {
        bundle = await SharedBundle.open(
          path.resolve(opts.bundle),
          opts.trustKey.map((f) => path.resolve(f)),
        );
      } catch (e) {
        throw new FsmEdgeError('refused', `bundle ${opts.bundle} did not verify: ${(e as Error).message}`, {
          fix: 'use an intact bundle from its builder and trust only its signer’s key (--trust-key); nothing was sent to any POP',
        });
      }

      // A dry run ends no site: the table's rollout count would stay at 0 — shown for real runs only.
      const printer = rolloutPrinter(out, opts.dryRun ? undefined : targets.length, opts.dryRun ? 'checking' : 'installing');
      const note = printer.note;
      const install = installOptionsFrom(out.io.env, {
        dryRun: opts.dryRun === true,
        ...(opts.maxRate ? { maxRate: parseRate(opts.maxRate) } : {}),
        ...(opts.allowDowngrade ? { allowDowngrade: true } : {}),
        ...(printer.onSyncProgress ? { onSyncProgress: printer.onSyncProgress } : {}),
      });
      const root = stateDir(install.stateDir, out.io.env);
      const resumeCommand = [
        'fsm-edge',
        'rollout',
        file,
        '--bundle',
        opts.bundle,
        ...opts.trustKey.flatMap((k) => ['--trust-key', k]),
        ...(opts.hub ? ['--hub', opts.hub] : []),
        ...(opts.maxRate ? ['--max-rate', opts.maxRate] : []),
        ...(opts.allowDowngrade ? ['--allow-downgrade'] : []),
        ...(shard ? ['--shard', shardLabel(shard)] : []),
        '--resume',
      ]
        .map(shellQuote)
        .join(' ');

      // Ctrl-C / SIGTERM: no new site starts; running phases reach their journal; the summary says how to resume.
      const stop = new AbortController();
      const onSignal = (sig: NodeJS.Signals) => {
        if (stop.signal.aborted) {
          // A second signal: the operator wants out now. Sites in flight continue from their POP journal on --resume.
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          note(`${sig} again: stopping now; to continue: ${resumeCommand}`);
          printer.stop(); // the live table shows the cursor again before the process goes
          process.kill(process.pid, sig);
          return;
        }
        note(`${sig}: no new site starts; sites already running stop at their next phase boundary`);
        stop.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const waves = plan.waves.map((w) => `${w.name} (${w.sites.length})`).join(', ');
      let report: RolloutReport;
      try {
        note(`rollout of ${fleet.metadata.name}: ${waves}; parallel ${plan.parallel}, budget ${plan.maxFailures}`);
        report = await rolloutInstall({
          fleet: fleet.metadata.name,
          plan,
          targets,
          bundle,
          install,
          stateDir: root,
          dryRun: opts.dryRun === true,
          resume: opts.resume === true,
          ...(shard ? { shard } : {}),
          acceptNewHostKey: opts.acceptNewHostKey === true,
          signal: stop.signal,
          onEvent: printer.onEvent,
          onProgress: printer.onProgress,
          env: out.io.env,
          ...(out.debug ? { onLog: note } : {}),
        });
      } finally {
        printer.stop();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      out.result({ ...report, ...(report.ok || report.dryRun ? {} : { resume: resumeCommand }) }, () => printReport(out, report));
      if (!report.ok) {
        out.exitCode = EXIT_FAILED;
        if (!report.dryRun) out.note(`to continue: ${resumeCommand}`);
      }
    });
}
