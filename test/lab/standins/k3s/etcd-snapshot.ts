// `k3s etcd-snapshot save|ls|list|delete` and `k3s server --cluster-reset [--cluster-reset-restore-path]`.
// Only with the embedded etcd datastore (cluster-init), like k3s ("etcd database not found" on SQLite).
// A snapshot is the datastore file plus the hash of the token the cluster was created with (k3s snapshots hold
// bootstrap data encrypted with the token, so a restore needs the same token).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FlagError, parseServerFlags, ServerFlags, SERVER_FLAGS } from './flags.js';
import { bootstrapOf, dbDir, etcdFile, isEtcd, readBootstrap, snapshotDir, tokenHashOf } from './datastore.js';
import { log } from './log.js';

interface SnapshotFile {
  standin: 'k3s etcd snapshot (fsm-edge lab)';
  nodeName: string;
  createdAt: string;
  tokenHash: string;
  state: unknown;
}

function snapshotFlags(args: string[]): { flags: ServerFlags; rest: string[] } {
  // etcd-snapshot shares config.yaml with the server; its own flags drop the etcd- prefix (dir, name, …)
  const mapped: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--?([^=]+)(?:=(.*))?$/.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    const name = m[1]!;
    const value = m[2] ?? args[++i] ?? '';
    if (name === 'name' || name === 'dir' || name === 'snapshot-compress' || name === 's3')
      mapped.push(`--etcd-${name === 'name' ? 'snapshot-name' : name === 'dir' ? 'snapshot-dir' : name}=${value}`);
    else if (SERVER_FLAGS[name]) mapped.push(`--${name}=${value}`);
    else throw new FlagError(`flag provided but not defined: -${name}`);
  }
  return { flags: new ServerFlags(parseServerFlags(mapped)), rest };
}

export async function runEtcdSnapshot(args: string[]): Promise<number> {
  const sub = args[0] ?? 'save';
  let flags: ServerFlags;
  try {
    ({ flags } = snapshotFlags(args.slice(1)));
  } catch (e) {
    process.stderr.write(`Incorrect Usage: ${(e as Error).message}\n`);
    return 1;
  }
  const dataDir = flags.dataDir;
  if (!isEtcd(dataDir)) {
    log.error(`etcd database not found in ${dataDir}/server/db`);
    return 1;
  }
  const dir = snapshotDir(dataDir, flags.str('etcd-snapshot-dir'));
  const node = os.hostname();
  if (sub === 'save') {
    const src = etcdFile(dataDir);
    if (!fs.existsSync(src)) {
      log.error(`etcd database not found in ${dataDir}/server/db`);
      return 1;
    }
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const name = `${flags.str('etcd-snapshot-name', 'on-demand')}-${node}-${Math.floor(Date.now() / 1000)}`;
    const snap: SnapshotFile = {
      standin: 'k3s etcd snapshot (fsm-edge lab)',
      nodeName: node,
      createdAt: new Date().toISOString(),
      tokenHash: readBootstrap(src)?.tokenHash ?? '',
      state: JSON.parse(fs.readFileSync(src, 'utf8')),
    };
    fs.writeFileSync(path.join(dir, name), JSON.stringify(snap), { mode: 0o600 });
    log.info(`Snapshot ${name} saved.`);
    return 0;
  }
  if (sub === 'ls' || sub === 'list' || sub === 'l') {
    const rows = fs.existsSync(dir)
      ? fs
          .readdirSync(dir)
          .sort()
          .map((f) => ({ f, st: fs.statSync(path.join(dir, f)) }))
      : [];
    const w = Math.max(4, ...rows.map((r) => r.f.length));
    const lw = Math.max(8, ...rows.map((r) => `file://${path.join(dir, r.f)}`.length));
    process.stdout.write(`${'Name'.padEnd(w + 1)}${'Location'.padEnd(lw + 1)}${'Size'.padEnd(9)}Created\n`);
    for (const r of rows)
      process.stdout.write(
        `${r.f.padEnd(w + 1)}${`file://${path.join(dir, r.f)}`.padEnd(lw + 1)}${String(r.st.size).padEnd(9)}${r.st.mtime.toISOString().replace(/\.\d+Z$/, 'Z')}\n`,
      );
    return 0;
  }
  if (sub === 'delete') {
    for (const n of args.slice(1).filter((a) => !a.startsWith('-'))) {
      fs.rmSync(path.join(dir, n), { force: true });
      log.info(`Snapshot ${n} deleted.`);
    }
    return 0;
  }
  process.stderr.write(`k3s STAND-IN: etcd-snapshot ${sub} is not simulated (save, ls, delete)\n`);
  return 1;
}

/** `k3s server --cluster-reset [--cluster-reset-restore-path=FILE]` (k3s must be stopped). */
export async function clusterResetRestore(flags: ServerFlags): Promise<void> {
  const dataDir = flags.dataDir;
  const restore = flags.str('cluster-reset-restore-path');
  if (!isEtcd(dataDir) && !flags.bool('cluster-init') && !restore)
    log.fatal('starting kubernetes: preparing server: etcd database not found');
  const port = flags.int('https-listen-port', 6443);
  if (await portInUse(port))
    log.fatal(
      `starting kubernetes: preparing server: start managed database: etcd cluster join failed: listen tcp 0.0.0.0:${port}: bind: address already in use (stop k3s before --cluster-reset)`,
    );
  const db = dbDir(dataDir);
  if (restore) {
    const file = path.isAbsolute(restore) ? restore : path.join(snapshotDir(dataDir, flags.str('etcd-snapshot-dir')), restore);
    let snap: SnapshotFile;
    try {
      snap = JSON.parse(fs.readFileSync(file, 'utf8')) as SnapshotFile;
    } catch (e) {
      log.fatal(
        `starting kubernetes: preparing server: failed to restore snapshot ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : 'not an etcd snapshot'}`,
      );
    }
    // The snapshot's bootstrap data was written with its cluster's token; k3s reads it back with the token it is
    // given (pkg/cluster/storage.go getBootstrapKeyFromStorage) and fails the same way for a snapshot of another
    // cluster as for a wrong token.
    const token = flags.str('token-file') ? fs.readFileSync(flags.str('token-file'), 'utf8').trim() : flags.str('token');
    const password = token.replace(/^K10[0-9a-f]{64}::[^:]+:/, '');
    const want = bootstrapOf(snap.state)?.tokenHash ?? snap.tokenHash;
    if (!password)
      log.fatal(
        'starting kubernetes: preparing server: --cluster-reset-restore-path needs the token the snapshot was taken with (--token or token-file)',
      );
    if (want && tokenHashOf(password) !== want) {
      log.fatal('starting kubernetes: preparing server: bootstrap data already found and encrypted with different token');
    }
    if (fs.existsSync(path.join(db, 'etcd')))
      fs.renameSync(path.join(db, 'etcd'), path.join(db, `etcd-old-${Math.floor(Date.now() / 1000)}`));
    fs.mkdirSync(path.dirname(etcdFile(dataDir)), { recursive: true, mode: 0o700 });
    fs.writeFileSync(etcdFile(dataDir), JSON.stringify(snap.state), { mode: 0o600 });
    log.info(`Restoring etcd snapshot from ${file}`);
  }
  log.info(
    `Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete ${db} on each peer etcd server and rejoin the nodes`,
  );
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    import('node:net').then(({ createServer }) => {
      const s = createServer();
      s.once('error', () => resolve(true));
      s.listen(port, '0.0.0.0', () => s.close(() => resolve(false)));
    });
  });
}
