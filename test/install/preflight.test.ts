import { describe, expect, it } from 'vitest';
import { FACTS_SCRIPT, parseFacts, type Facts } from '../../src/install/host-facts.js';
import { PhaseRefusal } from '../../src/engine/phase.js';
import type { BundleDoc } from '../../src/bundle/format.js';
import { downgradeRefusal, ebpfFitness, preflightDecide, type PreflightInput } from '../../src/install/preflight.js';

const probeOutput = `machine=x86_64
kernel=6.1.0-18-amd64
os_id=debian
os_version=12
os_pretty=Debian GNU/Linux 12 (bookworm)
hostname=pop1
init=systemd
cpus=2
mem_kb=4031232
disk_free_kb=20971520
default_route=eth0
cgroup2=1
cgroup_controllers=cpuset cpu io memory pids
btf=1
bpffs=/sys/fs/bpf 
bpf_syscall=1
iptables=1
k3s_ours=0
`;

const facts = (over: Partial<Facts> = {}): Facts => ({ ...parseFacts(probeOutput), ...over });
const input = (over: Partial<PreflightInput> = {}): PreflightInput => ({
  facts: facts(),
  siteArch: 'auto',
  bundleArches: ['amd64', 'arm64'],
  bundleK3sVersion: 'v1.33.6+k3s1',
  fsmVersion: '1.5.1',
  interception: 'auto',
  archBytes: 600 * 2 ** 20,
  ...over,
});

function refusal(fn: () => unknown): PhaseRefusal {
  try {
    fn();
  } catch (e) {
    if (e instanceof PhaseRefusal) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('facts probe output', () => {
  it('parses every field', () => {
    const f = parseFacts(probeOutput);
    expect(f).toMatchObject({
      machine: 'x86_64',
      arch: 'amd64',
      kernel: '6.1.0-18-amd64',
      hostname: 'pop1',
      init: 'systemd',
      cpus: 2,
      memMiB: 3936,
      diskFreeMiB: 20480,
      defaultRoute: 'eth0',
      cgroupV2: true,
      btf: true,
      bpffs: ['/sys/fs/bpf'],
      bpfSyscall: true,
    });
    expect(f.k3s).toBeUndefined();
  });
  it('reads an existing k3s and its health', () => {
    const f = parseFacts(probeOutput + 'k3s_version=k3s version v1.33.6+k3s1 (b5847677)\nk3s_active=active\nk3s_ready=ok\nk3s_ours=1\n');
    expect(f.k3s).toEqual({ version: 'v1.33.6+k3s1', active: true, ready: true, ourConfig: true });
  });
  it('maps 32-bit ARM and refuses garbage', () => {
    expect(parseFacts('machine=armv7l\n').arch).toBe('arm');
    expect(() => parseFacts('sudo: a password is required')).toThrow(/nothing usable/);
  });
});

describe('preflight decisions', () => {
  it('passes a good host and picks eBPF on a modern kernel', () => {
    const r = preflightDecide(input({ facts: facts({ kernel: '6.1.0' }) }));
    expect(r).toMatchObject({ arch: 'amd64', interception: 'ebpf' });
  });

  it('falls back to iptables with a warning when auto meets an old kernel', () => {
    const r = preflightDecide(input({ facts: facts({ kernel: '5.10.0-28-amd64' }) }));
    expect(r.interception).toBe('iptables');
    expect(r.warnings.join()).toMatch(/5\.10\.0-28-amd64 is older than 5\.15/);
  });

  it('refuses explicit eBPF on an unfit host, naming why', () => {
    const e = refusal(() => preflightDecide(input({ interception: 'ebpf', facts: facts({ bpfSyscall: false }) })));
    expect(e.reason).toMatch(/bpf\(\) syscall/);
    expect(e.fix).toMatch(/iptables/);
  });

  it.each([
    ['an arch the bundle lacks', { bundleArches: ['arm64'] }, /no amd64 content/, /bundle build --arch amd64/],
    [
      'the mesh on 32-bit ARM',
      { facts: facts({ machine: 'armv7l', arch: 'arm' }), bundleArches: ['amd64', 'arm64', 'arm'] },
      /32-bit ARM/,
      /64-bit OS/,
    ],
    ['a Site arch that does not match', { siteArch: 'arm64' as const }, /says arch arm64/, /spec\.arch/],
    ['too little RAM', { facts: facts({ memMiB: 1000 }) }, /1000 MiB RAM/, /2 GiB/],
    ['one CPU', { facts: facts({ cpus: 1 }) }, /1 CPU/, /2 or more/],
    ['a full disk', { facts: facts({ diskFreeMiB: 900 }) }, /900 MiB free/, /free space/],
    ['no default route', { facts: facts({ defaultRoute: undefined }) }, /no default route/, /dummy0/],
    [
      'a foreign k3s',
      { facts: facts({ k3s: { version: 'v1.29.0+k3s1', active: true, ready: true, ourConfig: false } }) },
      /v1\.29\.0\+k3s1 is already installed/,
      /uninstall/,
    ],
    ['a host without systemd', { facts: facts({ init: 'other' }) }, /no systemd runs on this POP/, /systemd distribution/],
    [
      'an openrc host, which the k3s phase would fail on',
      { facts: facts({ init: 'openrc' }) },
      /runs openrc/,
      /openrc \(Alpine\) is not supported/,
    ],
    [
      'an sshd that refuses the API tunnel',
      { facts: facts({ sshd: { allowTcpForwarding: 'no' } }) },
      /AllowTcpForwarding no/,
      /sshd_config/,
    ],
  ])('refuses %s with the reason and the fix', (_name, over, reason, fix) => {
    const e = refusal(() => preflightDecide(input(over as Partial<PreflightInput>)));
    expect(e.reason).toMatch(reason);
    expect(e.fix).toMatch(fix);
  });

  it('accepts its own k3s of another version as an upgrade, with a warning', () => {
    const r = preflightDecide(input({ facts: facts({ k3s: { version: 'v1.32.0+k3s1', active: true, ready: true, ourConfig: true } }) }));
    expect(r.warnings.join()).toMatch(/from v1\.32\.0\+k3s1 to v1\.33\.6\+k3s1/);
  });

  it('judges legacy (≤1.4) eBPF by cgroup v2 and a 5.4 kernel', () => {
    expect(ebpfFitness(facts({ kernel: '5.10.0' }), '1.4.21').fit).toBe(true);
    expect(ebpfFitness(facts({ kernel: '5.10.0', cgroupV2: false }), '1.4.21').reasons.join()).toMatch(/cgroup v2/);
  });
});

describe('downgrade refusal', () => {
  const doc = (serial: number) => ({ name: `b${serial}`, build: { serial, createdAt: '2026-11-01T00:00:00Z' } }) as unknown as BundleDoc;
  const installed = {
    name: 'b200',
    digest: 'sha256:x',
    serial: 200,
    createdAt: '2026-11-20T00:00:00Z',
    installedAt: '2026-11-21T00:00:00Z',
  };
  it('refuses a signed bundle older than the one the POP last installed, naming both', () => {
    const r = downgradeRefusal(installed, doc(100), false);
    expect(r).toBeInstanceOf(PhaseRefusal);
    expect(r!.reason).toMatch(/runs bundle b200 \(build 200, 2026-11-20T00:00:00Z\), newer than b100 \(build 100, 2026-11-01T00:00:00Z\)/);
    expect(r!.fix).toMatch(/--allow-downgrade/);
  });
  it('lets the same or a newer bundle through, and an older one with --allow-downgrade', () => {
    expect(downgradeRefusal(installed, doc(200), false)).toBeUndefined();
    expect(downgradeRefusal(installed, doc(300), false)).toBeUndefined();
    expect(downgradeRefusal(installed, doc(100), true)).toBeUndefined();
    expect(downgradeRefusal(undefined, doc(100), false)).toBeUndefined();
  });
});

describe('the facts probe', () => {
  it('carries the k3s lines (by absolute path) and the sshd and sudo lines, interpolated', () => {
    expect(FACTS_SCRIPT).toContain('/usr/local/bin/k3s --version');
    expect(FACTS_SCRIPT).toContain('sshd_allowtcpforwarding=');
    expect(FACTS_SCRIPT).toContain('echo "sudo_path=$PATH"');
    expect(FACTS_SCRIPT).not.toMatch(/\$\{[A-Z_]+_PROBE\}/);
  });
});
