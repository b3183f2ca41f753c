// The lab as one unit: bring up POPs (+ registry, file server, hub) and take everything down again.
// `scripts/lab.ts` is the command line over these; tests call them directly.
import fs from 'node:fs';
import path from 'node:path';
import type { LabArch, PopInfo } from './types.js';
import { LAB_STATE, popsDir } from './paths.js';
import { removeArm64Binfmt, arm64Registered } from './binfmt.js';
import { HUB_NETNS, ensureHubNetwork, netnsExists } from './network.js';
import { listPopIndexes, listPops, mountsUnder, popDown, popUp, type PopOptions } from './pop.js';
import { startRegistry, type RegistryHandle } from './registry.js';
import { startFileServer, type FileServerHandle } from './fileserver.js';
import { daemonNames, daemonPid, run, signalPid, stopDaemon } from './proc.js';
import { ensureRootfsCache, ensureRootfsTree, type CacheReport } from './rootfs-cache.js';

export { ensureHubNetwork, popUp, popDown };
export type { PopOptions };
export { popExec, listPops, ensureClientKey } from './pop.js';
export { shapeLink, cutLink, restoreLink, linkCounters } from './link.js';
export { startRegistry, startFileServer };

export interface LabUpOptions {
  amd64?: number;
  arm64?: number;
  /** Boot systemd in every POP (systemd-nspawn); default plain sshd POPs. */
  systemd?: boolean;
  /** Userspace wire links (needed for `shapeLink` with delay). */
  wire?: boolean;
  registry?: boolean;
  fileServer?: boolean;
  /** Start the lab hub (test/lab/hub.ts `startHub`). */
  hub?: boolean;
}

export interface HubInfo {
  url: string;
  labUrl: string;
  kubeconfigPath: string;
  caFile: string;
}

export interface Lab {
  pops: PopInfo[];
  registry?: { url: string; labHost?: string; dataDir: string };
  fileServer?: { url: string; labUrl?: string; root: string };
  hub?: HubInfo;
  /** Keep handles for stopping single services; `labDown` stops everything anyway. */
  handles: { registry?: RegistryHandle; fileServer?: FileServerHandle };
}

/** Brings up the requested POPs (in parallel) and services. On any failure everything started here is removed. */
export async function labUp(opts: LabUpOptions = {}): Promise<Lab> {
  const archs: LabArch[] = [...Array<LabArch>(opts.amd64 ?? 0).fill('amd64'), ...Array<LabArch>(opts.arm64 ?? 0).fill('arm64')];
  await Promise.all([ensureHubNetwork(), ...[...new Set(archs)].map((a) => ensureRootfsTree(a))]);
  const started: PopInfo[] = [];
  const handles: Lab['handles'] = {};
  try {
    const popOpts = (arch: LabArch): PopOptions => ({ arch, systemd: opts.systemd, wire: opts.wire });
    const results = await Promise.allSettled(archs.map((a) => popUp(popOpts(a)).then((p) => (started.push(p), p))));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const [registry, fileServer, hub] = await Promise.all([
      opts.registry ? startRegistry({ hub: true }) : undefined,
      opts.fileServer ? startFileServer({ hub: true }) : undefined,
      opts.hub ? startLabHub() : undefined,
    ]);
    handles.registry = registry;
    handles.fileServer = fileServer;
    return {
      pops: started.sort((a, b) => a.index - b.index),
      registry: registry && { url: registry.url, labHost: registry.labHost, dataDir: registry.dataDir },
      fileServer: fileServer && { url: fileServer.url, labUrl: fileServer.labUrl, root: fileServer.root },
      hub,
      handles,
    };
  } catch (e) {
    await Promise.all(started.map((p) => popDown(p).catch(() => {})));
    await handles.registry?.stop().catch(() => {});
    await handles.fileServer?.stop().catch(() => {});
    throw e;
  }
}

// hub.ts belongs to the API-server work; imported lazily so the lab works without it
async function startLabHub(): Promise<HubInfo> {
  const { startHub } = await import('./hub.js');
  const h = await startHub();
  return { url: h.url, labUrl: h.labUrl, kubeconfigPath: h.kubeconfigPath, caFile: h.caFile };
}

async function stopLabHub(): Promise<void> {
  try {
    const { stopHub } = await import('./hub.js');
    await stopHub();
  } catch (e) {
    if (!/not implemented/.test(String(e))) throw e;
  }
}

const labNetnses = () => {
  try {
    return fs.readdirSync('/run/netns').filter((n) => /^lab-pop\d+$/.test(n));
  } catch {
    return [];
  }
};

/**
 * Removes everything the lab made: every POP (recorded or only left behind as a netns/cgroup by a crash),
 * every recorded daemon (forwarders, registries, file servers, wires), the hub and lab-hub, the binfmt entry,
 * and the runtime state (the client key and the root filesystem caches stay). Idempotent.
 */
export async function labDown(): Promise<void> {
  const indexes = new Set<number>([
    ...listPopIndexes(),
    ...labNetnses().map((n) => Number(n.slice('lab-pop'.length))),
    ...['systemd', 'unified'].flatMap((h) => {
      try {
        return fs
          .readdirSync(`/sys/fs/cgroup/${h}`)
          .filter((d) => /^lab-pop\d+$/.test(d))
          .map((d) => Number(d.slice(7)));
      } catch {
        return [];
      }
    }),
  ]);
  const errors: string[] = [];
  await Promise.all([...indexes].map((n) => popDown(`pop${n}`).catch((e) => errors.push(String(e)))));
  await stopLabHub().catch((e) => errors.push(`hub: ${String(e)}`));
  for (const name of daemonNames()) await stopDaemon(name);
  if (netnsExists(HUB_NETNS)) {
    const { stdout } = await run('ip', ['netns', 'pids', HUB_NETNS], { allowFail: true });
    for (const p of stdout.split('\n').filter(Boolean)) signalPid(Number(p), 'SIGKILL');
    await run('ip', ['netns', 'del', HUB_NETNS], { allowFail: true });
  }
  if (arm64Registered()) removeArm64Binfmt();
  const stuck = mountsUnder(LAB_STATE);
  if (stuck.length) errors.push(`left ${LAB_STATE} in place: still mounted in the host namespace: ${stuck.join(', ')}`);
  else
    for (const entry of fs.existsSync(LAB_STATE) ? fs.readdirSync(LAB_STATE) : []) {
      if (entry === 'keys' || entry.endsWith('.lock')) continue;
      fs.rmSync(path.join(LAB_STATE, entry), { recursive: true, force: true });
    }
  if (errors.length) throw new Error(`lab down finished with errors:\n${errors.join('\n')}`);
}

export interface LabStatus {
  pops: (PopInfo & { running: boolean })[];
  daemons: { name: string; pid?: number }[];
  hubNetwork: boolean;
  netns: string[];
  binfmtArm64: boolean;
  stateDir: string;
  popsDir: string;
}

export function labStatus(): LabStatus {
  return {
    pops: listPops().map((p) => ({ ...p, running: daemonPid(p.name) !== undefined })),
    daemons: daemonNames().map((name) => ({ name, pid: daemonPid(name) })),
    hubNetwork: netnsExists(HUB_NETNS),
    netns: labNetnses(),
    binfmtArm64: arm64Registered(),
    stateDir: LAB_STATE,
    popsDir: popsDir(),
  };
}

/** Builds (or verifies) the root filesystem caches of both archs and unpacks their base trees. */
export async function labCache(log: (line: string) => void = () => {}): Promise<CacheReport[]> {
  // in parallel: the arm64 debootstrap (qemu, ~4 min) dominates and the amd64 one fits beside it
  return Promise.all(
    (['amd64', 'arm64'] as const).map(async (arch) => {
      const report = await ensureRootfsCache(arch, log);
      await ensureRootfsTree(arch, log);
      return report;
    }),
  );
}
