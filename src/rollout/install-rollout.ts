// A rollout of the install operation: the bundle opened and verified once for every wave, the soak and the
// resume checks (dry runs of the same operation), and what the rollout reads of each site's install
// (arch, registration, the bundle its journal names).

import path from 'node:path';
import type { SharedBundle } from '../engine/shared-run.js';
import type { SiteResult, SiteTarget, RunSitesOptions } from '../engine/run-sites.js';
import type { InstallContext, InstallOptions } from '../install/context.js';
import { installOperation } from '../install/operations.js';
import type { SiteRecord } from '../state/site-record.js';
import type { SiteFacts } from './outcome.js';
import type { RolloutPlan } from './plan.js';
import { previewRollout, type RolloutEvent, type RolloutReport, runRollout } from './run.js';
import { SiteLogs } from './site-logs.js';
import { rolloutId, rolloutReportDir } from './state.js';
import { writeRolloutReport } from './report.js';

/** Registration as a dry run sees it: the register phase plans nothing when the Cluster is Managed. */
function dryRunRegistration(r: SiteResult<InstallContext>): SiteFacts['registration'] {
  const reg = r.report.phases.find((p) => p.id === 'register');
  if (reg?.status !== 'unchanged') return undefined;
  // A pending registration is not a change in a dry run either; its summary says so.
  return /^registration pending/.test(reg.summary) ? 'pending' : 'managed';
}

export function installSiteFacts(r: SiteResult<InstallContext>): SiteFacts {
  const rec = r.record as SiteRecord | undefined;
  const ctx = r.ctx;
  const registration = rec?.registration.state ?? ctx?.registration?.state ?? (r.report.dryRun ? dryRunRegistration(r) : undefined);
  const reason = rec?.registration.reason ?? ctx?.registration?.reason;
  const arch = ctx?.decisions?.arch ?? rec?.arch;
  const digest = ctx?.journal?.bundle?.digest;
  return {
    ...(arch ? { arch } : {}),
    ...(registration ? { registration } : {}),
    ...(reason ? { registrationReason: reason } : {}),
    ...(digest ? { journalBundleDigest: digest } : {}),
  };
}

export interface InstallRolloutOptions {
  fleet: string;
  plan: RolloutPlan;
  targets: readonly SiteTarget[];
  bundle: SharedBundle;
  install: Omit<InstallOptions, 'dryRun'>;
  stateDir: string;
  dryRun: boolean;
  resume: boolean;
  /** `--shard i/n`: the targets are this shard's share; state and report are named for it. */
  shard?: { index: number; count: number };
  acceptNewHostKey?: boolean;
  signal?: AbortSignal;
  onEvent?: RunSitesOptions['onEvent'];
  onLog?(line: string): void;
  onProgress?(ev: RolloutEvent): void;
  env?: NodeJS.ProcessEnv;
}

/** Runs (or, with dryRun, previews) the rollout; a real run writes report.json and report.html. */
export async function rolloutInstall(o: InstallRolloutOptions): Promise<RolloutReport> {
  const reportDir = rolloutReportDir(o.stateDir, rolloutId(o.fleet, o.bundle.digest, o.shard));
  // A real run keeps one log per site beside its report; a dry run writes nothing.
  const logs = o.dryRun ? undefined : new SiteLogs(path.join(reportDir, 'logs'));
  const onEvent: RunSitesOptions['onEvent'] = (site, ev) => {
    try {
      logs?.write(site, ev);
    } catch {
      // A full or read-only state dir must not stop the rollout; the terminal still shows every event.
    }
    o.onEvent?.(site, ev);
  };
  const input = {
    fleet: o.fleet,
    plan: o.plan,
    targets: o.targets,
    bundle: { name: o.bundle.doc.name, digest: o.bundle.digest },
    operation: (dryRun: boolean) => installOperation({ ...o.install, dryRun }),
    facts: installSiteFacts,
    runOptions: {
      bundle: o.bundle,
      acceptNewHostKey: o.acceptNewHostKey === true,
      onEvent,
      ...(o.onLog ? { onLog: o.onLog } : {}),
      ...(o.env ? { env: o.env } : {}),
    },
    stateDir: o.stateDir,
    ...(o.shard ? { shard: o.shard } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  };
  if (o.dryRun) return previewRollout(input);
  const report = await runRollout({ ...input, resume: o.resume });
  report.files = { ...report.files!, logs: logs!.dir };
  writeRolloutReport(reportDir, report);
  return report;
}
