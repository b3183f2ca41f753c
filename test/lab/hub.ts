// LAB STAND-IN: the federation hub — the lab Kubernetes API server running FSM's multicluster Cluster
// controller, in network namespace `lab-hub` on 10.99.0.1 (where it reaches POPs at 10.99.0.(10+N)), and
// reachable from the host namespace through a loopback forwarder (127.0.0.2:<port> → unix socket → server).
// Every process is recorded in the lab state (test/lab/proc.ts, pid + start time) under a name derived from
// its state dir, so `stop()` and also `scripts/lab.ts down` kill exactly those pids — wherever the state dir is.
// The hub network namespace has one owner: test/lab/network.ts `ensureHubNetwork`.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { buildApiServerBundle } from './apiserver/build.js';
import type { ServerConfigFile } from './apiserver/main.js';
import { adminKubeconfig, createPki, type LabPki } from './apiserver/pki.js';
import type { KubeObject } from './apiserver/types.js';
import { LAB_STATE } from './paths.js';
import { HUB_ADDRESS, HUB_NETNS, ensureHubNetwork, removeHubNetwork } from './network.js';
import { daemonPid, startDaemon, stopDaemon } from './proc.js';

import { REFERENCE_DIR } from './reference.js';
export { REFERENCE_DIR };
export const FSM_CRD_FILES = [
  'config.flomesh.io_meshconfigs.yaml',
  'config.flomesh.io_meshrootcertificates.yaml',
  'multicluster.flomesh.io_clusters.yaml',
  'multicluster.flomesh.io_serviceexports.yaml',
  'multicluster.flomesh.io_serviceimports.yaml',
  'multicluster.flomesh.io_globaltrafficpolicies.yaml',
].map((f) => join(REFERENCE_DIR, 'fsm', 'v1.5.1', 'crds', f));
export const HELM_CRD_FILES = ['helm.cattle.io_helmcharts.yaml', 'helm.cattle.io_helmchartconfigs.yaml'].map((f) =>
  join(REFERENCE_DIR, 'k3s', 'helm-controller-v0.17.7', f),
);

export { HUB_ADDRESS, HUB_NETNS };

export interface HubOptions {
  /** Port on 10.99.0.1 inside lab-hub and on the loopback forwarder. Default 6443. */
  port?: number;
  /** Host-namespace address of the forwarder. Default 127.0.0.2. */
  forwardHost?: string;
  /** State dir (pid files, certs, kubeconfig, data). Default `<LAB_STATE>/hub` (/var/lib/fsm-edge-lab/hub). */
  stateDir?: string;
  /** Seconds between Cluster reconciles. Default 5. */
  resyncSeconds?: number;
  /** Start with no stored objects (default false: a restarted hub keeps its Clusters). */
  fresh?: boolean;
  /** Network namespace (default lab-hub). Tests use their own so a concurrent `lab down` cannot kill them. */
  netns?: string;
}

export interface Hub {
  /** Host-side URL (through the forwarder), e.g. https://127.0.0.2:6443. */
  url: string;
  /** URL as POPs see it: https://10.99.0.1:6443. */
  labUrl: string;
  /** Admin kubeconfig (client cert, O=system:masters) for the controller, server = `url`. */
  kubeconfigPath: string;
  caFile: string;
  stateDir: string;
  /** Kill the hub's processes; removes the namespace too if startHub created it (unless `keepNetns`). */
  stop(opts?: { keepNetns?: boolean }): Promise<void>;
}

export interface ServerProcessOptions {
  /** Name of the state subdirectory and of the pid files. */
  name: string;
  /** Network namespace to run the server in (undefined = host namespace, no forwarder needed). */
  netns?: string;
  /** Listen address inside `netns`. */
  host: string;
  port: number;
  /** Host-namespace loopback address for the forwarder (when `netns` is set). */
  forwardHost?: string;
  stateDir: string;
  crdFiles: string[];
  hub?: ServerConfigFile['hub'];
  seed?: KubeObject[];
  fresh?: boolean;
  /** Extra SANs for the serving certificate. */
  sans?: string[];
  /** Command that runs node (default this process's node), e.g. a Node 18 through its own ld.so. */
  node?: string[];
}

export interface ServerProcess {
  /** URL from the host namespace. */
  url: string;
  /** URL inside the server's namespace. */
  innerUrl: string;
  pki: LabPki;
  kubeconfigPath: string;
  caFile: string;
  stateDir: string;
  stop(opts?: { purge?: boolean }): Promise<void>;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readPid(file: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const n = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

async function killPidFile(file: string): Promise<void> {
  const pid = readPid(file);
  if (pid && pidAlive(pid)) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  rmSync(file, { force: true });
}

/** GET /readyz with the admin client cert; resolves true on 200. */
function ready(url: string, pki: LabPki): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const u = new URL('/readyz', url);
    const req = request(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'GET',
        ca: pki.caCert,
        cert: pki.adminCert,
        key: pki.adminKey,
        timeout: 2000,
        agent: false,
      },
      (res) => {
        res.resume();
        resolvePromise(res.statusCode === 200);
      },
    );
    req.on('error', () => resolvePromise(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** Names of the lab daemon records of the server and its forwarder for one state dir. */
export function serverDaemonNames(stateDir: string): { server: string; forwarder: string } {
  const id = createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 12);
  return { server: `apiserver-${id}`, forwarder: `apiserver-${id}-fwd` };
}

/** Host-side forwarder: TCP on a loopback address → the server's unix socket (file systems are shared across netns). */
const FORWARDER_JS = `
const net = require('net');
const [host, port, sock] = process.argv.slice(1);
const srv = net.createServer((c) => {
  const u = net.connect(sock);
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
});
srv.listen(Number(port), host, () => process.stdout.write('forwarding\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

/** Serialise starts on one state dir (two callers must not both spawn and then kill each other's pids). */
async function withStartLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, 'start.lock');
  for (let i = 0; ; i++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch {
      const holder = readPid(lock);
      if (!holder || !pidAlive(holder)) rmSync(lock, { force: true });
      else if (i > 600) throw new Error(`lab API server in ${dir} is being started by pid ${holder} for over a minute`);
      else await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Start a lab API server as its own process (optionally in a netns behind a loopback forwarder). */
export async function startServerProcess(o: ServerProcessOptions): Promise<ServerProcess> {
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  return withStartLock(o.stateDir, () => startLocked(o));
}

async function startLocked(o: ServerProcessOptions): Promise<ServerProcess> {
  const dir = o.stateDir;
  const names = serverDaemonNames(dir);
  const sock = join(dir, 'apiserver.sock');
  const innerUrl = `https://${o.host}:${o.port}`;
  const url = o.netns ? `https://${o.forwardHost ?? '127.0.0.2'}:${o.port}` : innerUrl;
  const sans = [o.host, ...(o.forwardHost ? [o.forwardHost] : []), '127.0.0.1', 'localhost', ...(o.sans ?? [])];
  const pki = createPki(join(dir, 'pki'), sans);
  const caFile = join(dir, 'pki', 'ca.crt');
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, adminKubeconfig(pki, url, o.name), { mode: 0o600 });

  const handle: ServerProcess = {
    url,
    innerUrl,
    pki,
    kubeconfigPath,
    caFile,
    stateDir: dir,
    async stop(opts = {}) {
      await stopDaemon(names.forwarder);
      await stopDaemon(names.server);
      rmSync(sock, { force: true });
      if (opts.purge) rmSync(join(dir, 'data.json'), { force: true });
    },
  };

  // already running (idempotent start)
  if (daemonPid(names.server) !== undefined && (!o.netns || daemonPid(names.forwarder) !== undefined) && (await ready(url, pki)))
    return handle;
  await handle.stop({ purge: o.fresh === true });

  const bundle = join(dir, 'apiserver.mjs');
  await buildApiServerBundle({ outfile: bundle });
  const crdDir = join(dir, 'crds');
  rmSync(crdDir, { recursive: true, force: true });
  mkdirSync(crdDir);
  const crdFiles = o.crdFiles.map((f) => {
    const to = join(crdDir, f.split('/').pop() as string);
    copyFileSync(f, to);
    return to;
  });
  const cfg: ServerConfigFile = {
    host: o.host,
    port: o.port,
    unixSocket: sock,
    advertiseUrl: innerUrl,
    tls: { certFile: join(dir, 'pki', 'server.crt'), keyFile: join(dir, 'pki', 'server.key'), caFile },
    crdFiles,
    dataFile: join(dir, 'data.json'),
    ...(o.hub ? { hub: o.hub } : {}),
    ...(o.seed ? { seed: o.seed } : {}),
  };
  const cfgFile = join(dir, 'server.json');
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2), { mode: 0o600 });
  const logFile = join(dir, 'server.log');
  const node = o.node ?? [process.execPath];
  const argv = [...node, bundle, '--config', cfgFile];
  // `ip netns exec` execs node in place, so the recorded pid is the server's
  await startDaemon(names.server, o.netns ? ['ip', 'netns', 'exec', o.netns, ...argv] : argv, { logFile });
  if (o.netns) {
    const fwdArgv = [process.execPath, '-e', FORWARDER_JS, o.forwardHost ?? '127.0.0.2', String(o.port), sock];
    await startDaemon(names.forwarder, fwdArgv, { logFile: join(dir, 'forwarder.log') });
  }

  for (let i = 0; i < 150; i++) {
    if (await ready(url, pki)) return handle;
    if (daemonPid(names.server) === undefined) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
  await handle.stop();
  throw new Error(`lab API server "${o.name}" did not become ready at ${url}; last lines of ${logFile}:\n${tail}`);
}

/** Start (or find running) the lab hub. Called by `scripts/lab.ts up --hub`. */
export async function startHub(opts: HubOptions = {}): Promise<Hub> {
  const port = opts.port ?? 6443;
  const stateDir = opts.stateDir ?? join(LAB_STATE, 'hub');
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const netns = opts.netns ?? HUB_NETNS;
  if (await ensureHubNetwork(netns)) writeFileSync(join(stateDir, 'created-netns'), `${netns}\n`);
  const p = await startServerProcess({
    name: 'lab-hub',
    netns,
    host: HUB_ADDRESS,
    port,
    forwardHost: opts.forwardHost ?? '127.0.0.2',
    stateDir,
    crdFiles: FSM_CRD_FILES,
    hub: { resyncSeconds: opts.resyncSeconds ?? 5 },
    fresh: opts.fresh === true,
  });
  return {
    url: p.url,
    labUrl: p.innerUrl,
    kubeconfigPath: p.kubeconfigPath,
    caFile: p.caFile,
    stateDir,
    stop: (o = {}) => stopHub(stateDir, o),
  };
}

/** Stop the hub started with `stateDir` (kill by recorded pid); removes its namespace only if the hub created it. */
export async function stopHub(
  stateDir: string = join(LAB_STATE, 'hub'),
  opts: { purge?: boolean; keepNetns?: boolean } = {},
): Promise<void> {
  const names = serverDaemonNames(stateDir);
  await stopDaemon(names.forwarder);
  await stopDaemon(names.server);
  // pid files of a hub started before processes were recorded in the lab state
  for (const f of existsSync(stateDir) ? readdirSync(stateDir) : []) if (f.endsWith('.pid')) await killPidFile(join(stateDir, f));
  rmSync(join(stateDir, 'apiserver.sock'), { force: true });
  if (opts.purge) rmSync(join(stateDir, 'data.json'), { force: true });
  const marker = join(stateDir, 'created-netns');
  if (existsSync(marker) && !opts.keepNetns) {
    const netns = readFileSync(marker, 'utf8').trim() || HUB_NETNS;
    // A private namespace goes with its hub (only when no POP is plugged into the bridge). The shared lab-hub
    // stays for `lab.ts down`: lab test files run side by side, and another one may be between creating it and
    // plugging in its first POP, or run its own hub or an exposed registry in it — none of which shows on the
    // bridge, so deleting it here would pull the network from under that file.
    if (netns !== HUB_NETNS) await removeHubNetwork(netns);
    rmSync(marker, { force: true });
  }
}
