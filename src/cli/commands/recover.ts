// `fsm-edge recover`: rebuild a failed POP (the same machine with k3s or its data destroyed, or a replacement)
// from an encrypted backup and a verified bundle, and re-register it with its hub as the same Cluster.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { FsmEdgeError } from '../../config/errors.js';
import { formatBytes } from '../../bundle/inspect.js';
import { recoverSite, openRecoveryBackup, type BackupKey } from '../../recover/recover.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { outputFor, UsageError } from '../output.js';
import { failIfNotOk, installOptionsFrom, runPrinter, seconds, siteJson } from '../site-runs.js';
import { localTargets, selectTargets } from './install.js';

interface RecoverCliOptions {
  backup: string;
  bundle: string;
  trustKey: string[];
  identity: string[];
  passphraseFile?: string;
  hub?: string;
  site: string[];
  acceptNewHostKey?: boolean;
  allowOtherSite?: boolean;
  local?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** AGE-SECRET-KEY-1… lines of age key files (comments and public-key lines skipped). */
export function readIdentities(files: readonly string[]): string[] {
  const ids: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new UsageError(`--identity ${f}: ${(e as Error).message}`);
    }
    const found = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('AGE-SECRET-KEY-1'));
    if (!found.length) throw new UsageError(`--identity ${f}: no AGE-SECRET-KEY-1… line (an age key file from age-keygen)`);
    ids.push(...found);
  }
  return ids;
}

export function backupKeyFrom(opts: { identity: string[]; passphraseFile?: string }): BackupKey {
  if (!opts.identity.length && !opts.passphraseFile)
    throw new UsageError('the backup is encrypted: pass --identity FILE (an age key file) or --passphrase-file FILE');
  const key: BackupKey = {};
  if (opts.identity.length) key.identities = readIdentities(opts.identity);
  if (opts.passphraseFile) {
    try {
      key.passphrase = readFileSync(opts.passphraseFile, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new UsageError(`--passphrase-file ${opts.passphraseFile}: ${(e as Error).message}`);
    }
  }
  return key;
}

export function register(program: Command): void {
  program
    .command('recover')
    .description('rebuild a failed POP from an encrypted backup and a verified bundle, and re-register it as the same Cluster')
    .argument('<config...>', 'the Site file (or a Fleet file with --site); a Hub document may sit in the same file')
    .requiredOption('--backup <file>', 'the backup file (<site>-<time>.fsm-edge-backup.age)')
    .requiredOption('--bundle <dir>', 'airgap bundle directory with the POP architecture')
    .option('--trust-key <file>', 'public key the bundle signature must verify against (repeatable)', repeatable, [])
    .option('--identity <file>', 'age key file that opens the backup (repeatable)', repeatable, [])
    .option('--passphrase-file <file>', 'file holding the backup’s recovery passphrase')
    .option('--hub <file>', 'Hub document, when not in the config files')
    .option('--site <name>', 'the site of a Fleet file', repeatable, [])
    .option('--accept-new-host-key', 'the POP was replaced: accept its new host key (shown) and re-pin it in the site file')
    .option('--allow-other-site', 'restore a backup taken of another site under this site’s name')
    .option('--local', 'run on this machine (the POP itself), without SSH')
    .option('--dry-run', 'open the backup, connect and check, print what would change, change nothing')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
The backup is decrypted and every entry checked against its manifest before anything is sent. The token, the
node password and the datastore are restored before k3s first starts. A killed recovery continues when run again.

Examples:
  fsm-edge recover site.yaml --backup pop-a-20261129T100000Z.fsm-edge-backup.age --identity backup.key \\
      --bundle airgap/bundles/fsm-edge-amd64 --trust-key signing.pub
  fsm-edge recover site.yaml --backup … --passphrase-file pass.txt --bundle … --trust-key … --accept-new-host-key`,
    )
    .action(async function (this: Command, files: string[], opts: RecoverCliOptions) {
      const out = outputFor(this);
      if (opts.trustKey.length === 0)
        throw new UsageError(
          'no --trust-key given: the bundle signature must be checked against the signer’s public key',
          'pass --trust-key signing.pub',
        );
      // On site (--local) the Site file alone will do: no Hub document, the registration is left pending.
      const targets = opts.local ? localTargets(files, opts) : selectTargets(files, opts);
      if (targets.length !== 1)
        throw new UsageError(`recover restores one site; ${files.join(', ')} holds ${targets.length}`, 'name it with --site');
      const target = targets[0]!;
      let backup: Awaited<ReturnType<typeof openRecoveryBackup>>;
      try {
        backup = await openRecoveryBackup(path.resolve(opts.backup), backupKeyFrom(opts));
      } catch (e) {
        if (e instanceof FsmEdgeError || e instanceof UsageError) throw e;
        throw new FsmEdgeError('config', `backup ${opts.backup}: ${(e as Error).message}`);
      }
      const printer = runPrinter(out, false, opts.dryRun ? 'plan for recovering' : 'recovering');
      const install = installOptionsFrom(out.io.env, {
        dryRun: opts.dryRun === true,
        ...(printer.onSyncProgress ? { onSyncProgress: printer.onSyncProgress } : {}),
      });
      const host = opts.local ? target.host : undefined;
      const result = await recoverSite(target, {
        install,
        backup,
        allowOtherSite: opts.allowOtherSite === true,
        bundleDir: path.resolve(opts.bundle),
        trustKeys: opts.trustKey.map((f) => path.resolve(f)),
        acceptNewHostKey: opts.acceptNewHostKey === true,
        ...(host ? { host } : {}),
        onEvent: printer.onEvent,
        env: out.io.env,
        ...(out.debug ? { onLog: (l: string) => out.note(l) } : {}),
      }).finally(async () => {
        printer.stop();
        await host?.close().catch(() => {});
      });
      const f = result.figures;
      out.result(
        {
          ok: result.report.ok,
          dryRun: install.dryRun,
          sites: [siteJson(result, { figures: f, ...(result.repinned ? { repinned: result.repinned } : {}) })],
        },
        () => {
          const r = result.report;
          const reg = result.ctx?.registration?.state;
          const what = install.dryRun
            ? r.ok
              ? 'plan printed above; nothing was changed'
              : `refused in ${r.failedPhase}`
            : r.ok
              ? `recovered from ${path.basename(opts.backup)}${reg ? `, registration ${reg}` : ''}`
              : `failed in ${r.failedPhase}`;
          out.line(
            `${r.ok ? out.color.green('✓') : out.color.red('✗')} ${r.site}: ${what} (${seconds(f.durationMs)}, ${formatBytes(f.bytesSent)} sent, ${r.roundTrips} round trips)`,
          );
        },
      );
      if (opts.local && result.report.ok && !install.dryRun && target.site.spec.hub && result.ctx?.registration?.state !== 'managed')
        out.note(`registration pending: run \`fsm-edge register ${files.join(' ')}\` from the controller when the hub is reachable`);
      failIfNotOk(out, [result], 'recover');
    });
}
