// The library entry for a recovery: open the backup (decrypt, every entry verified before a byte is used), connect
// (re-pinning a replacement's host key only when told to), run the recover operation through the engine, report.
// `fsm-edge recover` calls it over SSH; `recover --local` on the POP (the USB stick) passes a LocalHost.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { openBackupArchive } from '../backup/archive.js';
import { errorText, PhaseRefusal } from '../engine/failure.js';
import type { RunReport } from '../engine/runner.js';
import { runSites, type SiteEvent, type SiteResult, type SiteTarget } from '../engine/run-sites.js';
import type { SharedBundle } from '../engine/shared-run.js';
import type { InstallOptions } from '../install/context.js';
import type { Host } from '../transport/host.js';
import type { RecoveryBackup } from './backup-entries.js';
import type { RecoverContext } from './context.js';
import { connectForRecovery } from './host-key.js';
import { recoverOperation } from './operation.js';

export interface BackupKey {
  /** age identities (AGE-SECRET-KEY-1… lines). */
  identities?: string[];
  passphrase?: string;
}

/** Decrypts and verifies a backup file in memory; nothing of its plaintext is written on this machine. */
export async function openRecoveryBackup(file: string, key: BackupKey): Promise<RecoveryBackup> {
  const sealed = await readFile(file);
  const opened = await openBackupArchive(file, key);
  return {
    manifest: opened.manifest,
    entry: (p) => opened.entry(p),
    paths: opened.paths,
    sha256: createHash('sha256').update(sealed).digest('hex'),
    file,
  };
}

export interface RecoverSiteOptions {
  install: InstallOptions;
  backup: RecoveryBackup;
  /** Restore a backup of another site under this site's name (the operator named both). */
  allowOtherSite?: boolean;
  /** The bundle directory and its signer's keys (or an already verified bundle). */
  bundleDir?: string;
  bundle?: SharedBundle;
  trustKeys?: readonly string[];
  /** Accept a changed host key (a replacement POP) and re-pin it, or a first key for an unpinned POP. */
  acceptNewHostKey?: boolean;
  /** Run on this host instead of connecting over SSH (`recover --local`: a LocalHost on the POP). Not closed here. */
  host?: Host;
  signal?: AbortSignal;
  onEvent?(site: string, ev: SiteEvent): void;
  onLog?(line: string): void;
  env?: NodeJS.ProcessEnv;
}

export interface RecoverResult extends SiteResult<RecoverContext> {
  /** The replacement's key that replaced the old pins. */
  repinned?: { old: string[]; presented: string };
  /** Figures: wall time and bytes sent to the POP by the whole run (bundle blobs, restored files, commands). */
  figures: { durationMs: number; bytesSent: number; restoreWireBytes: number; blobBytesSent: number };
}

function refusedReport(site: string, e: unknown): RunReport {
  const refusal = e instanceof PhaseRefusal ? e : undefined;
  return {
    site,
    host: site,
    operation: 'restore',
    runId: '',
    dryRun: false,
    ok: false,
    startedAt: new Date().toISOString(),
    durationMs: 0,
    phases: [
      {
        id: 'connect',
        title: 'connect to the POP',
        status: refusal ? 'refused' : 'failed',
        durationMs: 0,
        summary: refusal ? refusal.reason : (errorText(e).split('\n')[0] ?? ''),
        changes: [],
        warnings: [],
        metrics: {},
        error: errorText(e),
        failure: refusal ? 'refused' : 'unreachable',
        ...(refusal ? { reason: refusal.reason, fix: refusal.fix } : {}),
      },
    ],
    warnings: [],
    failedPhase: 'connect',
    error: errorText(e),
    failure: refusal ? 'refused' : 'unreachable',
    roundTrips: 0,
    bytesSent: 0,
  };
}

export async function recoverSite(target: SiteTarget, opts: RecoverSiteOptions): Promise<RecoverResult> {
  const t0 = Date.now();
  const name = target.site.metadata.name;
  let host = opts.host;
  let site = target.site;
  let repinned: RecoverResult['repinned'];
  if (!host) {
    try {
      const c = await connectForRecovery(target, {
        acceptNewHostKey: opts.acceptNewHostKey === true,
        ...(opts.env ? { env: opts.env } : {}),
        ...(opts.onLog ? { onLog: opts.onLog } : {}),
      });
      host = c.host;
      site = c.site;
      repinned = c.repinned;
      if (c.repinned || c.newPins.length) {
        const fp = c.repinned?.presented ?? c.newPins[0]!.fingerprint;
        opts.onEvent?.(name, {
          type: 'pinned',
          fingerprint: fp,
          label: c.repinned ? `replaces ${c.repinned.old.join(', ')}` : 'POP',
          file: target.file,
        });
      }
    } catch (e) {
      const report = refusedReport(name, e);
      opts.onEvent?.(name, { type: 'phase-end', report: report.phases[0]! });
      return { site: name, report, figures: { durationMs: Date.now() - t0, bytesSent: 0, restoreWireBytes: 0, blobBytesSent: 0 } };
    }
  }
  const owned = host !== opts.host;
  try {
    const [r] = await runSites(
      [{ ...target, site, host }],
      recoverOperation(opts.install, { backup: opts.backup, allowOtherSite: opts.allowOtherSite === true }),
      {
        dryRun: opts.install.dryRun,
        ...(opts.bundle ? { bundle: opts.bundle } : {}),
        ...(opts.bundleDir ? { bundleDir: opts.bundleDir } : {}),
        trustKeys: opts.trustKeys ?? [],
        parallel: 1,
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
        ...(opts.onLog ? { onLog: opts.onLog } : {}),
        ...(opts.env ? { env: opts.env } : {}),
      },
    );
    const m = r!.ctx?.metrics ?? {};
    return {
      ...r!,
      ...(repinned ? { repinned } : {}),
      figures: {
        durationMs: Date.now() - t0,
        bytesSent: r!.report.bytesSent,
        restoreWireBytes: m.restoreWireBytes ?? 0,
        blobBytesSent: m.bytesSent ?? 0,
      },
    };
  } finally {
    if (owned) await host.close().catch(() => {});
  }
}
