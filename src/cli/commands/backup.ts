// `fsm-edge backup`: a consistent snapshot of each POP (or its latest scheduled one with --collect), pulled
// through the transport (resumable, verified) and age-encrypted on the controller into one file per site. The
// passphrase comes from a file or the environment, never the command line.

import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { BackupKeys } from '../../backup/archive.js';
import { type BackupContext, type BackupResult, backupOperation } from '../../backup/operation.js';
import { runSites, type SiteResult } from '../../engine/run-sites.js';
import { JSON_OPTION_HELP, repeatable } from '../options.js';
import { outputFor, UsageError } from '../output.js';
import { failIfNotOk, runPrinter, seconds, siteJson } from '../site-runs.js';
import { selectTargets } from './install.js';

/** The environment variable a passphrase may come from (a CI secret), instead of --passphrase-file. */
export const PASSPHRASE_ENV = 'FSM_EDGE_BACKUP_PASSPHRASE';
const RECIPIENT = /^age1[0-9a-z]{20,}$/;
const VOLUME = /^\/[A-Za-z0-9._/-]+$/;

interface BackupCliOptions {
  out: string;
  recipient: string[];
  recipientsFile?: string;
  passphraseFile?: string;
  collect?: boolean;
  volume: string[];
  hub?: string;
  site: string[];
  dryRun?: boolean;
  acceptNewHostKey?: boolean;
  parallel: string;
  json?: boolean;
}

/** age's recipients file: one `age1…` per line, `#` comments and blank lines ignored. */
export function readRecipientsFile(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--recipients-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const out: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    if (!RECIPIENT.test(line)) throw new UsageError(`${file}:${i + 1}: not an age recipient (age1…)`);
    out.push(line);
  });
  return out;
}

function readPassphrase(opts: BackupCliOptions, env: NodeJS.ProcessEnv): string | undefined {
  if (opts.passphraseFile) {
    let text: string;
    try {
      text = fs.readFileSync(opts.passphraseFile, 'utf8');
    } catch (e) {
      throw new UsageError(`--passphrase-file ${opts.passphraseFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const pass = text.replace(/\r?\n$/, '');
    if (!pass) throw new UsageError(`--passphrase-file ${opts.passphraseFile} is empty`);
    return pass;
  }
  const fromEnv = env[PASSPHRASE_ENV];
  return fromEnv ? fromEnv : undefined;
}

export function register(program: Command): void {
  program
    .command('backup')
    .description('back up POPs (datastore, server token, node password, k3s config, journal) into age-encrypted files')
    .argument('<config...>', 'Site or Fleet files; a Hub document may sit in the same file')
    .option('--out <dir>', 'directory for the backup files', 'backups')
    .option('--recipient <age1…>', 'age recipient to encrypt to (repeatable; adds to the site’s backup.recipients)', repeatable, [])
    .option('--recipients-file <file>', 'age recipients file (one age1… per line)')
    .option('--passphrase-file <file>', `recovery passphrase (or set ${PASSPHRASE_ENV}); age allows it only instead of recipients`)
    .option('--collect', 'take the latest scheduled snapshot on the POP instead of a new one')
    .option('--volume <path>', 'extra directory on the POP to include (repeatable; adds to backup.volumes)', repeatable, [])
    .option('--hub <file>', 'Hub document, when not in the config files')
    .option('--site <name>', 'only these sites of a Fleet (repeatable)', repeatable, [])
    .option('--dry-run', 'connect and print what would be done, change nothing')
    .option('--accept-new-host-key', 'trust and record the host key of a POP seen for the first time (TOFU)')
    .option('--parallel <n>', 'POPs backed up at the same time', '4')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
One file per site: <out>/<site>-<UTC time>.fsm-edge-backup.age, openable by \`fsm-edge recover\` and by the
standard age CLI (\`age -d -i key.txt FILE | tar -t\`). On SQLite the k3s control plane pauses for the copy
(pods keep running); the pause is printed. A cut link is resumed: run the same command again.

Examples:
  fsm-edge backup site.yaml --recipient age1… --out /srv/backups
  FSM_EDGE_BACKUP_PASSPHRASE=… fsm-edge backup fleet.yaml --collect`,
    )
    .action(async function (this: Command, files: string[], opts: BackupCliOptions) {
      const out = outputFor(this);
      const parallel = Number(opts.parallel);
      if (!Number.isInteger(parallel) || parallel < 1) throw new UsageError(`--parallel ${opts.parallel}: expected a whole number ≥ 1`);
      for (const r of opts.recipient)
        if (!RECIPIENT.test(r)) throw new UsageError(`--recipient ${r.slice(0, 16)}…: not an age recipient (age1…)`);
      for (const v of opts.volume) {
        if (!VOLUME.test(v) || v.split('/').includes('..'))
          throw new UsageError(`--volume ${v}: expected an absolute path without spaces or ..`);
      }
      const cliRecipients = [...opts.recipient, ...(opts.recipientsFile ? readRecipientsFile(opts.recipientsFile) : [])];
      const passphrase = readPassphrase(opts, out.io.env);
      if (passphrase !== undefined && cliRecipients.length > 0) {
        throw new UsageError(
          'a passphrase and --recipient/--recipients-file together: age allows a passphrase only as the sole recipient',
          'choose one; to give a technician a passphrase too, make an age identity, protect it with `age -p`, and add its recipient',
        );
      }
      const targets = selectTargets(files, opts);
      const keysFor = (siteRecipients: string[]): BackupKeys =>
        passphrase !== undefined ? { recipients: [], passphrase } : { recipients: [...new Set([...cliRecipients, ...siteRecipients])] };
      const missing = targets.filter(
        (t) => passphrase === undefined && keysFor(t.site.spec.backup?.recipients ?? []).recipients.length === 0,
      );
      if (missing.length) {
        throw new UsageError(
          `no age recipient or passphrase for ${missing.map((t) => t.site.metadata.name).join(', ')}`,
          `pass --recipient age1…, --recipients-file FILE, --passphrase-file FILE (or ${PASSPHRASE_ENV}), or set spec.backup.recipients`,
        );
      }
      if (passphrase !== undefined && targets.some((t) => t.site.spec.backup?.recipients?.length)) {
        out.warn('a passphrase was given: the sites’ backup.recipients are not used for this backup (age allows a passphrase only alone)');
      }
      const outDir = path.resolve(opts.out);
      const printer = runPrinter(out, targets.length > 1, opts.dryRun ? 'plan for' : 'backing up');
      // one operation per distinct key set: sites of a Fleet may name different recipients
      const results: SiteResult<BackupContext>[] = [];
      const groups = new Map<string, typeof targets>();
      for (const t of targets) {
        const k = JSON.stringify(keysFor(t.site.spec.backup?.recipients ?? []).recipients);
        groups.set(k, [...(groups.get(k) ?? []), t]);
      }
      try {
        for (const group of groups.values()) {
          const keys = keysFor(group[0]!.site.spec.backup?.recipients ?? []);
          const op = backupOperation({
            dryRun: opts.dryRun === true,
            outDir,
            keys,
            collect: opts.collect === true,
            volumes: opts.volume,
            ...(out.io.env.FSM_EDGE_STATE_DIR ? { stateDir: out.io.env.FSM_EDGE_STATE_DIR } : {}),
            ...(out.io.env.FSM_EDGE_BACKUP_CHUNK ? { chunkBytes: Number(out.io.env.FSM_EDGE_BACKUP_CHUNK) } : {}),
            ...(out.debug ? { onLog: (l: string) => out.note(l) } : {}),
          });
          results.push(
            ...(await runSites(group, op, {
              dryRun: opts.dryRun === true,
              parallel,
              acceptNewHostKey: opts.acceptNewHostKey === true,
              onEvent: printer.onEvent,
              env: out.io.env,
              ...(out.debug ? { onLog: (l: string) => out.note(l) } : {}),
            })),
          );
        }
      } finally {
        printer.stop();
      }
      const backupOf = (r: (typeof results)[number]) => (r.record as { backup?: BackupResult } | undefined)?.backup;
      out.result(
        {
          ok: results.every((r) => r.report.ok),
          dryRun: opts.dryRun === true,
          sites: results.map((r) => siteJson({ ...r, record: undefined }, backupOf(r) ? { backup: backupOf(r) } : {})),
        },
        () => {
          for (const r of results) {
            const b = backupOf(r);
            const what = opts.dryRun
              ? r.report.ok
                ? 'plan printed above; nothing was changed'
                : `refused in ${r.report.failedPhase ?? 'backup'}`
              : b
                ? `${b.file} (${b.bytes} bytes, ${b.datastore}${b.datastore === 'sqlite' ? `, control plane paused ${b.controlPlanePauseMs} ms` : ''})`
                : `failed in ${r.report.failedPhase ?? 'backup'}`;
            out.line(`${r.report.ok ? out.color.green('✓') : out.color.red('✗')} ${r.site}: ${what} (${seconds(r.report.durationMs)})`);
          }
        },
      );
      failIfNotOk(out, results, 'backup');
    });
}
