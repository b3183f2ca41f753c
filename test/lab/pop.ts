// A lab POP: network namespace lab-popN on the hub bridge (10.99.0.(10+N), fixed MAC), its own overlay root on
// the cached Debian base of its arch, hostname popN, per-POP host keys and machine-id, root + user `pop`
// (passwordless sudo). `plain` POPs run sshd as PID 1 (fast); `systemd` POPs boot systemd with systemd-nspawn.
// The controller reaches a POP's sshd (and its port 6443) at 127.0.0.(10+N) through a forwarder whose far end is
// in lab-hub, so the traffic crosses the POP's (shapeable) link.
//
// containerd inside a POP: its overlayfs snapshotter cannot nest on the overlay root, so /var/lib/rancher and
// /var/lib/containerd are bind mounts of plain per-POP directories (<pop dir>/persist/…, on the host disk).
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { LabArch, PopInfo } from './types.js';
import { LAB_SRC, keysDir, popsDir } from './paths.js';
import { ensureArm64Binfmt } from './binfmt.js';
import { ensureRootfsTree } from './rootfs-cache.js';
import { HUB_NETNS, ensureHubNetwork, netnsExists, startForwarder, stopForwarder } from './network.js';
import { childrenOf, daemonPid, pidAlive, run, signalPid, sleep, startDaemon, stopDaemon, waitFor, type RunResult } from './proc.js';

export interface PopOptions {
  arch?: LabArch;
  /** Boot systemd (systemd-nspawn --boot) instead of running sshd as PID 1. */
  systemd?: boolean;
  /**
   * Join the bridge through the userspace wire (test/lab/wire.py, TAP pair) instead of a veth, so `shapeLink`
   * can add delay. Slower per packet; use only where delay is needed.
   */
  wire?: boolean;
  /** Give up waiting for sshd after this long. */
  bootTimeoutMs?: number;
}

/** What the lab records about a POP beyond the shared PopInfo contract. */
interface PopRecord extends PopInfo {
  wire: boolean;
  dir: string;
}

const MAX_POPS = 240; // 10 + N must stay a valid last octet
export const popAddress = (n: number) => `10.99.0.${10 + n}`;
export const popLoopback = (n: number) => `127.0.0.${10 + n}`;
export const popNetns = (n: number) => `lab-pop${n}`;
export const hubPort = (n: number) => `vh${n}`;
// fixed per POP: a re-created POP on the same IP must not meet a stale ARP entry in lab-hub (68 s hang)
const popMac = (n: number) => `02:99:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
/** iptables chain (in lab-hub and in the POP) holding shapeLink's random-drop rule. */
export const lossChain = (n: number) => `LAB-LOSS-POP${n}`;
const popDir = (n: number) => path.join(popsDir(), `pop${n}`);
const indexOf = (pop: PopInfo | string) => Number((typeof pop === 'string' ? pop : pop.name).replace(/^pop/, ''));

/** The lab's client key (ed25519, no passphrase); root and `pop` on every POP accept it. */
export async function ensureClientKey(): Promise<string> {
  const key = path.join(keysDir(), 'id_ed25519');
  if (!fs.existsSync(`${key}.pub`)) {
    fs.mkdirSync(keysDir(), { recursive: true, mode: 0o700 });
    const tmp = `${key}.${process.pid}`;
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'fsm-edge-lab', '-f', tmp]);
    if (!fs.existsSync(`${key}.pub`)) {
      fs.renameSync(tmp, key);
      fs.renameSync(`${tmp}.pub`, `${key}.pub`);
    } else fs.rmSync(tmp, { force: true }), fs.rmSync(`${tmp}.pub`, { force: true });
  }
  return key;
}

/** Claims the lowest free POP index (mkdir is atomic, so concurrent test files never share one). */
function claimIndex(): number {
  fs.mkdirSync(popsDir(), { recursive: true });
  for (let n = 1; n <= MAX_POPS; n++) {
    try {
      fs.mkdirSync(popDir(n));
      return n;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  throw new Error(`lab: all ${MAX_POPS} POP slots are taken; run \`npx tsx scripts/lab.ts down\``);
}

async function hostKeyFingerprint(pubFile: string): Promise<string> {
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile]);
  const fp = stdout.split(' ')[1];
  if (!fp?.startsWith('SHA256:')) throw new Error(`lab: unexpected ssh-keygen -l output for ${pubFile}: ${stdout}`);
  return fp;
}

async function plugIn(n: number, dir: string, wire: boolean): Promise<void> {
  const ns = popNetns(n);
  const vh = hubPort(n);
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  if (wire) {
    const ready = path.join(dir, 'wire.ready');
    fs.writeFileSync(path.join(dir, 'wire.json'), '{}');
    await startDaemon(
      `wire-pop${n}`,
      ['/usr/bin/python3', path.join(LAB_SRC, 'wire.py'), HUB_NETNS, vh, ns, 'eth0', path.join(dir, 'wire.json'), ready],
      {
        logFile: path.join(dir, 'wire.log'),
      },
    );
    await waitFor(`wire.py for pop${n} (${dir}/wire.log)`, () => fs.existsSync(ready), 10000, 10);
    await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', popMac(n)]);
  } else {
    await run('ip', ['link', 'add', vh, 'netns', HUB_NETNS, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns, 'address', popMac(n)]);
  }
  await run('ip', ['-n', HUB_NETNS, 'link', 'set', vh, 'master', 'br0', 'up']);
  await run('ip', ['-n', ns, 'addr', 'add', `${popAddress(n)}/24`, 'dev', 'eth0']);
  await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.99.0.1']);
}

/** Resolves when an SSH banner comes back through the POP's loopback forwarder. */
function sshBanner(host: string, port = 22, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let buf = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.length >= 4) done(buf.startsWith('SSH-'));
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(buf.startsWith('SSH-')));
  });
}

const logTail = (file: string) => {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-12).join('\n');
  } catch {
    return '(no log)';
  }
};

/** Starts one POP and waits until its sshd answers through the host forwarder. */
export async function popUp(opts: PopOptions = {}): Promise<PopInfo> {
  const arch = opts.arch ?? 'amd64';
  const systemd = opts.systemd ?? false;
  const wire = opts.wire ?? false;
  const [tree, identityFile] = await Promise.all([ensureRootfsTree(arch), ensureClientKey(), ensureHubNetwork()]).then(
    ([t, k]) => [t, k] as const,
  );
  if (arch === 'arm64') await ensureArm64Binfmt();
  const n = claimIndex();
  const dir = popDir(n);
  try {
    for (const d of ['upper', 'work', 'root', 'ssh', 'persist/rancher', 'persist/containerd'])
      fs.mkdirSync(path.join(dir, d), { recursive: true });
    fs.writeFileSync(path.join(dir, 'netns'), '');
    fs.writeFileSync(path.join(dir, 'machine-id'), `${crypto.randomBytes(16).toString('hex')}\n`);
    fs.copyFileSync(`${identityFile}.pub`, path.join(dir, 'authorized_keys'));
    const hostKey = path.join(dir, 'ssh', 'ssh_host_ed25519_key');
    await Promise.all(
      (['ed25519', 'ecdsa'] as const).map((t) =>
        run('ssh-keygen', ['-q', '-t', t, '-N', '', '-C', `pop${n}`, '-f', path.join(dir, 'ssh', `ssh_host_${t}_key`)]),
      ),
    );
    await removeNetns(popNetns(n)); // left by a crashed run: the slot was free, so nothing owns it
    await plugIn(n, dir, wire);
    const launch = path.join(LAB_SRC, 'pop-launch.sh');
    const argv = systemd
      ? ['unshare', '--mount', '--propagation', 'private', '--fork', '--kill-child', launch, 'systemd', String(n), tree, dir]
      : [
          'ip',
          'netns',
          'exec',
          popNetns(n),
          'unshare',
          '--mount',
          '--propagation',
          'private',
          '--pid',
          '--fork',
          '--uts',
          '--kill-child',
          launch,
          'plain',
          String(n),
          tree,
          dir,
        ];
    const console = path.join(dir, 'console.log');
    await startDaemon(`pop${n}`, argv, { logFile: console });
    const sshHost = popLoopback(n);
    await startForwarder(
      `pop${n}`,
      [22, 6443].map((port) => ({
        listen: { host: sshHost, port },
        connect: { netns: HUB_NETNS, host: popAddress(n), port },
      })),
    );
    await waitFor(
      `sshd of pop${n} (${arch}${systemd ? ', systemd' : ''}) at ${sshHost}:22; console:\n${console}`,
      async () => {
        if (daemonPid(`pop${n}`) === undefined) throw new Error(`the POP exited:\n${logTail(console)}`);
        return sshBanner(sshHost);
      },
      opts.bootTimeoutMs ?? (arch === 'arm64' ? 120_000 : 60_000),
      50,
    );
    const info: PopRecord = {
      name: `pop${n}`,
      index: n,
      arch,
      systemd,
      sshHost,
      sshPort: 22,
      labAddress: popAddress(n),
      netns: popNetns(n),
      user: 'pop',
      identityFile,
      hostKeyFingerprint: await hostKeyFingerprint(`${hostKey}.pub`),
      wire,
      dir,
    };
    fs.writeFileSync(path.join(dir, 'pop.json'), JSON.stringify(info, null, 2));
    const { wire: _w, dir: _d, ...pub } = info;
    return pub;
  } catch (e) {
    await popDown(`pop${n}`).catch(() => {});
    throw e;
  }
}

export function readPopRecord(pop: PopInfo | string): PopRecord {
  const n = indexOf(pop);
  try {
    return JSON.parse(fs.readFileSync(path.join(popDir(n), 'pop.json'), 'utf8')) as PopRecord;
  } catch {
    throw new Error(`lab: no running POP pop${n} (no ${popDir(n)}/pop.json)`);
  }
}

/** POPs this lab has recorded (running or half-made), by index. */
export function listPopIndexes(): number[] {
  try {
    return fs
      .readdirSync(popsDir())
      .filter((d) => /^pop\d+$/.test(d))
      .map((d) => Number(d.slice(3)))
      .sort((a, b) => a - b);
  } catch {
    return [];
  }
}

export function listPops(): PopInfo[] {
  return listPopIndexes().flatMap((n) => {
    try {
      const { wire: _w, dir: _d, ...pub } = readPopRecord(`pop${n}`);
      return [pub];
    } catch {
      return [];
    }
  });
}

/** The POP's PID 1 as the host sees it (the sshd of a plain POP, systemd of a systemd POP). */
function popInitPid(n: number): number {
  const top = daemonPid(`pop${n}`);
  if (top === undefined) throw new Error(`lab: pop${n} is not running`);
  const queue = [...childrenOf(top)];
  while (queue.length) {
    const pid = queue.shift()!;
    try {
      const nspid = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.split(/\s+/) ?? [];
      if (nspid.length > 1 && nspid[nspid.length - 1] === '1') return pid;
    } catch {
      continue;
    }
    queue.push(...childrenOf(pid));
  }
  throw new Error(`lab: cannot find PID 1 of pop${n} under process ${top}`);
}

/**
 * Runs `sh -c cmd` as root inside the POP (its mount, pid, uts, ipc and network namespaces and its root
 * directory) without SSH — for test assertions about what an installer left behind.
 */
export async function popExec(
  pop: PopInfo | string,
  cmd: string,
  opts: { input?: string | Buffer; allowFail?: boolean; timeoutMs?: number } = {},
): Promise<RunResult> {
  const pid = popInitPid(indexOf(pop));
  return run(
    'nsenter',
    [
      '-t',
      String(pid),
      '-m',
      '-u',
      '-i',
      '-n',
      '-p',
      '-r',
      '-w',
      '--',
      '/usr/bin/env',
      '-i',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'HOME=/root',
      'LANG=C.UTF-8',
      '/bin/sh',
      '-c',
      cmd,
    ],
    { ...opts, timeoutMs: opts.timeoutMs ?? 120_000 },
  );
}

function cgroupDirs(n: number): string[] {
  return ['systemd', 'unified'].map((h) => `/sys/fs/cgroup/${h}/lab-pop${n}`).filter((d) => fs.existsSync(d));
}

function killCgroupTree(dir: string): void {
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
    try {
      for (const p of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) signalPid(Number(p), 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  walk(dir);
}

function rmdirTree(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmdirTree(path.join(dir, e.name));
  fs.rmdirSync(dir);
}

/** Mount points at or below `dir` in the host's mount namespace (there should be none: POP mounts are private). */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/**
 * Kills whatever still runs in a netns and deletes it. The netns file stays busy while any mount namespace
 * (a dying POP's) still has it bind-mounted, so this waits for the processes to be gone and retries.
 */
export async function removeNetns(ns: string): Promise<void> {
  if (!netnsExists(ns)) return;
  await waitFor(
    `processes in netns ${ns} to exit`,
    async () => {
      const { stdout } = await run('ip', ['netns', 'pids', ns], { allowFail: true });
      const pids = stdout.split('\n').filter(Boolean).map(Number).filter(pidAlive);
      for (const p of pids) signalPid(p, 'SIGKILL');
      return pids.length === 0;
    },
    10000,
    25,
  );
  await waitFor(
    `netns ${ns} to be deleted`,
    async () => {
      await run('ip', ['netns', 'del', ns], { allowFail: true });
      return !netnsExists(ns);
    },
    10000,
    50,
  );
}

/**
 * Stops a POP and removes everything it had: processes (systemd POPs get a clean poweroff first), forwarder,
 * wire, netns, hub port, ARP entry, cgroups, directory, index. Safe on a half-made or already-gone POP.
 */
export async function popDown(pop: PopInfo | string): Promise<void> {
  const n = indexOf(pop);
  const ns = popNetns(n);
  await stopForwarder(`pop${n}`);
  const top = daemonPid(`pop${n}`);
  if (top !== undefined && cgroupDirs(n).length) {
    // systemd POP: SIGTERM to nspawn powers the container off cleanly (its units stop, k3s-like daemons exit)
    for (const c of childrenOf(top)) signalPid(c, 'SIGTERM');
    // an emulated (arm64) systemd does not finish its poweroff under qemu-user: give it little time
    const rec = fs.existsSync(path.join(popDir(n), 'pop.json')) ? readPopRecord(`pop${n}`) : undefined;
    const deadline = Date.now() + (rec?.arch === 'arm64' ? 1500 : 8000);
    while (pidAlive(top) && Date.now() < deadline) await sleep(50);
  }
  await stopDaemon(`pop${n}`, { signal: 'SIGKILL' });
  await stopDaemon(`wire-pop${n}`);
  for (const d of cgroupDirs(n)) {
    await waitFor(
      `cgroup ${d} to empty`,
      () => {
        try {
          rmdirTree(d);
          return true;
        } catch {
          killCgroupTree(d);
          return false;
        }
      },
      5000,
      50,
    ).catch(() => {});
  }
  await removeNetns(ns);
  if (netnsExists(HUB_NETNS)) {
    await run('ip', ['-n', HUB_NETNS, 'link', 'del', hubPort(n)], { allowFail: true });
    await run('ip', ['-n', HUB_NETNS, 'neigh', 'flush', 'to', popAddress(n)], { allowFail: true });
    // the hub side of shapeLink's loss rule (the POP side died with its netns)
    await run(
      'ip',
      [
        'netns',
        'exec',
        HUB_NETNS,
        'sh',
        '-c',
        `iptables -w -D INPUT -s ${popAddress(n)} -j ${lossChain(n)}; iptables -w -F ${lossChain(n)}; iptables -w -X ${lossChain(n)}`,
      ],
      { allowFail: true },
    );
  }
  const dir = popDir(n);
  const stuck = mountsUnder(dir);
  if (stuck.length) throw new Error(`lab: refusing to delete ${dir}: still mounted in the host namespace: ${stuck.join(', ')}`);
  fs.rmSync(dir, { recursive: true, force: true });
}
