// Where the stand-in keeps cluster state: the lab API server's JSON snapshot, at k3s's own paths (SQLite:
// server/db/state.db; embedded etcd with cluster-init: server/db/etcd/), so copying server/db backs it up — and
// restores it — exactly as for real k3s. The file is JSON, not SQLite: `sqlite3 .backup` does not read it.
//
// Bootstrap data. Real k3s keeps the cluster's CA certificates and keys (and the service-account signing key) in
// the datastore as one value under `/bootstrap/<hash of the token>`, encrypted with a key derived from the token's
// password (k3s pkg/cluster/storage.go `Save`, `storageBootstrap`, `getBootstrapKeyFromStorage`), and on start
// writes them back to server/tls (pkg/cluster/bootstrap.go `ReconcileBootstrapData`). The stand-in keeps the same
// data as the Secret kube-system/k3s-standin-bootstrap inside the datastore file: the token's hash and the files
// of server/tls that identify the cluster (CA cert+key, and the serving key that signs service-account tokens).
// Difference, stated: the stand-in writes a restored CA to server/tls before it checks the token (k3s decrypts
// first); a start with the wrong token still dies before anything serves.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const dbDir = (dataDir: string) => path.join(dataDir, 'server', 'db');
export const sqliteFile = (dataDir: string) => path.join(dbDir(dataDir), 'state.db');
export const etcdFile = (dataDir: string) => path.join(dbDir(dataDir), 'etcd', 'member', 'standin-state.json');
export const isEtcd = (dataDir: string) => fs.existsSync(path.join(dbDir(dataDir), 'etcd'));
export const snapshotDir = (dataDir: string, flagDir: string) => flagDir || path.join(dbDir(dataDir), 'snapshots');

/** The datastore file for this start; migrates SQLite → etcd when cluster-init is newly set (as k3s does). */
export function datastoreFile(dataDir: string, clusterInit: boolean, log: (m: string) => void): string {
  const sqlite = sqliteFile(dataDir);
  const etcd = etcdFile(dataDir);
  let file: string;
  if (clusterInit || isEtcd(dataDir)) {
    fs.mkdirSync(path.dirname(etcd), { recursive: true, mode: 0o700 });
    if (!fs.existsSync(etcd) && fs.existsSync(sqlite)) {
      log(`Migrating content from sqlite to etcd`);
      fs.copyFileSync(sqlite, etcd);
      fs.renameSync(sqlite, `${sqlite}.migrated`);
    }
    file = etcd;
  } else {
    fs.mkdirSync(path.dirname(sqlite), { recursive: true, mode: 0o700 });
    file = sqlite;
  }
  restoreBootstrapFiles(dataDir, readBootstrap(file));
  return file;
}

/** The datastore file in use (after `datastoreFile` chose it). */
export const currentDatastoreFile = (dataDir: string) => (isEtcd(dataDir) ? etcdFile(dataDir) : sqliteFile(dataDir));

export const BOOTSTRAP_SECRET = 'k3s-standin-bootstrap';
/** server/tls files that make up the cluster's identity (real k3s: bootstrap.ControlRuntimeBootstrap paths). */
export const BOOTSTRAP_TLS_FILES = ['server-ca.crt', 'server-ca.key', 'client-ca.crt', 'client-ca.key', 'serving-kube-apiserver.key'];

export interface Bootstrap {
  tokenHash: string;
  files: Record<string, string>;
}

interface StoreFile {
  resourceVersion: number;
  objects: Array<{ apiVersion: string; kind: string; metadata: Record<string, unknown>; data?: Record<string, string>; type?: string }>;
}

function readStore(file: string): StoreFile | undefined {
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as StoreFile;
}

/** The bootstrap record of a datastore snapshot (a parsed datastore file or the `state` of an etcd snapshot). */
export function bootstrapOf(store: unknown): Bootstrap | undefined {
  const objects = (store as StoreFile | undefined)?.objects ?? [];
  const s = objects.find((o) => o.kind === 'Secret' && o.metadata.name === BOOTSTRAP_SECRET && o.metadata.namespace === 'kube-system');
  if (!s?.data?.tokenHash) return undefined;
  const files: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.data)) if (k.startsWith('tls.')) files[k.slice(4)] = Buffer.from(v, 'base64').toString('utf8');
  return { tokenHash: Buffer.from(s.data.tokenHash, 'base64').toString('utf8'), files };
}

export function readBootstrap(file: string): Bootstrap | undefined {
  return bootstrapOf(readStore(file));
}

/** ReconcileBootstrapData, stand-in: the datastore's CA and signing key win over what is (or is not) on disk. */
function restoreBootstrapFiles(dataDir: string, b: Bootstrap | undefined): void {
  if (!b) return;
  const tls = path.join(dataDir, 'server', 'tls');
  fs.mkdirSync(tls, { recursive: true, mode: 0o700 });
  for (const [name, text] of Object.entries(b.files)) {
    if (!BOOTSTRAP_TLS_FILES.includes(name)) continue;
    const p = path.join(tls, name);
    if (fs.existsSync(p) && fs.readFileSync(p, 'utf8') === text) continue;
    fs.writeFileSync(p, text, { mode: 0o600 });
    // A serving cert signed by another CA (or for another key) must be re-issued.
    if (name === 'server-ca.crt' || name === 'serving-kube-apiserver.key')
      fs.rmSync(path.join(tls, 'serving-kube-apiserver.crt'), { force: true });
    if (name === 'server-ca.crt') fs.rmSync(path.join(tls, 'client-admin.crt'), { force: true });
  }
}

export const tokenHashOf = (password: string) => crypto.createHash('sha256').update(password).digest('hex');

/** Saves the bootstrap record into the datastore file before the API server opens it (k3s `cluster.Save`). */
export function saveBootstrap(file: string, tokenHash: string, dataDir: string): void {
  const store = readStore(file) ?? { resourceVersion: 1, objects: [] };
  const tls = path.join(dataDir, 'server', 'tls');
  const data: Record<string, string> = { tokenHash: Buffer.from(tokenHash).toString('base64') };
  for (const name of BOOTSTRAP_TLS_FILES) {
    const p = path.join(tls, name);
    if (fs.existsSync(p)) data[`tls.${name}`] = fs.readFileSync(p).toString('base64');
  }
  store.objects = store.objects.filter((o) => !(o.kind === 'Secret' && o.metadata.name === BOOTSTRAP_SECRET));
  store.resourceVersion += 1;
  store.objects.push({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: BOOTSTRAP_SECRET,
      namespace: 'kube-system',
      uid: crypto.randomUUID(),
      resourceVersion: String(store.resourceVersion),
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    },
    type: 'k3s.cattle.io/standin-bootstrap',
    data,
  });
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(store), { mode: 0o600 });
  fs.renameSync(tmp, file);
}
