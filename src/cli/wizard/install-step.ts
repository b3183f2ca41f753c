// The wizard installs through the same library call as `fsm-edge install` (the engine's runSites with the
// install operation), with the connection it already holds and the bundle it already chose and verified: no
// argv round trip, no second connection, no second hash of the bundle. `installArgv` is only printed, as the
// command an operator re-runs by hand.

import { resolve } from 'node:path';
import { shellQuote } from '../../transport/remote-command.js';
import { runSites, type SiteTarget } from '../../engine/run-sites.js';
import { SharedBundle } from '../../engine/shared-run.js';
import { installOperation } from '../../install/operations.js';
import type { Host } from '../../transport/host.js';
import { renderStatusTable, siteStatus } from '../commands/status.js';
import { selectTargets } from '../commands/install.js';
import { EXIT_FAILED, EXIT_OK, type Output } from '../output.js';
import { installOptionsFrom, printInstallResults, runPrinter } from '../site-runs.js';
import { readSiteRecord } from '../../state/site-record.js';
import { stateDir } from '../../state/paths.js';

export interface InstallArgs {
  siteFile: string;
  bundleDir: string;
  trustKeys: readonly string[];
  hubFile?: string;
  dryRun?: boolean;
}

/** argv after `fsm-edge`, as the operator would type it (printed as the command to re-run). */
export function installArgv(a: InstallArgs): string[] {
  return [
    'install',
    a.siteFile,
    '--bundle',
    a.bundleDir,
    ...a.trustKeys.flatMap((k) => ['--trust-key', k]),
    ...(a.hubFile ? ['--hub', a.hubFile] : []),
    ...(a.dryRun ? ['--dry-run'] : []),
  ];
}

export function shellWords(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

export interface WizardInstall {
  /** The site file as written (or its draft), read exactly as `fsm-edge install` reads it. */
  siteFile: string;
  /** Where pins and relative paths belong: the final site file. */
  finalFile: string;
  hubFile?: string;
  bundle: SharedBundle;
  host: Host;
  dryRun: boolean;
}

/** Opens the chosen bundle once for the wizard's dry run and install (signature and document verified). */
export function openWizardBundle(dir: string, trustKeys: readonly string[]): Promise<SharedBundle> {
  return SharedBundle.open(
    resolve(dir),
    trustKeys.map((k) => resolve(k)),
  );
}

/** Runs the install (or its dry run) on the wizard's connection; prints like `fsm-edge install`; returns the exit code. */
export async function runWizardInstall(w: WizardInstall, out: Output): Promise<number> {
  const [t] = selectTargets([w.siteFile], w.hubFile ? { hub: w.hubFile } : {});
  const target: SiteTarget = { ...t!, file: w.finalFile, host: w.host };
  const printer = runPrinter(out, false, w.dryRun ? 'plan for' : 'installing');
  const options = installOptionsFrom(out.io.env, {
    dryRun: w.dryRun,
    ...(printer.onSyncProgress ? { onSyncProgress: printer.onSyncProgress } : {}),
  });
  const results = await runSites([target], installOperation(options), {
    dryRun: w.dryRun,
    bundle: w.bundle,
    onEvent: printer.onEvent,
    env: out.io.env,
  }).finally(printer.stop);
  printInstallResults(out, results, w.dryRun);
  return results[0]!.report.ok ? EXIT_OK : EXIT_FAILED;
}

/** The status table for the site just installed, from this controller's record. */
export function printStatus(siteFile: string, hubFile: string | undefined, out: Output): void {
  const targets = selectTargets([siteFile], hubFile ? { hub: hubFile } : {});
  const root = stateDir(undefined, out.io.env);
  out.line(renderStatusTable(targets.map((t) => siteStatus(t, readSiteRecord(root, t.site.metadata.name)))));
}
