// Host support checks: openrc refused before anything is changed, sshd settings that break the API tunnel
// detected by the facts probe (the real shell lines, run against a stand-in `sshd -T`), absolute k3s paths.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  HOST_SUPPORT_PROBE,
  hostSupportProblems,
  K3S_PROBE,
  parseHostSupport,
  sudoPathHidesLocalBin,
} from '../../src/install/host-support.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-support-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * Runs the probe with a fake sshd that prints `sshdT` for `-T` (and records its arguments); `undefined`: an sshd
 * whose `-T` fails (no host keys, unreadable config) — never the machine's own /usr/sbin/sshd, whose answer
 * depends on how this machine is set up.
 */
function probe(sshdT: string | undefined): string {
  const bin = path.join(dir, `bin-${Math.random().toString(36).slice(2)}`);
  fs.mkdirSync(bin);
  const body = sshdT === undefined ? 'echo "sshd: no hostkeys available -- exiting." >&2; exit 1' : `cat <<'X'\n${sshdT}\nX`;
  fs.writeFileSync(path.join(bin, 'sshd'), `#!/bin/sh\necho "$@" > ${bin}/args\n${body}\n`, { mode: 0o755 });
  return execFileSync('/bin/sh', ['-c', HOST_SUPPORT_PROBE], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin`, SUDO_USER: 'pop' } });
}

describe('host support', () => {
  it('refuses openrc (and hosts without systemd) with the reason', () => {
    const p = hostSupportProblems({ init: 'openrc' });
    expect(p).toHaveLength(1);
    expect(p[0]!.reason).toMatch(/openrc.*k3s\.service/);
    expect(p[0]!.fix).toMatch(/systemd/);
    expect(hostSupportProblems({ init: 'other' })).toHaveLength(1);
    expect(hostSupportProblems({ init: 'systemd' })).toEqual([]);
  });

  it('reads sshd -T for the install user and refuses AllowTcpForwarding no with the sshd_config line to change', () => {
    const out = probe('port 22\nallowtcpforwarding no\ndisableforwarding no\npermitopen any\nx11forwarding no');
    const facts = { init: 'systemd' as const, ...parseHostSupport(out) };
    expect(facts.sshd).toEqual({ allowTcpForwarding: 'no', disableForwarding: 'no', permitOpen: 'any' });
    const p = hostSupportProblems(facts);
    expect(p).toHaveLength(1);
    expect(p[0]!.reason).toContain('AllowTcpForwarding no');
    expect(p[0]!.fix).toContain('AllowTcpForwarding local');
    expect(hostSupportProblems(facts, { overSsh: false })).toEqual([]);
  });

  it('accepts local forwarding, refuses remote-only, DisableForwarding and a PermitOpen without the API', () => {
    const of = (t: string) => hostSupportProblems({ init: 'systemd', ...parseHostSupport(probe(t)) });
    expect(of('allowtcpforwarding local\ndisableforwarding no\npermitopen any')).toEqual([]);
    expect(of('allowtcpforwarding yes\ndisableforwarding no\npermitopen 127.0.0.1:6443 10.0.0.1:22')).toEqual([]);
    expect(of('allowtcpforwarding remote\ndisableforwarding no\npermitopen any')[0]!.reason).toContain('AllowTcpForwarding remote');
    expect(of('allowtcpforwarding yes\ndisableforwarding yes\npermitopen any')[0]!.reason).toContain('DisableForwarding yes');
    expect(of('allowtcpforwarding yes\ndisableforwarding no\npermitopen 10.0.0.1:22')[0]!.reason).toContain('PermitOpen 10.0.0.1:22');
  });

  it('says nothing about sshd when sshd -T cannot be read (then the tunnel itself reports)', () => {
    const facts = parseHostSupport(probe(undefined));
    expect(facts.sshd).toBeUndefined();
    expect(facts.sudoPath).toContain('/usr/bin');
  });

  it('probes k3s by absolute path, as sudo secure_path may lack /usr/local/bin', () => {
    // no bare `k3s` in command position (start of line, after ; & | or $( )
    expect(K3S_PROBE).not.toMatch(/(^\s*|[;&|]\s*|\$\(\s*)k3s\s/m);
    expect('echo "$(k3s --version)"').toMatch(/(^\s*|[;&|]\s*|\$\(\s*)k3s\s/m);
    expect(K3S_PROBE).toContain('/usr/local/bin/k3s --version');
    expect(sudoPathHidesLocalBin('/sbin:/bin:/usr/sbin:/usr/bin')).toBe(true);
    expect(sudoPathHidesLocalBin('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin')).toBe(false);
  });
});
