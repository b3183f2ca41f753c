// What a POP is: arch, OS, kernel, init, CPU/RAM/disk, default route, hostname, cgroup v2, BTF, bpffs, an
// existing k3s and whether it is healthy. The probe script (read-only), its parser, and a one-line description.

import { K3S_CONFIG_PATH } from '../engine/pop-layout.js';
import {
  HOST_SUPPORT_PROBE,
  type HostSupportFacts,
  K3S_PROBE,
  parseHostSupport,
  READYZ_PROBE_SECONDS,
  READYZ_RECHECK_SECONDS,
  readyzLines,
} from './host-support.js';
import type { Host } from '../transport/host.js';

export interface Facts {
  /** `uname -m`: x86_64, aarch64, armv7l… */
  machine: string;
  /** Mapped to a bundle arch; undefined for machines we have no build for. */
  arch?: 'amd64' | 'arm64' | 'arm';
  kernel: string;
  os: { id: string; version: string; pretty: string };
  hostname: string;
  init: 'systemd' | 'openrc' | 'other';
  cpus: number;
  memMiB: number;
  /** Free space where k3s and the blob store live (`/var/lib`). */
  diskFreeMiB: number;
  /** Interface of the IPv4 default route, if any. */
  defaultRoute?: string;
  cgroupV2: boolean;
  cgroupControllers: string[];
  btf: boolean;
  /** Mount points of bpffs. */
  bpffs: string[];
  bpfSyscall: boolean;
  iptables: boolean;
  /** `readyTimedOut`: /readyz did not answer within the probe's bound (a busy POP), which is not "not ready". */
  k3s?: { version: string; active: boolean; ready: boolean; readyTimedOut?: boolean; ourConfig: boolean };
  /** Effective sshd settings that govern the API tunnel (absent when `sshd -T` was not readable). */
  sshd?: HostSupportFacts['sshd'];
  /** PATH that sudo gives commands (secure_path). */
  sudoPath?: string;
}

// POSIX sh; every probe tolerates a missing tool. Runs as root so k3s health can be read.
export const FACTS_SCRIPT = `
echo "machine=$(uname -m)"
echo "kernel=$(uname -r)"
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os_id=\${ID:-unknown}"
echo "os_version=\${VERSION_ID:-}"
echo "os_pretty=\${PRETTY_NAME:-}"
echo "hostname=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
if [ -d /run/systemd/system ]; then echo init=systemd; elif [ -x /sbin/openrc-run ]; then echo init=openrc; else echo init=other; fi
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)"
echo "mem_kb=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
echo "disk_free_kb=$(df -Pk /var/lib 2>/dev/null | awk 'NR==2{print $4}')"
echo "default_route=$(awk '$2=="00000000"{print $1; exit}' /proc/net/route 2>/dev/null)"
[ -f /sys/fs/cgroup/cgroup.controllers ] && echo cgroup2=1 || echo cgroup2=0
echo "cgroup_controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
[ -f /sys/kernel/btf/vmlinux ] && echo btf=1 || echo btf=0
echo "bpffs=$(awk '$3=="bpf"{printf "%s ", $2}' /proc/mounts)"
[ -e /proc/sys/kernel/unprivileged_bpf_disabled ] && echo bpf_syscall=1 || echo bpf_syscall=0
command -v iptables >/dev/null 2>&1 && echo iptables=1 || echo iptables=0
${K3S_PROBE}
${HOST_SUPPORT_PROBE}
grep -q 'Written by fsm-edge' ${K3S_CONFIG_PATH} 2>/dev/null && echo k3s_ours=1 || echo k3s_ours=0
`;

export function archOf(machine: string): Facts['arch'] {
  if (machine === 'x86_64' || machine === 'amd64') return 'amd64';
  if (machine === 'aarch64' || machine === 'arm64') return 'arm64';
  if (/^armv[67]/.test(machine) || machine === 'armhf') return 'arm';
  return undefined;
}

/** `k3s version v1.31.4+k3s1 (a1b2c3)` → `v1.31.4+k3s1`. */
export function k3sVersionOf(line: string): string {
  const m = /v\d+\.\d+\.\d+\+k3s\d+/.exec(line) ?? /v?\d+\.\d+\.\d+\S*/.exec(line);
  return m ? m[0] : line.trim();
}

export function parseFacts(stdout: string): Facts {
  const kv = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const get = (k: string) => kv.get(k) ?? '';
  const num = (k: string) => Number(get(k)) || 0;
  const machine = get('machine');
  if (!machine) throw new Error(`the facts probe returned nothing usable:\n${stdout.slice(0, 400)}`);
  const facts: Facts = {
    machine,
    kernel: get('kernel'),
    os: { id: get('os_id'), version: get('os_version'), pretty: get('os_pretty') },
    hostname: get('hostname'),
    init: (['systemd', 'openrc'].includes(get('init')) ? get('init') : 'other') as Facts['init'],
    cpus: num('cpus'),
    memMiB: Math.floor(num('mem_kb') / 1024),
    diskFreeMiB: Math.floor(num('disk_free_kb') / 1024),
    cgroupV2: get('cgroup2') === '1',
    cgroupControllers: get('cgroup_controllers').split(/\s+/).filter(Boolean),
    btf: get('btf') === '1',
    bpffs: get('bpffs').split(/\s+/).filter(Boolean),
    bpfSyscall: get('bpf_syscall') === '1',
    iptables: get('iptables') === '1',
  };
  const arch = archOf(machine);
  if (arch) facts.arch = arch;
  Object.assign(facts, parseHostSupport(stdout));
  if (get('default_route')) facts.defaultRoute = get('default_route');
  if (kv.has('k3s_version') && get('k3s_version')) {
    facts.k3s = {
      version: k3sVersionOf(get('k3s_version')),
      active: get('k3s_active') === 'active',
      ready: get('k3s_ready') === 'ok',
      ...(get('k3s_ready') === 'timeout' ? { readyTimedOut: true } : {}),
      ourConfig: get('k3s_ours') === '1',
    };
  }
  return facts;
}

export async function probeFacts(host: Host): Promise<Facts> {
  const out = await host.run(FACTS_SCRIPT, { sudo: true, timeoutMs: 60_000 });
  return parseFacts(out);
}

/**
 * Asks a k3s whose /readyz did not answer within the facts probe's bound once more, for longer: whether it is
 * ready decides whether it is waited for or left alone, and a busy POP is not a broken one. Read-only.
 */
export async function readyzAnswersLate(host: Host): Promise<boolean> {
  const out = await host.run(readyzLines(READYZ_RECHECK_SECONDS), { sudo: true, timeoutMs: (READYZ_RECHECK_SECONDS + 15) * 1000 });
  return /^k3s_ready=ok$/m.test(out);
}

/** `ready`, `not ready`, `stopped`, or that /readyz did not answer in time (which is not "not ready"). */
export function k3sHealthWord(k: NonNullable<Facts['k3s']>): string {
  if (k.ready) return 'ready';
  if (!k.active) return 'stopped';
  return k.readyTimedOut ? `/readyz did not answer within ${READYZ_PROBE_SECONDS}s` : 'not ready';
}

export function describeFacts(f: Facts): string {
  const k3s = f.k3s ? `, k3s ${f.k3s.version} (${k3sHealthWord(f.k3s)})` : '';
  return `${f.machine}, ${f.os.pretty || f.os.id}, kernel ${f.kernel}, ${f.cpus} CPU, ${(f.memMiB / 1024).toFixed(1)} GiB RAM, ${(f.diskFreeMiB / 1024).toFixed(1)} GiB free${k3s}`;
}
