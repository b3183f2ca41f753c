// Interception on the node: prepare the host for the mode chosen in preflight (bpffs where the data plane
// expects it, kernel modules), and verify the interception DaemonSet is Ready. PodLevel/iptables has no
// DaemonSet: its iptables rules are set per pod by the sidecar-init container.

import type { Host } from '../transport/host.js';
import { PopKube } from '../kube/pop.js';
import { FatalWaitError, isNotFound, pollUntil } from '../kube/poll.js';
import type { Changes } from '../engine/phase.js';
import { fsmNamespace, requireDecisions, type InstallContext, bundleOf } from './context.js';
import type { InstallPhase, StepOutcome } from '../engine/runner.js';
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
    // Mounted now and at every boot (before k3s starts xnet), rather than left to the first xnet start.
    lines.push('if ! grep -qs " /opt/bpf bpf " /proc/mounts; then mount -t bpf bpf /opt/bpf; changed "mounted bpffs on /opt/bpf"; fi');
    lines.push('if ! grep -qs "^bpf /opt/bpf " /etc/fstab; then echo "bpf /opt/bpf bpf defaults 0 0" >> /etc/fstab; changed "added /opt/bpf to /etc/fstab"; fi');
    lines.push('for m in sch_ingress cls_bpf; do if ! grep -q "^$m " /proc/modules 2>/dev/null && modprobe "$m" 2>/dev/null; then changed "loaded module $m"; fi; done');
  } else if (mode === 'ebpf') {
    lines.push('if ! grep -qs " /sys/fs/bpf bpf " /proc/mounts; then mkdir -p /sys/fs/bpf; mount -t bpf bpf /sys/fs/bpf; changed "mounted bpffs on /sys/fs/bpf"; fi');
    lines.push('if ! grep -qs "^bpf /sys/fs/bpf " /etc/fstab; then echo "bpf /sys/fs/bpf bpf defaults 0 0" >> /etc/fstab; changed "added /sys/fs/bpf to /etc/fstab"; fi');
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
    const crashingSince = new Map<string, number>();
    await pollUntil(
      `DaemonSet ${ns}/${ds} Ready`,
      async () => {
        let d;
        try {
          d = await kube.apps.readNamespacedDaemonSet({ name: ds, namespace: ns });
        } catch (e) {
          if (isNotFound(e)) return { done: false, state: 'not created yet' };
          throw e;
        }
        const want = d.status?.desiredNumberScheduled ?? 0;
        const ready = d.status?.numberReady ?? 0;
        if (want > 0 && ready >= want) return { done: true };
        // Show why a pod is not ready, and stop waiting when it keeps crashing: a timeout says nothing.
        const sel = Object.entries(d.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
        const pods = sel ? await kube.core.listNamespacedPod({ namespace: ns, labelSelector: sel }) : { items: [] };
        const problems: string[] = [];
        for (const pod of pods.items) {
          for (const cs of pod.status?.containerStatuses ?? []) {
            const w = cs.state?.waiting;
            if (!w?.reason || w.reason === 'ContainerCreating' || w.reason === 'PodInitializing') continue;
            const key = `${pod.metadata?.name}/${cs.name}`;
            problems.push(`${key}: ${w.reason}${w.message ? ` — ${w.message}` : ''}`);
            if (/CrashLoopBackOff|ErrImagePull|ImagePullBackOff|CreateContainerConfigError/.test(w.reason)) {
              const since = crashingSince.get(key) ?? Date.now();
              crashingSince.set(key, since);
              if (Date.now() - since > 60_000) {
                throw new FatalWaitError(`the ${ds} DaemonSet does not become ready: ${key} is in ${w.reason}${w.message ? `: ${w.message}` : ''}`);
              }
            }
          }
        }
        return { done: false, state: `${ready}/${want} ready${problems.length ? `; ${problems.join('; ')}` : ''}` };
      },
      { timeoutMs: Math.min(ctx.options.meshTimeoutMs, 300_000), intervalMs: 2000 },
    );
    return { summary: `${mode} (${d.interceptionReason}); ${ds} ready`, changes: done };
  },
};
