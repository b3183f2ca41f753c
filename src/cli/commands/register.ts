// `fsm-edge register`: (re-)register an installed POP with the federation hub (issue 6). Completes a
// registration left pending because the hub was down during install; safe to run any number of times
// (server-side apply: one Cluster per site, however often it runs).

import type { Command } from 'commander';
import pLimit from 'p-limit';
import { DEFAULT_OPTIONS, registerSite } from '../../install/install.js';
import type { RunReport } from '../../engine/runner.js';
import type { Host } from '../../transport/host.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { CliError, EXIT_FAILED, outputFor, UsageError } from '../output.js';
import { connectSite, phasePrinter, reportJson, selectSites, timeoutOverrides } from './install.js';

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
      const sites = selectSites(files, opts);
      const missing = sites.filter((s) => !s.site.spec.hub).map((s) => s.site.metadata.name);
      if (missing.length) throw new UsageError(`site ${missing.join(', ')} names no hub (spec.hub)`, 'add spec.hub (ref, region, zone, group) to the Site');
      const multi = sites.length > 1;
      const limit = pLimit(4);
      const results = await Promise.all(
        sites.map((sel) =>
          limit(async () => {
            let host: Host | undefined;
            const printer = phasePrinter(out, sel.site.metadata.name, multi);
            try {
              const conn = await connectSite(sel, { acceptNewHostKey: opts.acceptNewHostKey === true, dryRun: opts.dryRun === true }, out);
              host = conn.host;
              const r = await registerSite({
                site: sel.site,
                ...(sel.hub ? { hub: sel.hub } : {}),
                configDir: sel.configDir,
                options: { ...DEFAULT_OPTIONS, dryRun: opts.dryRun === true, trustKeys: [], ...timeoutOverrides(out.io.env) },
                host,
                newHostKeys: conn.newPins.map((p) => p.fingerprint),
                onEvent: printer.onEvent,
              });
              return { ...reportJson(r), registration: r.ctx.registration ?? { state: 'pending' } };
            } catch (e) {
              if (!multi) throw e;
              return { site: sel.site.metadata.name, ok: false, error: e instanceof Error ? e.message : String(e) };
            } finally {
              printer.stop();
              await host?.close().catch(() => {});
            }
          }),
        ),
      );
      const ok = results.every((r) => r.ok);
      out.result({ ok, sites: results }, () => {
        for (const r of results) {
          const reg = (r as { registration?: { state: string; reason?: string } }).registration;
          out.line(`${r.ok ? out.color.green('✓') : out.color.red('✗')} ${r.site}: ${opts.dryRun ? 'plan printed above' : reg ? `registration ${reg.state}${reg.reason ? ` (${reg.reason})` : ''}` : 'failed'}`);
        }
      });
      if (!ok) {
        if (!multi) throw new CliError(`${results[0]!.site}: registration failed${(results[0] as Partial<RunReport>).error ? '' : ''}`, EXIT_FAILED);
        out.exitCode = EXIT_FAILED;
      }
    });
}

