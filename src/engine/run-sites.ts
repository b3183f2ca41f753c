// The one library entry every operation runs through: `runSites(targets, operation, options)`. Per run: the
// bundle is verified once (signature and document before any site is touched; each arch's blobs hashed once),
// one hub client per Hub. Per site, at most `parallel` at a time: connect (or reuse the caller's connection),
// run the operation's phases, let the operation record the result, close what was opened. Events are tagged
// with the site; nothing here prints.

import pLimit from 'p-limit';
import type { Hub } from '../config/hub.js';
import type { Site } from '../config/site.js';
import { connectHost } from '../transport/connect.js';
import type { Host } from '../transport/host.js';
import { HostKeyError, type NewPin, recordHostKeyPins } from '../transport/host-keys.js';
import { errorText, failureKind, type FailureKind, PhaseRefusal } from './failure.js';
import type { Journal } from './journal.js';
import type { AnyPhase } from './phase.js';
import { newRunId, type PhaseReport, type RunEvent, type RunReport, runPhases } from './runner.js';
import { HubClients, SharedBundle } from './shared-run.js';

export interface SiteTarget {
  site: Site;
  hub?: Hub;
  /** The file the site came from (relative paths; host-key pins are written back there). */
  file: string;
  configDir: string;
  /** A connection the caller already opened (the wizard's). The caller closes it. */
  host?: Host;
  /** Pins the caller accepted on that connection (recorded with the site). */
  newPins?: readonly NewPin[];
}

export interface SharedRun {
  bundle?: SharedBundle;
  hubs: HubClients;
}

export interface SiteOperation<Ctx> {
  /** `install`, `register`, … (journal and records). */
  readonly name: string;
  readonly phases: AnyPhase<Ctx>[];
  readonly needsBundle: boolean;
  context(target: SiteTarget, shared: SharedRun): Ctx;
  /** The POP's journal as this run read it (downgrade checks, recovery). */
  onJournal?(ctx: Ctx, journal: Journal): void;
  /** The run succeeded: what the journal should now say beyond the phases (e.g. the bundle the POP runs). */
  onSuccess?(ctx: Ctx, journal: Journal): void;
  /** After the phases (also after a failed run): e.g. write the site record. Returns what the caller reports. */
  finish?(ctx: Ctx, report: RunReport, pins: readonly string[]): unknown;
  /** Closes what the context opened (API tunnels). */
  close?(ctx: Ctx): Promise<void>;
}

export type SiteEvent =
  | RunEvent
  | { type: 'connected'; host: string }
  | { type: 'pinned'; fingerprint: string; label: string; file: string };

export interface RunSitesOptions {
  dryRun: boolean;
  /** Required when the operation needs a bundle, unless `bundle` is given. */
  bundleDir?: string;
  /** A bundle the caller already opened (the wizard: one verification for its dry run and its install). */
  bundle?: SharedBundle;
  trustKeys?: readonly string[];
  parallel?: number;
  acceptNewHostKey?: boolean;
  signal?: AbortSignal;
  /**
   * Asked right before each site starts (when a parallel slot is free): false leaves the site not started, reported
   * as `aborted` in a `start` step. A rollout whose failure budget is spent stops new starts this way; sites already
   * running finish.
   */
  shouldStart?(site: string): boolean;
  onEvent?(site: string, ev: SiteEvent): void;
  /** Debug lines from the transport. */
  onLog?(line: string): void;
  env?: NodeJS.ProcessEnv;
}

export interface SiteResult<Ctx> {
  site: string;
  report: RunReport;
  ctx?: Ctx;
  /** What the operation's `finish` returned (the site record). */
  record?: unknown;
}

/** A report for a site whose run stopped before its phases: the step that stopped it and why. */
function stepReport(
  site: string,
  operation: string,
  dryRun: boolean,
  step: { id: string; title: string },
  e: unknown,
  host = site,
): RunReport {
  const kind: FailureKind = failureKind(e);
  const refusal = e instanceof PhaseRefusal ? e : undefined;
  const phase: PhaseReport = {
    ...step,
    status: refusal ? 'refused' : 'failed',
    durationMs: 0,
    summary: refusal ? refusal.reason : (errorText(e).split('\n')[0] ?? ''),
    changes: [],
    warnings: [],
    metrics: {},
    error: errorText(e),
    failure: kind,
    ...(refusal ? { reason: refusal.reason, fix: refusal.fix } : {}),
  };
  return {
    site,
    host,
    operation,
    runId: newRunId(),
    dryRun,
    ok: false,
    startedAt: new Date().toISOString(),
    durationMs: 0,
    phases: [phase],
    warnings: [],
    failedPhase: step.id,
    error: phase.error!,
    failure: kind,
    roundTrips: 0,
    bytesSent: 0,
  };
}

/** Pin writes to one file are serialised: two sites of one Fleet file must not overwrite each other's pins. */
class PinWriter {
  private readonly chains = new Map<string, Promise<void>>();
  write(file: string, pins: readonly NewPin[], site: string): Promise<void> {
    const next = (this.chains.get(file) ?? Promise.resolve()).then(() => recordHostKeyPins(file, pins, site));
    this.chains.set(
      file,
      next.catch(() => {}),
    );
    return next;
  }
}

export async function runSites<Ctx>(
  targets: readonly SiteTarget[],
  op: SiteOperation<Ctx>,
  opts: RunSitesOptions,
): Promise<SiteResult<Ctx>[]> {
  const emit = (site: string, ev: SiteEvent) => opts.onEvent?.(site, ev);
  const shared: SharedRun = { hubs: new HubClients(opts.env) };
  if (op.needsBundle && opts.bundle) shared.bundle = opts.bundle;
  else if (op.needsBundle) {
    if (!opts.bundleDir) throw new Error(`internal: ${op.name} needs a bundle directory`);
    try {
      shared.bundle = await SharedBundle.open(opts.bundleDir, opts.trustKeys ?? []);
    } catch (e) {
      // Nothing has been sent or changed anywhere: every site is refused for the same reason.
      const refusal = bundleRefusal(e);
      return targets.map((t) =>
        stopped(t.site.metadata.name, stepReport(t.site.metadata.name, op.name, opts.dryRun, VERIFY_STEP, refusal)),
      );
    }
  }
  /** A site whose run ended before its phases: its one step is reported like a phase, so it is printed too. */
  function stopped(site: string, report: RunReport, ctx?: Ctx): SiteResult<Ctx> {
    emit(site, { type: 'phase-end', report: report.phases[0]! });
    return { site, report, ...(ctx ? { ctx } : {}) };
  }
  const pins = new PinWriter();
  const limit = pLimit(Math.max(1, opts.parallel ?? 4));
  return Promise.all(targets.map((t) => limit(() => runOne(t))));

  async function runOne(t: SiteTarget): Promise<SiteResult<Ctx>> {
    const name = t.site.metadata.name;
    if (opts.signal?.aborted) {
      return stopped(
        name,
        stepReport(
          name,
          op.name,
          opts.dryRun,
          CONNECT_STEP,
          Object.assign(new Error('stopped before this site started'), { kind: 'aborted' }),
        ),
      );
    }
    if (opts.shouldStart && !opts.shouldStart(name)) {
      const notStarted = Object.assign(new Error('not started: the caller stopped new starts'), { kind: 'aborted' });
      return stopped(name, stepReport(name, op.name, opts.dryRun, START_STEP, notStarted));
    }
    let host = t.host;
    const newPins: NewPin[] = [...(t.newPins ?? [])];
    if (!host) {
      try {
        host = await connectHost(t.site, {
          baseDir: t.configDir,
          acceptNewHostKey: opts.acceptNewHostKey === true,
          onNewHostKey: (pin) => newPins.push(pin),
          ...(opts.env ? { env: opts.env } : {}),
          ...(opts.onLog ? { onLog: opts.onLog } : {}),
        });
      } catch (e) {
        const err =
          e instanceof HostKeyError
            ? new PhaseRefusal(
                'connect',
                e.message,
                'check the POP’s host key out of band, then pin it in spec.ssh.hostKeys (or pass --accept-new-host-key for a first contact)',
              )
            : e;
        return stopped(name, stepReport(name, op.name, opts.dryRun, CONNECT_STEP, err));
      }
    }
    const owned = host !== t.host;
    let ctx: Ctx | undefined;
    try {
      emit(name, { type: 'connected', host: host.name });
      if (newPins.length && !opts.dryRun && owned) {
        await pins.write(t.file, newPins, name);
        for (const p of newPins) emit(name, { type: 'pinned', fingerprint: p.fingerprint, label: p.label, file: t.file });
      }
      ctx = op.context(t, shared);
      const c = ctx;
      const report = await runPhases(op.phases, c, host, {
        site: name,
        operation: op.name,
        dryRun: opts.dryRun,
        ...(shared.bundle ? { bundleDigest: shared.bundle.digest } : {}),
        onEvent: (ev) => emit(name, ev),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(op.onJournal ? { onJournal: (j: Journal) => op.onJournal!(c, j) } : {}),
        ...(op.onSuccess ? { onSuccess: (j: Journal) => op.onSuccess!(c, j) } : {}),
      });
      const record = op.finish?.(
        c,
        report,
        newPins.map((p) => p.fingerprint),
      );
      return { site: name, report, ctx: c, ...(record !== undefined ? { record } : {}) };
    } catch (e) {
      return stopped(name, stepReport(name, op.name, opts.dryRun, { id: op.name, title: op.name }, e, host.name), ctx);
    } finally {
      if (ctx) await op.close?.(ctx).catch(() => {});
      if (owned) await host.close().catch(() => {});
    }
  }
}

const VERIFY_STEP = { id: 'verify', title: 'verify the bundle' };
const CONNECT_STEP = { id: 'connect', title: 'connect to the POP' };
const START_STEP = { id: 'start', title: 'start the site' };

function bundleRefusal(e: unknown): unknown {
  const v = e as { name?: string; file?: string; problem?: string };
  if (v?.name === 'VerifyError') {
    return new PhaseRefusal(
      'verify',
      `the bundle failed verification: ${v.file}: ${v.problem}`,
      'use an intact bundle from its builder (rebuild or copy it again), and trust only its signer’s key',
    );
  }
  if (v?.name === 'BundleFormatError' || v?.name === 'SigningKeyError') {
    return new PhaseRefusal('verify', errorText(e), 'pass the bundle directory with --bundle and its signer’s public key with --trust-key');
  }
  return e;
}
