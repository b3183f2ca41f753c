// `k3s server`: the order of a real k3s start, each step failing where and how k3s fails.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createApiServer, type ApiServer } from '../../apiserver/index.js';
import { EMBEDDED_CRDS, K3S_COMMIT, K3S_VERSION, GO_VERSION, BUILT_ARCH, BUILT_FAULT, SYSTEM_IMAGES } from './build-info.js';
import { FlagError, parseServerFlags, ServerFlags } from './flags.js';
import { log, setDebug } from './log.js';
import { ensurePki } from './pki.js';
import { ensureNodePassword, ensureServerToken, TokenError } from './secrets.js';
import { writeKubeconfig } from './kubeconfig.js';
import { notifyReady } from './notify.js';
import { Containerd } from './containerd.js';
import { AgentState } from './agent-state.js';
import { nodeController } from './node.js';
import { workloadController } from './workloads.js';
import { helmController } from './helm.js';
import { fsmBootstrapController } from './fsm-release.js';
import { deployController, writePackagedComponents } from './addons.js';
import { datastoreFile } from './datastore.js';
import { clusterResetRestore } from './etcd-snapshot.js';
import { hostConfigs, readRegistriesYaml, writeContainerdHosts } from './registries.js';

const DISABLE_ITEMS = ['coredns', 'servicelb', 'traefik', 'local-storage', 'metrics-server', 'runtimes'];

export async function runServer(args: string[]): Promise<void> {
  let flags: ServerFlags;
  try {
    flags = new ServerFlags(parseServerFlags(args));
  } catch (e) {
    if (e instanceof FlagError) {
      process.stderr.write(`Incorrect Usage: ${e.message}\n\n`);
      log.fatal(`Error: ${e.message}`);
    }
    throw e;
  }
  for (const w of flags.parsed.warnings) log.warn(w);
  setDebug(flags.bool('debug'));
  const dataDir = flags.dataDir;

  if (flags.bool('cluster-reset')) {
    await clusterResetRestore(flags);
    return;
  }

  log.info(`Starting k3s ${K3S_VERSION} (${K3S_COMMIT})`);
  if (BUILT_FAULT === 'never-ready') await neverReady();
  if (flags.str('datastore-endpoint'))
    log.fatal(
      'starting kubernetes: preparing server: the k3s stand-in supports only the embedded datastores (SQLite, etcd with cluster-init)',
    );
  const backend = flags.str('flannel-backend', 'vxlan');
  if (!['vxlan', 'host-gw', 'wireguard-native', 'none'].includes(backend)) log.fatal(`invalid flannel backend: ${backend}`);
  for (const d of flags.list('disable'))
    if (!DISABLE_ITEMS.includes(d)) log.warn(`Unknown item ${JSON.stringify(d)} in --disable; valid items: ${DISABLE_ITEMS.join(', ')}`);

  const hostname = os.hostname();
  const nodeName = (flags.str('node-name') || hostname).toLowerCase();
  const port = flags.int('https-listen-port', 6443);
  const bind = flags.str('bind-address', '0.0.0.0');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });

  const dbFile = datastoreFile(dataDir, flags.bool('cluster-init'), (m) => log.info(m));
  log.info(
    flags.bool('cluster-init') || dbFile.includes('/etcd/')
      ? 'Managed etcd cluster initializing'
      : `Configuring sqlite3 database connection pooling: maxIdleConns=2, maxOpenConns=0, connMaxLifetime=0s`,
  );

  let pki;
  try {
    pki = ensurePki(dataDir, hostname, flags.list('tls-san'));
  } catch (e) {
    log.fatal(`starting kubernetes: preparing server: ${(e as Error).message}`);
  }
  try {
    ensureServerToken(dataDir, pki.caCert, flags.str('token'), flags.str('token-file'));
  } catch (e) {
    if (e instanceof TokenError) log.fatal(e.message);
    throw e;
  }
  const nodePasswordHash = ensureNodePassword();

  const crdDir = path.join(dataDir, 'server', 'standin-crds');
  fs.mkdirSync(crdDir, { recursive: true });
  const crdFiles: string[] = [];
  for (const [file, text] of Object.entries(EMBEDDED_CRDS)) {
    if (/flomesh\.io_/.test(file)) continue; // FSM's CRDs come with fsm-bootstrap
    fs.writeFileSync(path.join(crdDir, file), text);
    crdFiles.push(path.join(crdDir, file));
  }
  writeDataDirLayout(dataDir);
  const disabled = new Set(flags.list('disable'));
  const removedManifests = writePackagedComponents(dataDir, disabled, flags.list('cluster-dns')[0] ?? '10.43.0.10');

  const containerd = new Containerd(dataDir, flags.str('snapshotter', 'overlayfs'));
  const agent = new AgentState(nodeName, containerd);
  // k3s renders containerd's certs.d from registries.yaml at every agent start (pkg/agent/containerd/config.go).
  const registriesFile = flags.str('private-registry') || '/etc/rancher/k3s/registries.yaml';
  try {
    agent.registryHosts = hostConfigs(readRegistriesYaml(registriesFile), flags.bool('disable-default-registry-endpoint'));
  } catch (e) {
    log.fatal(`failed to load private registry configuration from ${registriesFile}: ${(e as Error).message.split('\n')[0]}`);
  }
  writeContainerdHosts(path.join(dataDir, 'agent', 'etc', 'containerd', 'certs.d'), agent.registryHosts);
  const controllers = [
    deployController(dataDir, nodeName, removedManifests),
    nodeController(agent, { labels: flags.list('node-label'), taints: flags.list('node-taint'), nodePasswordHash }),
    workloadController(agent),
    fsmBootstrapController(),
  ];
  if (!flags.bool('disable-helm-controller')) {
    controllers.push(helmController({ dataDir, agent, jobImage: flags.str('helm-job-image') || SYSTEM_IMAGES.klipperHelm }));
  }

  let api: ApiServer;
  try {
    api = await createApiServer({
      host: bind,
      port,
      advertiseUrl: `https://127.0.0.1:${port}`,
      tls: { cert: pki.servingCert, key: pki.servingKey, ca: pki.caCert },
      crdFiles,
      controllers,
      dataFile: dbFile,
      version: {
        gitVersion: K3S_VERSION,
        gitCommit: K3S_COMMIT,
        goVersion: GO_VERSION,
        platform: `linux/${BUILT_ARCH}`,
        major: '1',
        minor: K3S_VERSION.split('.')[1] ?? '',
      },
      log: (l) => log.debug(l),
    });
  } catch (e) {
    log.fatal(`starting kubernetes: preparing server: ${(e as Error).message}`);
  }
  for (const ns of ['kube-system', 'kube-public', 'kube-node-lease', 'default']) {
    if (!api.store.get('v1', 'Namespace', ns)) api.store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  }
  log.info('Kube API server is now running');

  const kubeconfig = '/etc/rancher/k3s/k3s.yaml';
  const mode = flags.str('write-kubeconfig-mode');
  writeKubeconfig(kubeconfig, pki, port, mode, flags.str('write-kubeconfig-group'), flags.str('write-kubeconfig-name'));
  if (flags.str('write-kubeconfig'))
    writeKubeconfig(
      flags.str('write-kubeconfig'),
      pki,
      port,
      mode,
      flags.str('write-kubeconfig-group'),
      flags.str('write-kubeconfig-name'),
    );

  const shutdown = async (sig: string) => {
    log.info(`Received ${sig}, shutting down`);
    containerd.stop();
    await api.close().catch(() => {});
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  // The agent: containerd + airgap images, before the kubelet (and so the node) can come up.
  await startAgent(agent, containerd);
  log.info('k3s is up and running');
  await notifyReady();
}

async function startAgent(agent: AgentState, containerd: Containerd) {
  try {
    await containerd.checkSnapshotter();
  } catch (e) {
    agent.error = (e as Error).message;
    const say = () => log.info(`Waiting to retrieve agent configuration; server is not ready: ${agent.error}`);
    say();
    setInterval(say, 5000);
    return;
  }
  try {
    await containerd.start();
  } catch (e) {
    log.fatal(`containerd: ${(e as Error).message}`);
  }
  await containerd.importAll();
  agent.ready = true;
  // k3s >= v1.32 also imports archives added or changed while it runs
  setInterval(() => void containerd.importAll().catch((e) => log.error(`Failed to process image event: ${(e as Error).message}`)), 3000);
}

/** data/<commit>/bin with `current` and the static cni dir (what k3s extracts), and flannel's CNI config. */
function writeDataDirLayout(dataDir: string) {
  const bin = path.join(dataDir, 'data', K3S_COMMIT, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const cni = path.join(dataDir, 'data', 'cni');
  fs.mkdirSync(cni, { recursive: true });
  for (const p of ['cni', 'loopback', 'bridge', 'host-local', 'portmap', 'bandwidth', 'firewall', 'flannel']) {
    const f = path.join(bin, p);
    if (!fs.existsSync(f))
      fs.writeFileSync(f, '#!/bin/sh\necho "k3s STAND-IN: CNI plugins are not real in the fsm-edge lab" >&2\nexit 1\n', { mode: 0o755 });
    const link = path.join(cni, p);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(f, link);
  }
  const current = path.join(dataDir, 'data', 'current');
  fs.rmSync(current, { force: true });
  fs.symlinkSync(path.join(dataDir, 'data', K3S_COMMIT), current);
  const netd = path.join(dataDir, 'agent', 'etc', 'cni', 'net.d');
  fs.mkdirSync(netd, { recursive: true });
  fs.writeFileSync(
    path.join(netd, '10-flannel.conflist'),
    JSON.stringify(
      {
        name: 'cbr0',
        cniVersion: '1.0.0',
        plugins: [
          { type: 'flannel', delegate: { hairpinMode: true, forceAddress: true, isDefaultGateway: true } },
          { type: 'portmap', capabilities: { portMappings: true } },
          { type: 'bandwidth', capabilities: { bandwidth: true } },
        ],
      },
      null,
      2,
    ),
  );
}

/**
 * The `never-ready` build: k3s starts, its apiserver never comes up, so it never reports READY=1 (Type=notify:
 * `systemctl start` blocks; the unit has TimeoutStartSec=0) and /readyz never answers — logging, every 30 s, the
 * line k3s's server prints while it waits for its apiserver (k3s pkg/server/server.go `apiReadyLoop`).
 * It runs until systemd stops it; it touches no data (a real broken release may have started migrating it).
 */
async function neverReady(): Promise<never> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 30_000));
    log.info('Waiting for API server to become available');
  }
}
