// Interception on the node: prepare the host for the mode chosen in preflight (bpffs where the data plane
// expects it, kernel modules), and verify the interception DaemonSet is Ready. PodLevel/iptables has no
// DaemonSet: its iptables rules are set per pod by the sidecar-init container.

import type { Host } from '../transport/host.js';
import { PopKube } from '../kube/pop.js';
import { isNotFound, pollUntil } from '../kube/poll.js';
import type { Changes } from './phase.js';
import { fsmNamespace, requireDecisions, type InstallContext, bundleOf } from './context.js';
import type { InstallPhase, StepOutcome } from './runner.js';
import { interceptionValues } from './render/interception.js';

/**
 * Host preparation, idempotent, printing one line per change. xnet (v1.5 NodeLevel) mounts its own bpffs under
 * host `/opt/bpf` (its sysFs is `/opt`), so `/opt/bpf` must exist and `/opt` be writable; the legacy
 * interceptor (≤1.4) pins under `/sys/fs/bpf`. Modules are best effort: built-in code needs no module.
 */
export function hostPrepScript(mode: string): string {
  const lines = ['set -e', 'changed() { echo "changed $*"; }'];
  if (mode === 'NodeLevel') {
    lines.push('[ -d /opt/bpf ] || { mkdir -p /opt/bpf; changed "created /opt/bpf"; }');
    lines.push('touch /opt/.fsm-edge-write-test 2>/dev/null && rm -f /opt/.fsm-edge-write-test || { echo "/opt is not writable: xnet needs it for its bpffs" >&2; exit 3; }');
    lines.push('for m in sch_ingress cls_bpf; do if ! grep -q "^$m " /proc/modules 2>/dev/null && modprobe "$m" 2>/dev/null; then changed "loaded module $m"; fi; done');
  } else if (mode === 'ebpf') {
    lines.push('if ! grep -qs " /sys/fs/bpf bpf " /proc/mounts; then mkdir -p /sys/fs/bpf; mount -t bpf bpf /sys/fs/bpf; changed "mounted bpffs on /sys/fs/bpf"; fi');
  } else {
    lines.push('for m in br_netfilter iptable_nat; do if ! grep -q "^$m " /proc/modules 2>/dev/null && modprobe "$m" 2>/dev/null; then changed "loaded module $m"; fi; done');
  }
  lines.push('true');
  return lines.join('\n');
}

export const interceptionPhase: InstallPhase<InstallContext> = {
  id: 'interception',
  title: 'set up traffic interception',
  inputs(ctx) {
    const d = requireDecisions(ctx);
    return { bundle: bundleOf(ctx).digest, mode: interceptionValues(bundleOf(ctx).doc.versions.fsm, d.interception).trafficInterceptionMode };
  },
  async apply(ctx: InstallContext, host: Host, changes: Changes): Promise<StepOutcome> {
    const d = requireDecisions(ctx);
    const iv = interceptionValues(bundleOf(ctx).doc.versions.fsm, d.interception);
    const mode = iv.trafficInterceptionMode;
    const done: string[] = [];
    if (changes.dryRun) {
      await changes.change(`prepare the host for ${mode} interception`, async () => {});
      return { summary: `would prepare ${mode} interception (${d.interceptionReason})`, changes: [] };
    }
    const out = await host.run(hostPrepScript(mode), { sudo: true });
    for (const line of out.split('\n')) if (line.startsWith('changed ')) done.push(line.slice(8));
    ctx.installed.interception = mode;
    if (!iv.daemonSet) {
      return { summary: `${mode} (${d.interceptionReason}); sidecars intercept per pod`, changes: done };
    }
    ctx.popKube ??= await PopKube.open(host);
    const kube = ctx.popKube;
    const ns = fsmNamespace(ctx);
    const ds = iv.daemonSet;
    await pollUntil(
      `DaemonSet ${ns}/${ds} Ready`,
      async () => {
        try {
          const d = await kube.apps.readNamespacedDaemonSet({ name: ds, namespace: ns });
          const want = d.status?.desiredNumberScheduled ?? 0;
          const ready = d.status?.numberReady ?? 0;
          return { done: want > 0 && ready >= want, state: `${ready}/${want} ready` };
        } catch (e) {
          if (isNotFound(e)) return { done: false, state: 'not created yet' };
          throw e;
        }
      },
      { timeoutMs: ctx.options.meshTimeoutMs, intervalMs: 2000 },
    );
    return { summary: `${mode} (${d.interceptionReason}); ${ds} ready`, changes: done };
  },
};
