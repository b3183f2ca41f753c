// A POP answers SSH with its own pinned host key; root and the sudo user work; uname -m matches the arch;
// writes stay inside the POP that made them.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PopInfo } from './types.js';
import { popDown, popExec, popUp } from './pop.js';
import { pinnedKnownHosts, ssh } from './openssh.js';

describe('lab POPs (plain sshd, amd64 + arm64)', () => {
  let amd: PopInfo;
  let arm: PopInfo;
  const kh = new Map<string, string>();

  beforeAll(async () => {
    [amd, arm] = await Promise.all([popUp({ arch: 'amd64' }), popUp({ arch: 'arm64' })]);
    for (const p of [amd, arm]) kh.set(p.name, await pinnedKnownHosts(p));
  });
  afterAll(async () => {
    await Promise.all([amd, arm].filter(Boolean).map((p) => popDown(p)));
  });

  it('each POP has its own address, loopback forwarder and host key', () => {
    expect(amd.labAddress).toBe(`10.99.0.${10 + amd.index}`);
    expect(amd.sshHost).toBe(`127.0.0.${10 + amd.index}`);
    expect(amd.hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(arm.hostKeyFingerprint).not.toBe(amd.hostKeyFingerprint);
  });

  it.each([
    ['amd64', 'x86_64'],
    ['arm64', 'aarch64'],
  ])('%s: ssh as the unprivileged user, uname -m, passwordless sudo, root login', async (arch, machine) => {
    const pop = arch === 'amd64' ? amd : arm;
    const r = await ssh(pop, kh.get(pop.name)!, 'uname -m; hostname; id -un; sudo -n id -u; dpkg --print-architecture');
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').slice(0, 5)).toEqual([machine, pop.name, 'pop', '0', arch]);
    const root = await ssh(pop, kh.get(pop.name)!, 'id -u', { user: 'root' });
    expect(root.stdout.trim()).toBe('0');
  });

  it('refuses a host whose key does not match the pin', async () => {
    // amd64's address with arm64's key pinned: OpenSSH must refuse, as it would for a swapped POP
    const wrong = `${kh.get(arm.name)!}.swapped`;
    fs.writeFileSync(wrong, fs.readFileSync(kh.get(arm.name)!, 'utf8').replace(arm.sshHost, amd.sshHost));
    const r = await ssh(amd, wrong, 'true');
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/host key|IDENTIFICATION HAS CHANGED/i);
  });

  it('installer-like writes stay in the POP that made them', async () => {
    const r = await ssh(
      amd,
      kh.get(amd.name)!,
      'echo k3s-amd > /tmp/k3s && sudo -n install -D -m755 /tmp/k3s /usr/local/bin/k3s && sudo -n mkdir -p /etc/rancher/k3s /var/lib/rancher/k3s',
    );
    expect(r.code).toBe(0);
    expect((await popExec(amd, 'cat /usr/local/bin/k3s; test -d /var/lib/rancher/k3s && echo dir')).stdout).toBe('k3s-amd\ndir\n');
    expect((await popExec(arm, 'test -e /usr/local/bin/k3s || test -e /var/lib/rancher/k3s; echo $?')).stdout).toBe('1\n');
    expect(fs.existsSync('/usr/local/bin/k3s') && fs.readFileSync('/usr/local/bin/k3s', 'utf8') === 'k3s-amd\n').toBe(false);
  });

  it('popExec runs inside the POP without SSH, with its own hostname and processes', async () => {
    const r = await popExec(arm, 'hostname; uname -m; cat /proc/1/comm; cat /etc/machine-id');
    const [host, machine, init, machineId] = r.stdout.trim().split('\n');
    expect([host, machine, init]).toEqual([arm.name, 'aarch64', 'sshd']);
    expect(machineId).toMatch(/^[0-9a-f]{32}$/);
    expect((await popExec(amd, 'cat /etc/machine-id')).stdout.trim()).not.toBe(machineId);
  });
});
