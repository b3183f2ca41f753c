// Upgrading k3s in place, with a way back. Before the new binary is assembled, the running one is kept (with the
// FSM manifest and the chart it names, for the mesh phase's way back); then install.sh runs with the new binary
// and the same config, and k3s is restarted under our bound. If the new k3s is not ready within the bound, the
// kept binary is put back, k3s restarted and waited for, and the site fails saying so — journaled, so a re-run
// (or another controller) knows the POP runs the old version after a failed upgrade.

import type { Journal } from '../engine/journal.js';
import {
  FSM_MANIFEST_PATH,
  K3S_BINARY,
  K3S_STATIC_CHARTS_DIR,
  POP_PREVIOUS_CHARTS_DIR,
  POP_PREVIOUS_DIR,
  POP_PREVIOUS_FSM_MANIFEST,
  POP_PREVIOUS_K3S,
  POP_PREVIOUS_K3S_VERSION,
} from '../engine/pop-layout.js';
import { FsmEdgeError } from '../config/errors.js';
import { errorText } from '../engine/failure.js';
import type { Host } from '../transport/host.js';

/** `v1.37.1+k3s1`: the only shape of version that reaches a script. */
const VERSION = /^v\d+\.\d+\.\d+(?:[-+][A-Za-z0-9.+-]+)?$/;

function checkedVersion(v: string): string {
  if (!VERSION.test(v)) throw new Error(`internal: k3s version ${JSON.stringify(v.slice(0, 60))} is not a version`);
  return v;
}

/** Starts or restarts k3s under `timeout` (Type=notify: systemctl returns once k3s is up; the unit has no timeout). */
export function restartK3sScript(startSec: number): string {
  return [
    'systemctl enable k3s >/dev/null 2>&1 || true',
    `rc=0; timeout ${startSec} systemctl restart k3s || rc=$?`,
    `if [ $rc -ne 0 ]; then`,
    `  [ $rc -eq 124 ] && echo "k3s did not start within ${startSec}s" >&2 || echo "k3s did not start (systemctl exit $rc)" >&2`,
    '  echo "last k3s log lines:" >&2; journalctl -u k3s -n 15 --no-pager >&2 2>/dev/null || true',
    '  exit $rc',
    'fi',
  ].join('\n');
}

/** Polls /readyz of a running k3s for `waitSec`; restarts it (as restartK3sScript) only if it never answers ok. */
export function waitThenRestartK3sScript(waitSec: number, startSec: number): string {
  return [
    `end=$(( $(date +%s) + ${waitSec} ))`,
    'while left=$(( end - $(date +%s) )); [ "$left" -gt 0 ]; do',
    // An ask may take the rest of the wait: a busy POP answers late, and a restart only sets it back.
    `  if [ "$(timeout "$left" ${K3S_BINARY} kubectl get --raw /readyz 2>/dev/null)" = ok ]; then echo "k3s ready, not restarted"; exit 0; fi`,
    '  sleep 3',
    'done',
    `echo "k3s did not answer /readyz within ${waitSec}s; restarting it" >&2`,
    restartK3sScript(startSec),
  ].join('\n');
}

/**
 * Keeps what an upgrade replaces: the running k3s binary when `k3sVersion` (the running one, which differs from
 * the bundle's) is given, and the FSM manifest with its chart archive when the manifest changed since the last
 * copy. A POP left half-upgraded (the new binary in place) is never kept over the good copy: the caller gives
 * `k3sVersion` only when the binary on the POP is not the bundle's; the manifest on disk is still the old one
 * until the mesh phase writes the new one.
 */
export function keepPreviousScript(k3sVersion: string | undefined): string {
  const lines = ['set -e', `mkdir -p ${POP_PREVIOUS_CHARTS_DIR}`, `chmod 0700 ${POP_PREVIOUS_DIR}`];
  if (k3sVersion) {
    const v = checkedVersion(k3sVersion);
    lines.push(
      `cp -p ${K3S_BINARY} ${POP_PREVIOUS_K3S}.tmp`,
      `mv -f ${POP_PREVIOUS_K3S}.tmp ${POP_PREVIOUS_K3S}`,
      `echo ${v} > ${POP_PREVIOUS_K3S_VERSION}`,
    );
  }
  lines.push(keepFsmLines());
  return lines.join('\n');
}

/**
 * Keeps the FSM manifest on disk and the chart archive it names, when the manifest changed since the last copy.
 * Run before the chart is assembled (k3s phase) and again before a new manifest is written (mesh phase: a
 * values-only change assembles nothing); the second finds the copy current and does nothing.
 */
export function keepFsmScript(): string {
  return ['set -e', `mkdir -p ${POP_PREVIOUS_CHARTS_DIR}`, `chmod 0700 ${POP_PREVIOUS_DIR}`, keepFsmLines()].join('\n');
}

function keepFsmLines(): string {
  return [
    `if [ -f ${FSM_MANIFEST_PATH} ] && ! cmp -s ${FSM_MANIFEST_PATH} ${POP_PREVIOUS_FSM_MANIFEST}; then`,
    `  chart=$(sed -n 's#.*/static/charts/\\([A-Za-z0-9._+-]*\\.tgz\\).*#\\1#p' ${FSM_MANIFEST_PATH} | head -n 1)`,
    `  if [ -n "$chart" ] && [ -f "${K3S_STATIC_CHARTS_DIR}/$chart" ]; then`,
    `    rm -f ${POP_PREVIOUS_CHARTS_DIR}/*.tgz`,
    `    cp "${K3S_STATIC_CHARTS_DIR}/$chart" "${POP_PREVIOUS_CHARTS_DIR}/$chart"`,
    `    cp ${FSM_MANIFEST_PATH} ${POP_PREVIOUS_FSM_MANIFEST}.tmp`,
    `    mv -f ${POP_PREVIOUS_FSM_MANIFEST}.tmp ${POP_PREVIOUS_FSM_MANIFEST}`,
    '  fi',
    'fi',
  ].join('\n');
}

/** Puts the kept k3s binary back (renamed into place: a running binary is never written to) and checks it. */
export function restorePreviousK3sScript(version: string): string {
  const v = checkedVersion(version);
  return [
    `if [ ! -x ${POP_PREVIOUS_K3S} ]; then echo "no previous k3s binary kept at ${POP_PREVIOUS_K3S}" >&2; exit 3; fi`,
    `cp -p ${POP_PREVIOUS_K3S} ${K3S_BINARY}.fsm-edge-restore`,
    `mv -f ${K3S_BINARY}.fsm-edge-restore ${K3S_BINARY}`,
    `got=$(${K3S_BINARY} --version 2>/dev/null | head -n 1)`,
    `case "$got" in *"${v}"*) ;; *) echo "the kept k3s binary is not ${v} (it says: $got)" >&2; exit 4;; esac`,
  ].join('\n');
}

export interface K3sUpgrade {
  from: string;
  to: string;
}

export interface UpgradeSteps {
  host: Host;
  journal: Journal | undefined;
  /** Our bound for k3s to start and become ready (the k3s phase's start timeout). */
  timeoutMs: number;
  /** The readiness gates (/readyz, node Ready, CoreDNS), bounded; returns the kubelet version. */
  waitReady(timeoutMs: number): Promise<string>;
}

/** Thrown when the upgrade failed; `rolledBack`: the previous k3s runs again. */
export class K3sUpgradeError extends FsmEdgeError {
  constructor(
    what: string,
    fix: string,
    readonly rolledBack: boolean,
  ) {
    super('failed', `${what}\n  fix: ${fix}`, { fix });
    this.name = 'K3sUpgradeError';
  }
}

async function runScript(host: Host, script: string, timeoutMs: number): Promise<void> {
  const r = await host.exec('sh -s', { sudo: true, stdin: script, timeoutMs });
  if (r.code !== 0) {
    const lines = r.stderr.trim().split('\n').filter(Boolean);
    throw new Error(`${lines[0] ?? `exit ${r.code}`}${lines.length > 1 ? `\n${lines.slice(1).join('\n')}` : ''}`);
  }
}

/** Restarts k3s on the binary in place and waits for the gates, all within `timeoutMs`. */
async function restartAndWait(s: UpgradeSteps, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const startSec = Math.max(5, Math.round(timeoutMs / 1000));
  await runScript(s.host, restartK3sScript(startSec), (startSec + 15) * 1000);
  await s.waitReady(Math.max(10_000, deadline - Date.now()));
}

const firstLine = (e: unknown) => (errorText(e).split('\n')[0] ?? '').slice(0, 300);

/**
 * Restarts k3s on the new binary (already assembled, install.sh already run); if it is not ready within the
 * bound, restores the previous binary, restarts and waits for it, records that in the journal, and throws.
 */
export async function restartUpgradedK3s(u: K3sUpgrade, s: UpgradeSteps): Promise<void> {
  try {
    await restartAndWait(s, s.timeoutMs);
    if (s.journal) delete s.journal.k3sRollback;
    return;
  } catch (e) {
    const reason = firstLine(e);
    const at = new Date().toISOString();
    try {
      await runScript(s.host, restorePreviousK3sScript(u.from), 60_000);
      // The previous version was known to work here: it gets at least two minutes to come back.
      await restartAndWait(s, Math.max(s.timeoutMs, 120_000));
    } catch (e2) {
      const again = firstLine(e2);
      if (s.journal) s.journal.k3sRollback = { ...u, outcome: 'rollback-failed', reason: `${reason}; rollback: ${again}`, at };
      throw new K3sUpgradeError(
        `k3s upgrade to ${u.to} failed (${reason}); rolling back to ${u.from} failed too (${again}): k3s is not running`,
        `on the POP, look at \`journalctl -u k3s\`; the previous binary is kept at ${POP_PREVIOUS_K3S}`,
        false,
      );
    }
    if (s.journal) s.journal.k3sRollback = { ...u, outcome: 'rolled-back', reason, at };
    throw new K3sUpgradeError(
      `k3s upgrade to ${u.to} failed (${reason}); rolled back to ${u.from}, running`,
      `look at why ${u.to} did not become ready (\`journalctl -u k3s\` on the POP), or roll out a bundle with another k3s`,
      true,
    );
  }
}
