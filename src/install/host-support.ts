// What a POP host must offer that the install cannot provide itself, checked before anything is changed:
// * systemd: the k3s phase installs and starts k3s as `k3s.service` through systemctl (install.sh's systemd
//   path). install.sh's openrc path (/etc/init.d/k3s, rc-service) is not used, so openrc hosts would pass
//   preflight and then fail in the k3s phase;
// * SSH TCP forwarding: the POP's API (127.0.0.1:6443) is reached through a `direct-tcpip` channel (what
//   `ssh -L` uses). sshd refuses it with `AllowTcpForwarding no|remote`, `DisableForwarding yes`, or a
//   `PermitOpen` list without the API's address — common on hardened images;
// * absolute paths: under sudo, PATH is sudoers' `secure_path`, which on the RHEL family lacks /usr/local/bin,
//   where k3s lives — so probes call /usr/local/bin/k3s, never a bare `k3s`.
// Pure functions plus the shell lines the facts probe runs (it runs as root through sudo).

import { K3S_BINARY as POP_K3S_BINARY } from '../engine/pop-layout.js';

export interface HostSupportFacts {
  init: 'systemd' | 'openrc' | 'other';
  /** Effective sshd settings for the login user, from `sshd -T -C …`; absent when sshd -T was not readable. */
  sshd?: { allowTcpForwarding?: string; disableForwarding?: string; permitOpen?: string };
  /** PATH inside the sudo'd probe (= secure_path when sudoers sets one). */
  sudoPath?: string;
}

export interface HostProblem {
  reason: string;
  fix: string;
}

/** Where the tunnel goes on the POP. */
const API_TARGETS = ['127.0.0.1:6443', 'localhost:6443'];

/**
 * Shell lines for the facts probe (POSIX sh, run as root via sudo): the sshd settings that govern the API
 * tunnel, evaluated for the login user (`SUDO_USER`) the way sshd would for this connection (Match blocks
 * included, as far as user and host decide them), and the PATH sudo gives commands.
 */
export const HOST_SUPPORT_PROBE = `
sshd_bin=$(command -v sshd 2>/dev/null || { [ -x /usr/sbin/sshd ] && echo /usr/sbin/sshd; })
if [ -n "$sshd_bin" ]; then
  sshd_t=$("$sshd_bin" -T -C "user=\${SUDO_USER:-$(id -un)},host=$(hostname 2>/dev/null || echo localhost),addr=127.0.0.1" 2>/dev/null)
  if [ -n "$sshd_t" ]; then
    echo "sshd_allowtcpforwarding=$(printf '%s\\n' "$sshd_t" | awk '$1=="allowtcpforwarding"{print $2; exit}')"
    echo "sshd_disableforwarding=$(printf '%s\\n' "$sshd_t" | awk '$1=="disableforwarding"{print $2; exit}')"
    echo "sshd_permitopen=$(printf '%s\\n' "$sshd_t" | awk '$1=="permitopen"{$1=""; sub(/^ /, ""); print; exit}')"
  fi
fi
echo "sudo_path=$PATH"
`;

/**
 * How long the facts probe waits for /readyz. Every section of the batched probe waits with it, so it is short;
 * a k3s that did not answer in time is asked again, for longer, before anything is decided (READYZ_RECHECK_SECONDS).
 */
export const READYZ_PROBE_SECONDS = 10;
/** The second ask: a busy low-end POP (importing images, a slow SD card) can take this long to answer. */
export const READYZ_RECHECK_SECONDS = 60;

/** Sets and prints `k3s_ready=`: `ok`, `timeout` (no answer within the bound), or the start of another answer. */
export function readyzLines(seconds: number): string {
  return [
    `  k3s_ready=$(timeout ${seconds} ${POP_K3S_BINARY} kubectl get --raw /readyz 2>/dev/null); rc=$?`,
    '  [ $rc -eq 124 ] && k3s_ready=timeout',
    `  echo "k3s_ready=$(printf '%s' "$k3s_ready" | head -c 20)"`,
  ].join('\n');
}

/**
 * The k3s lines of the facts probe with the binary's absolute path (a bare `k3s` is not found under a
 * secure_path without /usr/local/bin, so an installed k3s would look absent).
 */
export const K3S_PROBE = `
if [ -x ${POP_K3S_BINARY} ]; then
  echo "k3s_version=$(${POP_K3S_BINARY} --version 2>/dev/null | head -n1)"
  if command -v systemctl >/dev/null 2>&1; then echo "k3s_active=$(systemctl is-active k3s 2>/dev/null)"; fi
${readyzLines(READYZ_PROBE_SECONDS)}
fi
`;

/** Reads the probe's `key=value` lines (missing keys stay undefined). */
export function parseHostSupport(stdout: string): Omit<HostSupportFacts, 'init'> {
  const kv = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const out: Omit<HostSupportFacts, 'init'> = {};
  if (kv.has('sshd_allowtcpforwarding') && kv.get('sshd_allowtcpforwarding')) {
    out.sshd = {
      allowTcpForwarding: kv.get('sshd_allowtcpforwarding')!.toLowerCase(),
      ...(kv.get('sshd_disableforwarding') ? { disableForwarding: kv.get('sshd_disableforwarding')!.toLowerCase() } : {}),
      ...(kv.get('sshd_permitopen') ? { permitOpen: kv.get('sshd_permitopen')! } : {}),
    };
  }
  if (kv.get('sudo_path')) out.sudoPath = kv.get('sudo_path')!;
  return out;
}

function permitOpenAllows(list: string): boolean {
  const entries = list
    .split(/\s+/)
    .filter(Boolean)
    .map((e) => e.toLowerCase());
  if (entries.includes('any')) return true;
  if (entries.includes('none')) return false;
  return entries.some((e) => API_TARGETS.includes(e) || e === '*:6443' || e === '127.0.0.1:*' || e === 'localhost:*' || e === '*:*');
}

/**
 * Why this host cannot take the install, each with the change that fixes it; empty when it can. `overSsh`:
 * the install reaches the POP over SSH (the API tunnel needs sshd's TCP forwarding); false for a local run.
 */
export function hostSupportProblems(facts: HostSupportFacts, opts: { overSsh: boolean } = { overSsh: true }): HostProblem[] {
  const out: HostProblem[] = [];
  if (facts.init !== 'systemd') {
    out.push({
      reason:
        facts.init === 'openrc'
          ? 'this POP runs openrc; fsm-edge installs and supervises k3s as the systemd unit k3s.service (systemctl), so the k3s phase would fail here'
          : 'no systemd runs on this POP; fsm-edge installs and supervises k3s as the systemd unit k3s.service (systemctl)',
      fix: 'use a systemd distribution for this POP (Debian, Ubuntu, RHEL/Rocky/Alma, SUSE, Raspberry Pi OS); openrc (Alpine) is not supported',
    });
  }
  const sshd = facts.sshd;
  if (opts.overSsh && sshd) {
    const atf = sshd.allowTcpForwarding ?? 'yes';
    if (sshd.disableForwarding === 'yes') {
      out.push({
        reason: "sshd on this POP has `DisableForwarding yes`: the SSH tunnel to the POP's Kubernetes API (127.0.0.1:6443) is refused",
        fix: 'in /etc/ssh/sshd_config (or the Match block for the install user) set `DisableForwarding no` and `AllowTcpForwarding local`, then `systemctl reload sshd` (ssh on Debian/Ubuntu)',
      });
    } else if (atf === 'no' || atf === 'remote') {
      out.push({
        reason: `sshd on this POP has \`AllowTcpForwarding ${atf}\`: the SSH tunnel to the POP's Kubernetes API (127.0.0.1:6443) is refused`,
        fix: 'in /etc/ssh/sshd_config (or the Match block for the install user) set `AllowTcpForwarding local` (or `yes`), then `systemctl reload sshd` (ssh on Debian/Ubuntu)',
      });
    }
    if (sshd.permitOpen && !permitOpenAllows(sshd.permitOpen)) {
      out.push({
        reason: `sshd on this POP has \`PermitOpen ${sshd.permitOpen}\`, which does not include 127.0.0.1:6443 (the POP's Kubernetes API the install tunnels to)`,
        fix: 'in /etc/ssh/sshd_config add `127.0.0.1:6443` to PermitOpen (for the install user), then `systemctl reload sshd`',
      });
    }
  }
  return out;
}

/** Whether sudo's PATH hides /usr/local/bin (then a bare `k3s`, kubectl, crictl would not be found). */
export function sudoPathHidesLocalBin(sudoPath: string | undefined): boolean {
  return sudoPath !== undefined && !sudoPath.split(':').includes('/usr/local/bin');
}
