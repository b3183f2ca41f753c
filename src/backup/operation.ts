// `fsm-edge backup` as an engine operation: two phases run under the POP lock and journaled on the POP.
//   snapshot — take a consistent snapshot on the POP (the install's snapshot script, staged root-only), or with
//              --collect pick the latest scheduled one; a snapshot staged by an earlier run that did not finish is
//              reused, so its pull resumes;
//   pull     — pull it through the transport (resumable, each chunk verified, the partial kept encrypted with a
//              key that stays on the POP), then age-encrypt it in memory into the one backup file.
// Plaintext secrets never touch the controller's disk, a log, or a command line.

import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Hub } from '../config/hub.js';
import type { Site } from '../config/site.js';
import type { Journal } from '../engine/journal.js';
import { change, definePhase, PhaseRefusal, type PlannedChange, shellChange } from '../engine/phase.js';
import type { AnyPhase } from '../engine/phase.js';
import type { RunReport } from '../engine/runner.js';
import type { SiteOperation } from '../engine/run-sites.js';
import { writeFileScript } from '../engine/script-batch.js';
import {
  POP_SCHEDULED_DIR,
  POP_SNAPSHOT_SCRIPT,
  POP_STAGING_DIR,
  SNAPSHOT_NAME,
  SNAPSHOT_SCRIPT,
  snapshotCommand,
} from '../install/backup-timer.js';
import { siteDir, stateDir } from '../state/paths.js';
import { readSiteRecord } from '../state/site-record.js';
import { writeAtomic } from '../state/write-atomic.js';
import { pullFile, type PullReport } from '../transport/file-pull.js';
import type { Host } from '../transport/host.js';
import {
  type BackupEntryData,
  type BackupKeys,
  type BackupManifest,
  backupFileName,
  readTarEntries,
  writeBackupArchive,
} from './archive.js';

export interface BackupOptions {
  dryRun: boolean;
  /** Where the backup file goes on the controller. */
  outDir: string;
  keys: BackupKeys;
  /** Take the latest scheduled snapshot on the POP instead of a new one. */
  collect: boolean;
  /** Extra directories on the POP (besides the site's backup.volumes). */
  volumes: string[];
  stateDir?: string;
  /** Bytes per verified chunk of the pull. */
  chunkBytes?: number;
  /** A staged snapshot older than this is taken again instead of resumed. Default 24 h. */
  maxStagedAgeMs?: number;
  onLog?(line: string): void;
}

/** A snapshot on the POP, as its listing describes it (names and digests only). */
export interface PopSnapshot {
  path: string;
  name: string;
  size: number;
  sha256: string;
  /** From the name's UTC stamp. */
  createdAt: Date;
  source: 'controller' | 'scheduled';
  /** Taken by an earlier run and not collected yet: this run resumes it. */
  reused: boolean;
  pauseMs?: number;
}

export interface BackupResult {
  file: string;
  bytes: number;
  sha256: string;
  snapshot: PopSnapshot;
  datastore: string;
  controlPlanePauseMs: number;
  pull: PullReport;
  entries: number;
}

export interface BackupContext {
  site: Site;
  hub?: Hub;
  configDir: string;
  options: BackupOptions;
  journal?: Journal;
  snapshot?: PopSnapshot;
  result?: BackupResult;
}

const DAY_MS = 24 * 3600_000;

function stampDate(name: string): Date {
  const m = /(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(name);
  return m ? new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`) : new Date(0);
}

/** What the probe lists of one snapshot directory: `snap <dir> <name> <size> <sha256>`. */
const listDir = (dir: string) => `
if [ -d ${dir} ]; then for f in ${dir}/*.tar; do
  [ -f "$f" ] || continue; n=$(basename "$f" .tar)
  echo "snap ${dir} $n $(wc -c < "$f" | tr -d ' ') $(cat ${dir}/$n.sha256 2>/dev/null || echo -)"
done; fi`;

export const BACKUP_PROBE = `${listDir(POP_STAGING_DIR)}${listDir(POP_SCHEDULED_DIR)}
if [ -f ${POP_SNAPSHOT_SCRIPT} ]; then echo "script $(sha256sum < ${POP_SNAPSHOT_SCRIPT} | cut -d' ' -f1)"; else echo "script -"; fi
`;

export function parseSnapshotListing(probe: string): { staged: PopSnapshot[]; scheduled: PopSnapshot[]; scriptSha: string } {
  const staged: PopSnapshot[] = [];
  const scheduled: PopSnapshot[] = [];
  let scriptSha = '-';
  for (const line of probe.split('\n')) {
    const s = /^script (\S+)$/.exec(line.trim());
    if (s) scriptSha = s[1]!;
    const m = /^snap (\S+) (\S+) (\d+) ([0-9a-f]{64})$/.exec(line.trim());
    if (!m || !SNAPSHOT_NAME.test(m[2]!)) continue;
    const dir = m[1]!;
    const list = dir === POP_STAGING_DIR ? staged : dir === POP_SCHEDULED_DIR ? scheduled : undefined;
    if (!list) continue;
    list.push({
      path: `${dir}/${m[2]}.tar`,
      name: m[2]!,
      size: Number(m[3]),
      sha256: m[4]!,
      createdAt: stampDate(m[2]!),
      source: list === staged ? 'controller' : 'scheduled',
      reused: true,
    });
  }
  const byTime = (a: PopSnapshot, b: PopSnapshot) => a.createdAt.getTime() - b.createdAt.getTime();
  return { staged: staged.sort(byTime), scheduled: scheduled.sort(byTime), scriptSha };
}

/** The snapshot script's last line: `snapshot=… size=… sha256=… pauseMs=… datastore=…`. */
export function parseSnapshotOutput(out: string): PopSnapshot {
  const line = out
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('snapshot='));
  const kv = new Map((line ?? '').split(' ').map((p) => p.split('=', 2) as [string, string]));
  const p = kv.get('snapshot') ?? '';
  const name = path.posix.basename(p, '.tar');
  const size = Number(kv.get('size'));
  const sha = kv.get('sha256') ?? '';
  if (!SNAPSHOT_NAME.test(name) || !/^[0-9a-f]{64}$/.test(sha) || !Number.isFinite(size)) {
    throw new Error(`the snapshot script did not report its snapshot (last lines: ${out.trim().split('\n').slice(-2).join(' | ')})`);
  }
  return {
    path: p,
    name,
    size,
    sha256: sha,
    createdAt: stampDate(name),
    source: 'controller',
    reused: false,
    pauseMs: Number(kv.get('pauseMs') ?? 0),
  };
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function volumesOf(ctx: BackupContext): string[] {
  return [...new Set([...(ctx.site.spec.backup?.volumes ?? []), ...ctx.options.volumes])];
}

const snapshotPhase = definePhase<BackupContext, undefined, ReturnType<typeof parseSnapshotListing>>({
  id: 'snapshot',
  title: 'snapshot the POP',
  probe: () => BACKUP_PROBE,
  inputs: (ctx) => ({ collect: ctx.options.collect, at: Date.now() }),
  check(ctx, _p, env) {
    const live = parseSnapshotListing(env.probe);
    if (ctx.options.collect) {
      const latest = live.scheduled.at(-1);
      if (!latest) {
        throw new PhaseRefusal(
          'snapshot',
          `no scheduled snapshot on the POP in ${POP_SCHEDULED_DIR}`,
          'the backup timer has not run yet (it is set up by `fsm-edge install`); run `fsm-edge backup` without --collect',
        );
      }
      ctx.snapshot = latest;
      return live;
    }
    const staged = live.staged.at(-1);
    const maxAge = ctx.options.maxStagedAgeMs ?? DAY_MS;
    if (staged && Date.now() - staged.createdAt.getTime() < maxAge && volumesOf(ctx).length === 0) ctx.snapshot = staged;
    return live;
  },
  plan(ctx, _p, live, env) {
    if (ctx.snapshot) return [];
    const changes: PlannedChange[] = [];
    if (live.scriptSha !== sha256(SNAPSHOT_SCRIPT)) {
      changes.push(shellChange(`write ${POP_SNAPSHOT_SCRIPT}`, writeFileScript(POP_SNAPSHOT_SCRIPT, SNAPSHOT_SCRIPT, 0o700)));
    }
    const vols = volumesOf(ctx);
    changes.push(
      change(
        `take a snapshot into ${POP_STAGING_DIR} (${ctx.site.spec.k3s.datastore === 'etcd' ? 'k3s etcd-snapshot save' : 'SQLite: the control plane pauses for the copy'}${vols.length ? `, volumes ${vols.join(' ')}` : ''})`,
        async () => {
          const out = await env.host.run(snapshotCommand(POP_STAGING_DIR, ctx.site.metadata.name, 'controller', 1, vols), {
            sudo: true,
            timeoutMs: 15 * 60_000,
          });
          ctx.snapshot = parseSnapshotOutput(out);
        },
      ),
    );
    return changes;
  },
  describe: (ctx, _p, _live, changes, dryRun) => ({
    summary: dryRun && changes.length ? `would: ${changes.join(', ')}` : snapshotSummary(ctx.snapshot),
  }),
  async settle(ctx) {
    return { summary: snapshotSummary(ctx.snapshot), metrics: { controlPlanePauseMs: ctx.snapshot?.pauseMs ?? 0 } };
  },
});

function snapshotSummary(s: PopSnapshot | undefined): string {
  if (!s) return 'no snapshot';
  const what =
    s.source === 'scheduled' ? 'the latest scheduled snapshot' : s.reused ? 'the snapshot staged by an earlier run' : 'a new snapshot';
  const pause = s.pauseMs ? `, control plane paused ${s.pauseMs} ms` : '';
  return `${what} ${s.name} (${s.size} bytes${pause})`;
}

/** A 32-byte key kept next to the snapshot on the POP (root-only): the controller's partial is encrypted with it. */
async function pullKey(host: Host, snapshotPath: string): Promise<Buffer> {
  const k = `${snapshotPath}.pull-key`;
  const out = await host.run(
    `[ -s ${k} ] || { umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > ${k}.tmp && mv -f ${k}.tmp ${k}; }; cat ${k}`,
    { sudo: true, timeoutMs: 30_000 },
  );
  const key = Buffer.from(out.trim(), 'hex');
  if (key.length !== 32) throw new Error(`the pull key next to ${snapshotPath} is malformed; delete ${k} on the POP`);
  return key;
}

function parseInfo(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

const ARCH: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', arm64: 'arm64', armv7l: 'arm' };

/** The POP's snapshot tar → the backup entries and the manifest (without entries). */
export async function backupContents(
  ctx: BackupContext,
  snap: PopSnapshot,
  tarBytes: Buffer,
): Promise<{ manifest: Omit<BackupManifest, 'entries'>; entries: BackupEntryData[] }> {
  const raw = await readTarEntries(snap.path, tarBytes);
  const entries: BackupEntryData[] = [];
  let info: Map<string, string> | undefined;
  let ca: Buffer | undefined;
  for (const e of raw) {
    const p = e.path.replace(/^\.\//, '');
    if (e.type === 'Directory') continue;
    if (e.type !== 'File' && e.type !== 'OldFile') throw new Error(`snapshot ${snap.name}: ${p} is a ${e.type}, not a file`);
    if (p === 'meta/info.env') info = parseInfo(e.data.toString('utf8'));
    else if (p === 'meta/server-ca.crt') ca = e.data;
    else if (/^(k3s|datastore|pop|volumes)\//.test(p)) entries.push({ path: p, data: e.data, mode: e.mode & 0o777 });
    else throw new Error(`snapshot ${snap.name}: unexpected entry ${p}`);
  }
  if (info?.get('format') !== 'fsm-edge-pop-snapshot/v1') throw new Error(`snapshot ${snap.name}: no meta/info.env`);
  if (!entries.some((e) => e.path === 'k3s/token')) throw new Error(`snapshot ${snap.name}: no k3s/token`);
  if (info.get('site') !== ctx.site.metadata.name) {
    throw new PhaseRefusal(
      'pull',
      `the snapshot ${snap.name} is of site "${info.get('site')}", not "${ctx.site.metadata.name}"`,
      'check that the Site file points at the right POP',
    );
  }
  const datastore = info.get('datastore') === 'etcd' ? 'etcd' : 'sqlite';
  const root = stateDir(ctx.options.stateDir);
  const record = readSiteRecord(root, ctx.site.metadata.name);
  if (record) entries.push({ path: 'controller/site.json', data: Buffer.from(`${JSON.stringify(record, null, 2)}\n`), mode: 0o644 });
  entries.push({
    path: 'controller/site-spec.json',
    data: Buffer.from(`${JSON.stringify({ metadata: ctx.site.metadata, spec: ctx.site.spec }, null, 2)}\n`),
    mode: 0o644,
  });
  if (ca) entries.push({ path: 'k3s/server-ca.crt', data: ca, mode: 0o644 });
  const hub = ctx.site.spec.hub;
  if (hub) {
    let caFingerprint: string | undefined;
    try {
      caFingerprint = ca ? `sha256:${new X509Certificate(ca).fingerprint256.replace(/:/g, '').toLowerCase()}` : undefined;
    } catch {
      caFingerprint = undefined;
    }
    const registration = {
      clusterName: ctx.site.metadata.name,
      hub: hub.ref,
      region: hub.region,
      zone: hub.zone,
      group: hub.group,
      ...(hub.gateway ? { gatewayHost: hub.gateway.host, gatewayPort: hub.gateway.port } : {}),
      apiEndpoint:
        hub.apiEndpoint ?? `https://${ctx.site.spec.ssh.host.includes(':') ? `[${ctx.site.spec.ssh.host}]` : ctx.site.spec.ssh.host}:6443`,
      ...(caFingerprint ? { caFingerprint } : {}),
      state: record?.registration.state ?? 'none',
    };
    entries.push({ path: 'hub/registration.json', data: Buffer.from(`${JSON.stringify(registration, null, 2)}\n`), mode: 0o644 });
  }
  const b = ctx.journal?.bundle;
  const pauseMs = Number(info.get('pauseMs') ?? 0);
  const manifest: Omit<BackupManifest, 'entries'> = {
    format: 'fsm-edge-backup/v1',
    site: ctx.site.metadata.name,
    createdAt: info.get('createdAt') ?? snap.createdAt.toISOString(),
    source: info.get('source') === 'scheduled' ? 'scheduled' : 'controller',
    k3s: {
      version: info.get('k3sVersion') ?? '',
      datastore,
      nodeName: info.get('nodeName') || ctx.site.metadata.name,
      arch: ARCH[info.get('arch') ?? ''] ?? info.get('arch') ?? '',
    },
    ...(b ? { bundle: { name: b.name, digest: b.digest, serial: b.serial ?? 0 } } : {}),
    ...(datastore === 'sqlite' ? { pause: { controlPlaneMs: Number.isFinite(pauseMs) ? pauseMs : 0 } } : {}),
  };
  return { manifest, entries };
}

export const partialPathFor = (root: string, site: string, sha: string) => path.join(siteDir(root, site), 'backup-partial', `${sha}.part`);

const pullPhase = definePhase<BackupContext, undefined, undefined>({
  id: 'pull',
  title: 'pull and encrypt the backup',
  inputs: (ctx) => ({ snapshot: ctx.snapshot?.sha256 ?? null, at: Date.now() }),
  check: () => undefined,
  plan(ctx, _p, _l, env) {
    const what = ctx.snapshot ? `${ctx.snapshot.name} (${ctx.snapshot.size} bytes)` : 'the new snapshot';
    return [
      change(`pull ${what} (resumable, each chunk verified) and age-encrypt it into ${ctx.options.outDir}`, async () => {
        const snap = ctx.snapshot;
        if (!snap) throw new Error('internal: no snapshot to pull');
        ctx.result = await pullAndSeal(ctx, env.host, snap);
      }),
    ];
  },
  describe: (_ctx, _p, _l, changes, dryRun) => ({ summary: dryRun ? `would: ${changes.join(', ')}` : 'nothing to pull' }),
  async settle(ctx) {
    const r = ctx.result;
    if (!r) return { summary: 'no backup written' };
    const resumed = r.pull.resumedFrom ? `, resumed from byte ${r.pull.resumedFrom}` : '';
    return {
      summary: `${r.file}: ${r.bytes} bytes, ${r.entries} entries; pulled ${r.pull.bytes} bytes${resumed}, re-sent ${r.pull.resentBytes}`,
      metrics: {
        backupBytes: r.bytes,
        pulledBytes: r.pull.receivedBytes,
        resentBytes: r.pull.resentBytes,
        resumedFrom: r.pull.resumedFrom,
        controlPlanePauseMs: r.controlPlanePauseMs,
      },
    };
  },
});

async function pullAndSeal(ctx: BackupContext, host: Host, snap: PopSnapshot): Promise<BackupResult> {
  const root = stateDir(ctx.options.stateDir);
  const key = await pullKey(host, snap.path);
  const pulled = await pullFile(host, {
    remotePath: snap.path,
    size: snap.size,
    sha256: snap.sha256,
    partialPath: partialPathFor(root, ctx.site.metadata.name, snap.sha256),
    sealKey: key,
    sudo: true,
    ...(ctx.options.chunkBytes ? { chunkBytes: ctx.options.chunkBytes } : {}),
    ...(ctx.options.onLog ? { onLog: ctx.options.onLog } : {}),
  });
  const { manifest, entries } = await backupContents(ctx, snap, pulled.data);
  fs.mkdirSync(ctx.options.outDir, { recursive: true });
  const file = path.join(ctx.options.outDir, backupFileName(ctx.site.metadata.name, new Date(manifest.createdAt)));
  const written = await writeBackupArchive(file, manifest, entries, ctx.options.keys);
  // The staged snapshot has served; a scheduled one stays for its retention (only its pull key goes).
  const cleanup = snap.source === 'controller' ? `rm -f ${snap.path} ${snap.path.replace(/\.tar$/, '.sha256')} ` : '';
  await host.run(`${cleanup}rm -f ${snap.path}.pull-key`, { sudo: true, timeoutMs: 30_000 }).catch(() => {});
  // partials of older snapshots (the POP has replaced them) are no use any more
  fs.rmSync(path.dirname(partialPathFor(root, ctx.site.metadata.name, snap.sha256)), { recursive: true, force: true });
  recordBackup(root, ctx.site.metadata.name, { file, bytes: written.bytes, sha256: written.sha256, manifest });
  return {
    file,
    bytes: written.bytes,
    sha256: written.sha256,
    snapshot: snap,
    datastore: manifest.k3s.datastore,
    controlPlanePauseMs: manifest.pause?.controlPlaneMs ?? 0,
    pull: pulled.report,
    entries: entries.length,
  };
}

/** The controller's list of backups made for a site (names, sizes, digests: nothing secret). */
export const backupsRecordPath = (root: string, site: string) => path.join(siteDir(root, site), 'backups.json');

interface BackupRecordEntry {
  file: string;
  bytes: number;
  sha256: string;
  createdAt: string;
  source: string;
  datastore: string;
  controlPlanePauseMs?: number;
}

function recordBackup(
  root: string,
  site: string,
  b: { file: string; bytes: number; sha256: string; manifest: Omit<BackupManifest, 'entries'> },
) {
  const file = backupsRecordPath(root, site);
  let list: BackupRecordEntry[] = [];
  try {
    list = JSON.parse(fs.readFileSync(file, 'utf8')) as BackupRecordEntry[];
  } catch {
    list = [];
  }
  list.push({
    file: b.file,
    bytes: b.bytes,
    sha256: b.sha256,
    createdAt: b.manifest.createdAt,
    source: b.manifest.source,
    datastore: b.manifest.k3s.datastore,
    ...(b.manifest.pause ? { controlPlanePauseMs: b.manifest.pause.controlPlaneMs } : {}),
  });
  writeAtomic(file, `${JSON.stringify(list.slice(-50), null, 2)}\n`, 0o644);
}

export const BACKUP_PHASES: AnyPhase<BackupContext>[] = [snapshotPhase, pullPhase];

export function backupOperation(options: BackupOptions): SiteOperation<BackupContext> {
  return {
    name: 'backup',
    phases: BACKUP_PHASES,
    needsBundle: false,
    context: (t) => ({ site: t.site, ...(t.hub ? { hub: t.hub } : {}), configDir: t.configDir, options }),
    onJournal: (ctx, journal) => {
      ctx.journal = journal;
    },
    finish: (ctx, report: RunReport) => ({ ok: report.ok, ...(ctx.result ? { backup: ctx.result } : {}) }),
  };
}
