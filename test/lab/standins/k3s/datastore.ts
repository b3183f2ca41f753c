// Where the stand-in keeps cluster state: the lab API server's JSON snapshot, at a path that tells the two k3s
// datastores apart (SQLite: server/db/state.db…; embedded etcd with cluster-init: server/db/etcd/). Backups copy
// these directories exactly like they would for real k3s; etcd snapshots wrap the file with the token hash the
// cluster was created with.
import fs from 'node:fs';
import path from 'node:path';

export const dbDir = (dataDir: string) => path.join(dataDir, 'server', 'db');
export const sqliteFile = (dataDir: string) => path.join(dbDir(dataDir), 'state.standin.json');
export const etcdFile = (dataDir: string) => path.join(dbDir(dataDir), 'etcd', 'member', 'standin-state.json');
export const isEtcd = (dataDir: string) => fs.existsSync(path.join(dbDir(dataDir), 'etcd'));
export const snapshotDir = (dataDir: string, flagDir: string) => flagDir || path.join(dbDir(dataDir), 'snapshots');

/** The datastore file for this start; migrates SQLite → etcd when cluster-init is newly set (as k3s does). */
export function datastoreFile(dataDir: string, clusterInit: boolean, log: (m: string) => void): string {
  const sqlite = sqliteFile(dataDir);
  const etcd = etcdFile(dataDir);
  if (clusterInit || isEtcd(dataDir)) {
    fs.mkdirSync(path.dirname(etcd), { recursive: true, mode: 0o700 });
    if (!fs.existsSync(etcd) && fs.existsSync(sqlite)) {
      log(`Migrating content from sqlite to etcd`);
      fs.copyFileSync(sqlite, etcd);
      fs.renameSync(sqlite, `${sqlite}.migrated`);
    }
    return etcd;
  }
  fs.mkdirSync(path.dirname(sqlite), { recursive: true, mode: 0o700 });
  return sqlite;
}
