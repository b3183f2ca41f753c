// `fsm-edge register`: (re-)register installed POPs with the federation hub. Completes a registration left
// pending because the hub was down during install; safe to run any number of times (server-side apply: one
// Cluster per site, however often it runs).

import type { Command } from 'commander';
import { runSites } from '../../engine/run-sites.js';
import { registerOperation } from '../../install/operations.js';
import type { InstallContext } from '../../install/context.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { outputFor, UsageError } from '../output.js';
import { failIfNotOk, installOptionsFrom, runPrinter, siteJson } from '../site-runs.js';
import { selectTargets } from './install.js';

interface RegisterCliOptions {
  hub?: string;
  site: string[];
  dryRun?: boolean;
  acceptNewHostKey?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('register')
    .description('register an installed POP with the federation hub (an FSM Cluster resource on the hub)')
    .argument('<config...>', 'Site or Fleet files; a Hub document may sit in the same file')
    .option('--hub <file>', 'Hub document, when not in the config files')
    .option('--site <name>', 'only these sites of a Fleet (repeatable)', repeatable, [])
    .option('--dry-run', 'print the Cluster resource that would be applied, change nothing')
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--json', JSON_OPTION_HELP)
    .action(async function (this: Command, files: string[], opts: RegisterCliOptions) {
      const out = outputFor(this);
      const targets = selectTargets(files, opts);
      const missing = targets.filter((s) => !s.site.spec.hub).map((s) => s.site.metadata.name);
      if (missing.length)
        throw new UsageError(`site ${missing.join(', ')} names no hub (spec.hub)`, 'add spec.hub (ref, region, zone, group) to the Site');
      const printer = runPrinter(out, targets.length > 1, 'registering');
      const results = await runSites(targets, registerOperation(installOptionsFrom(out.io.env, { dryRun: opts.dryRun === true })), {
        dryRun: opts.dryRun === true,
        acceptNewHostKey: opts.acceptNewHostKey === true,
        onEvent: printer.onEvent,
        env: out.io.env,
      }).finally(printer.stop);
      const registration = (ctx?: InstallContext) => ctx?.registration ?? { state: 'pending' as const };
      out.result(
        { ok: results.every((r) => r.report.ok), sites: results.map((r) => siteJson(r, { registration: registration(r.ctx) })) },
        () => {
          for (const r of results) {
            const reg = r.report.ok ? registration(r.ctx) : undefined;
            const what = opts.dryRun
              ? 'plan printed above'
              : reg
                ? `registration ${reg.state}${'reason' in reg && reg.reason ? ` (${reg.reason})` : ''}`
                : `failed in ${r.report.failedPhase ?? 'register'}`;
            out.line(`${r.report.ok ? out.color.green('✓') : out.color.red('✗')} ${r.site}: ${what}`);
          }
        },
      );
      failIfNotOk(out, results, 'register');
    });
}
