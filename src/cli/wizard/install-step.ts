// The wizard does not install anything itself: it hands the site file it wrote to the very `fsm-edge install`
// (and `status`) commands an operator runs by hand, in this process, with the same output. One code path.

import type { CliIO } from '../output.js';

export interface InstallArgs {
  siteFile: string;
  bundleDir: string;
  trustKeys: readonly string[];
  hubFile?: string;
  dryRun?: boolean;
}

/** argv after `fsm-edge`, as the operator would type it (also printed as the command to re-run). */
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
  return argv.map((w) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Runs `fsm-edge <argv>` in this process; returns its exit code. */
export async function runCli(argv: readonly string[], io: CliIO): Promise<number> {
  // Imported when used: main.ts registers this command, so a static import would be circular.
  const { main } = await import('../main.js');
  return main(['node', 'fsm-edge', ...argv], io);
}
