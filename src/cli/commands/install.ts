// `fsm-edge install`: put k3s and FSM on POPs from a verified bundle, over SSH or locally. Parses the options,
// hands the sites to the engine's runSites with the install operation, prints what it reports.

import path from 'node:path';
import type { Command } from 'commander';
import { formatSecretUse, loadSites, secretsUsedBy, sourceOf } from '../../config/index.js';
import { runSites, type SiteTarget } from '../../engine/run-sites.js';
import { LocalHost } from '../../transport/local-host.js';
import { selectSites } from '../../engine/targets.js';
import { installOperation } from '../../install/operations.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { outputFor, UsageError } from '../output.js';
import { failIfNotOk, installOptionsFrom, parseRate, printInstallResults, runPrinter, siteJson } from '../site-runs.js';

interface InstallCliOptions {
  bundle: string;
  trustKey: string[];
  hub?: string;
  site: string[];
  dryRun?: boolean;
  acceptNewHostKey?: boolean;
  allowDowngrade?: boolean;
  maxRate?: string;
  parallel: string;
  local?: boolean;
  json?: boolean;
}

/** The sites the command acts on (its input errors are usage errors: exit 2). */
export function selectTargets(files: string[], opts: { hub?: string; site?: string[] }) {
  return selectSites(files, opts);
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
    .option('--allow-downgrade', 'install a bundle older than the one the POP last installed')
    .option('--max-rate <rate>', 'cap the upload rate per POP, e.g. 512k, 2M (bytes per second)')
    .option('--parallel <n>', 'POPs installed at the same time', '4')
    .option('--local', 'install this machine instead of one over SSH (the technician on the POP, e.g. with a USB stick)')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
Every step is idempotent: running install again continues where it stopped and re-sends only missing blobs.
The bundle signature is checked before anything is sent. A hub that is down leaves the registration pending;
\`fsm-edge register\` completes it later.

With --local (one site, run as root on the POP) a Hub document is optional. Without one nothing is sent anywhere:
the FSM namespace is the default, the registration is left pending, the run ends with "registration pending" and
exit code 0, and \`fsm-edge register site.yaml\` from the controller completes it once the link works.

Examples:
  fsm-edge install site.yaml --bundle airgap/bundles/fsm-edge-arm64 --trust-key signing.pub --dry-run
  sudo ./fsm-edge install --local sites/site.yaml --bundle bundle --trust-key trust/signing.pub
  fsm-edge install fleet.yaml --bundle airgap/bundles/fsm-edge-amd64 --max-rate 1M --json`,
    )
    .action(async function (this: Command, files: string[], opts: InstallCliOptions) {
      const out = outputFor(this);
      const parallel = Number(opts.parallel);
      if (!Number.isInteger(parallel) || parallel < 1) throw new UsageError(`--parallel ${opts.parallel}: expected a whole number ≥ 1`);
      if (opts.trustKey.length === 0) {
        throw new UsageError(
          'no --trust-key given: the bundle signature must be checked against the signer’s public key',
          'pass --trust-key signing.pub',
        );
      }
      const targets = opts.local ? localTargets(files, opts) : selectTargets(files, opts);
      const multi = targets.length > 1;
      const printer = runPrinter(out, multi, opts.dryRun ? 'plan for' : 'installing');
      const options = installOptionsFrom(out.io.env, {
        dryRun: opts.dryRun === true,
        ...(opts.maxRate ? { maxRate: parseRate(opts.maxRate) } : {}),
        ...(opts.allowDowngrade ? { allowDowngrade: true } : {}),
        ...(printer.onSyncProgress ? { onSyncProgress: printer.onSyncProgress } : {}),
      });
      const results = await runSites(targets, installOperation(options), {
        dryRun: options.dryRun,
        bundleDir: path.resolve(opts.bundle),
        trustKeys: opts.trustKey.map((f) => path.resolve(f)),
        parallel,
        acceptNewHostKey: opts.acceptNewHostKey === true,
        onEvent: printer.onEvent,
        env: out.io.env,
        ...(out.debug ? { onLog: (l: string) => out.note(l) } : {}),
      }).finally(printer.stop);
      const ok = results.every((r) => r.report.ok);
      // A dry run says which controller secrets each site's files make it read, and which host receives each:
      // a site file (or a Fleet glob) decides that, so the operator sees it before anything is sent.
      const secrets = new Map(targets.map((t) => [t.site.metadata.name, secretsUsedBy(t.site, t.hub, t.configDir)]));
      if (options.dryRun && !out.json) {
        for (const [site, uses] of secrets) {
          out.note(`${multi ? `${site}: ` : ''}secrets this install reads:${uses.length ? '' : ' none'}`);
          for (const u of uses) out.note(`${multi ? `${site}: ` : ''}    - ${formatSecretUse(u)}`);
        }
      }
      const json = (r: (typeof results)[number]) =>
        siteJson(
          r,
          options.dryRun ? { secrets: (secrets.get(r.site) ?? []).map(({ field, source, sentTo }) => ({ field, source, sentTo })) } : {},
        );
      out.result({ ok, dryRun: options.dryRun, sites: results.map(json) }, () => printInstallResults(out, results, options.dryRun));
      if (opts.local && ok && !options.dryRun) {
        for (const r of results)
          if (r.ctx?.registration?.state !== 'managed' && targets.some((t) => t.site.metadata.name === r.site && t.site.spec.hub))
            out.note(`registration pending: run \`fsm-edge register ${files.join(' ')}\` from the controller when the hub is reachable`);
      }
      failIfNotOk(out, results, 'install');
    });
}

/**
 * The one site of an on-site install, run through LocalHost. A Hub document is optional here (the technician's
 * stick need not carry the hub's credentials): without one the register phase leaves the registration pending.
 */
export function localTargets(files: string[], opts: { hub?: string; site?: string[] }): SiteTarget[] {
  const cfg = loadSites(opts.hub ? [...files, opts.hub] : [...files]);
  const sites = opts.site?.length ? cfg.sites.filter((s) => opts.site!.includes(s.metadata.name)) : cfg.sites;
  if (sites.length !== 1)
    throw new UsageError(
      `--local installs this one machine: ${files.join(', ')} ${sites.length ? `name ${sites.length} sites` : 'names no site'}`,
      sites.length ? 'pick it with --site NAME' : 'give the Site file of this POP',
    );
  const site = sites[0]!;
  const file = sourceOf(site)?.file ?? files[0]!;
  const hub = site.spec.hub ? cfg.hubs.find((h) => h.metadata.name === site.spec.hub!.ref) : undefined;
  const configDir = path.dirname(path.resolve(file));
  // Not connectHost: it would resolve spec.ssh secrets (a sudo password file) that the stick need not carry.
  const host = new LocalHost({ name: site.metadata.name });
  return [{ site, ...(hub ? { hub } : {}), file, configDir, host }];
}
