// The lab network: namespace `lab-hub` with bridge br0 (10.99.0.1/24) that every POP plugs into, and TCP
// forwarders between namespaces. Nothing here adds an address or route to the host namespace; the host reaches
// lab services only through forwarders bound on 127.0.0.0/8.
import fs from 'node:fs';
import path from 'node:path';
import { LAB_SRC, LAB_STATE } from './paths.js';
import { run, sh, startDaemon, stopDaemon, daemonPid, waitFor } from './proc.js';

export const HUB_NETNS = 'lab-hub';
export const HUB_ADDRESS = '10.99.0.1';
export const HUB_BRIDGE = 'br0';

export const netnsExists = (name: string) => fs.existsSync(`/run/netns/${name}`);

function checkNetnsName(netns: string): void {
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(netns)) throw new Error(`lab: bad network namespace name ${JSON.stringify(netns)}`);
}

// Creations in flight, per namespace, so concurrent callers in one process share one run of the locked script
// (settled entries are dropped: after `labDown` the next caller must create the namespace again).
const creating = new Map<string, Promise<boolean>>();

/**
 * The one owner of the hub network: creates `netns` (default lab-hub) + br0 10.99.0.1/24 if missing (or
 * half-made by a crashed run). Race-free: the check and the creation run under an flock that every process
 * takes, and concurrent callers in this process share one promise. Resolves true when this call created it.
 */
export function ensureHubNetwork(netns: string = HUB_NETNS): Promise<boolean> {
  checkNetnsName(netns);
  const pending = creating.get(netns);
  if (pending) return pending;
  const p = createHubNetwork(netns).finally(() => creating.delete(netns));
  creating.set(netns, p);
  return p;
}

async function createHubNetwork(netns: string): Promise<boolean> {
  fs.mkdirSync(LAB_STATE, { recursive: true });
  const { stdout } = await sh(
    `exec flock "$1/hub.lock" sh -ec '
      n="$0"
      if [ -e /run/netns/$n ] && ip -n $n -br addr show dev ${HUB_BRIDGE} 2>/dev/null | grep -q "${HUB_ADDRESS}/24"; then exit 0; fi
      ip netns del $n 2>/dev/null || true
      ip netns add $n
      ip -n $n link set lo up
      ip -n $n link add ${HUB_BRIDGE} type bridge
      ip -n $n addr add ${HUB_ADDRESS}/24 dev ${HUB_BRIDGE}
      ip -n $n link set ${HUB_BRIDGE} up
      echo created' "$2"`,
    [LAB_STATE, netns],
  );
  return stdout.trim() === 'created';
}

/**
 * Deletes `netns` under the same lock, unless a POP is still plugged into its bridge (then it is the lab's to
 * remove). Resolves true when it deleted the namespace.
 */
export async function removeHubNetwork(netns: string = HUB_NETNS): Promise<boolean> {
  checkNetnsName(netns);
  fs.mkdirSync(LAB_STATE, { recursive: true });
  const { stdout } = await sh(
    `exec flock "$1/hub.lock" sh -ec '
      n="$0"
      [ -e /run/netns/$n ] || exit 0
      if ip -n $n -o link show 2>/dev/null | grep -q "master ${HUB_BRIDGE}"; then exit 0; fi
      ip netns del $n
      echo deleted' "$2"`,
    [LAB_STATE, netns],
  );
  return stdout.trim() === 'deleted';
}

export interface Endpoint {
  /** Network namespace name; omitted = the host namespace (where the lab process runs). */
  netns?: string;
  host: string;
  port: number;
}

export interface ForwardRule {
  listen: Endpoint;
  connect: Endpoint;
}

/**
 * Starts (or restarts) the forwarder daemon `name` serving `rules`; resolves once every listener is bound.
 * One Python process per name, a socket per side in its own namespace (test/lab/netns-forward.py).
 */
export async function startForwarder(name: string, rules: ForwardRule[]): Promise<void> {
  const dir = path.join(LAB_STATE, 'forward');
  fs.mkdirSync(dir, { recursive: true });
  const ready = path.join(dir, `${name}.ready`);
  const log = path.join(dir, `${name}.log`);
  fs.rmSync(ready, { force: true });
  const args = rules.flatMap((r) => [
    r.listen.netns ?? '-',
    r.listen.host,
    String(r.listen.port),
    r.connect.netns ?? '-',
    r.connect.host,
    String(r.connect.port),
  ]);
  await startDaemon(`fwd-${name}`, ['/usr/bin/python3', path.join(LAB_SRC, 'netns-forward.py'), ready, ...args], { logFile: log });
  await waitFor(
    `forwarder ${name} (${log})`,
    () => {
      if (fs.existsSync(ready)) return true;
      if (daemonPid(`fwd-${name}`) === undefined) throw new Error(fs.readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | '));
      return false;
    },
    10000,
    10,
  );
}

export const stopForwarder = (name: string) => stopDaemon(`fwd-${name}`);

/** Makes a service listening on the host's 127.0.0.1:port reachable from POPs at 10.99.0.1:port. */
export async function exposeOnHub(name: string, port: number): Promise<string> {
  await ensureHubNetwork();
  await startForwarder(name, [{ listen: { netns: HUB_NETNS, host: HUB_ADDRESS, port }, connect: { host: '127.0.0.1', port } }]);
  return `${HUB_ADDRESS}:${port}`;
}

/** Runs a command in a named network namespace (`ip netns exec`). */
export const inNetns = (netns: string, argv: string[], opts: Parameters<typeof run>[2] = {}) =>
  run('ip', ['netns', 'exec', netns, ...argv], opts);
