// Interception on the node: prepare the host for the mode chosen in preflight (bpffs where the data plane
// expects it, kernel modules), and verify the interception DaemonSet is Ready. PodLevel/iptables has no
// DaemonSet: its iptables rules are set per pod by the sidecar-init container.

import type { V1DaemonSet } from '@kubernetes/client-node';
import { definePhase, shellChange } from '../engine/phase.js';
import { K3S_BINARY, K3S_KUBECONFIG_PATH } from '../engine/pop-layout.js';
import { FatalWaitError, isNotFound, pollUntil } from '../kube/poll.js';
import type { Host } from '../transport/host.js';
import { bundleOf, decisionsOf, fsmNamespace, type InstallContext, popKubeOf } from './context.js';
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
    lines.push(
      'touch /opt/.fsm-edge-write-test 2>/dev/null && rm -f /opt/.fsm-edge-write-test || { echo "/opt is not writable: xnet needs it for its bpffs" >&2; exit 3; }',
    );
    // Mounted now and at every boot (before k3s starts xnet), rather than left to the first xnet start.
    lines.push('if ! grep -qs " /opt/bpf bpf " /proc/mounts; then mount -t bpf bpf /opt/bpf; changed "mounted bpffs on /opt/bpf"; fi');
    lines.push(
      'if ! grep -qs "^bpf /opt/bpf " /etc/fstab; then echo "bpf /opt/bpf bpf defaults 0 0" >> /etc/fstab; changed "added /opt/bpf to /etc/fstab"; fi',
    );
    lines.push(
      'for m in sch_ingress cls_bpf; do if ! grep -q "^$m " /proc/modules 2>/dev/null && modprobe "$m" 2>/dev/null; then changed "loaded module $m"; fi; done',
    );
  } else if (mode === 'ebpf') {
    lines.push(
      'if ! grep -qs " /sys/fs/bpf bpf " /proc/mounts; then mkdir -p /sys/fs/bpf; mount -t bpf bpf /sys/fs/bpf; changed "mounted bpffs on /sys/fs/bpf"; fi',
    );
    lines.push(
      'if ! grep -qs "^bpf /sys/fs/bpf " /etc/fstab; then echo "bpf /sys/fs/bpf bpf defaults 0 0" >> /etc/fstab; changed "added /sys/fs/bpf to /etc/fstab"; fi',
    );
  } else {
    lines.push(
      'for m in br_netfilter iptable_nat; do if ! grep -q "^$m " /proc/modules 2>/dev/null && modprobe "$m" 2>/dev/null; then changed "loaded module $m"; fi; done',
    );
  }
  lines.push('true');
  return lines.join('\n');
}

/** What each mode's host preparation leaves behind, as probe lines (`mount /opt/bpf`, `fstab /opt/bpf`, `module x`). */
export function interceptionProbe(namespace: string): string {
  return [
    'for p in /opt/bpf /sys/fs/bpf; do',
    '  grep -qs " $p bpf " /proc/mounts && echo "mount $p"',
    '  grep -qs "^bpf $p " /etc/fstab && echo "fstab $p"',
    'done',
    '[ -d /opt/bpf ] && echo dir /opt/bpf',
    // /sys/module/X exists for loaded and built-in modules alike; a module that is neither loaded nor loadable
    // (no /lib/modules in a container) is not something a change could fix.
    'for m in sch_ingress cls_bpf br_netfilter iptable_nat; do',
    '  if [ -d /sys/module/$m ]; then echo "module $m"; elif modprobe -n -q $m 2>/dev/null; then echo "loadable $m"; fi',
    'done',
    `if [ -x ${K3S_BINARY} ] && [ -s ${K3S_KUBECONFIG_PATH} ]; then`,
    `  timeout 20 ${K3S_BINARY} kubectl get daemonsets -n ${namespace} --no-headers 2>/dev/null | awk '{print "daemonset", $1, $2, $4}'`,
    'fi',
  ].join('\n');
}

interface InterceptionPrep {
  mode: string;
  daemonSet?: string;
}

interface InterceptionLive {
  /** What host preparation would still change, in words. */
  missing: string[];
  /** `ready/desired` of the mode's DaemonSet, when it has one and it exists. */
  daemonSet?: { desired: number; ready: number };
}

/** The host state each mode needs (what hostPrepScript makes), missing items named. */
export function interceptionMissing(mode: string, probe: string): string[] {
  const have = new Set(probe.split('\n').map((l) => l.trim()));
  const need: Array<[string, string]> =
    mode === 'NodeLevel'
      ? [
          ['dir /opt/bpf', '/opt/bpf'],
          ['mount /opt/bpf', 'bpffs on /opt/bpf'],
          ['fstab /opt/bpf', '/opt/bpf in /etc/fstab'],
        ]
      : mode === 'ebpf'
        ? [
            ['mount /sys/fs/bpf', 'bpffs on /sys/fs/bpf'],
            ['fstab /sys/fs/bpf', '/sys/fs/bpf in /etc/fstab'],
          ]
        : [];
  const modules = mode === 'NodeLevel' ? ['sch_ingress', 'cls_bpf'] : mode === 'ebpf' ? [] : ['br_netfilter', 'iptable_nat'];
  return [
    ...need.filter(([line]) => !have.has(line)).map(([, what]) => what),
    ...modules.filter((m) => have.has(`loadable ${m}`)).map((m) => `module ${m}`),
  ];
}

export const interceptionPhase = definePhase<InstallContext, InterceptionPrep, InterceptionLive>({
  id: 'interception',
  title: 'set up traffic interception',
  probe: (ctx) => interceptionProbe(fsmNamespace(ctx)),
  prepare(ctx) {
    const iv = interceptionValues(bundleOf(ctx).doc.versions.fsm, decisionsOf(ctx).interception);
    return { mode: iv.trafficInterceptionMode, ...(iv.daemonSet ? { daemonSet: iv.daemonSet } : {}) };
  },
  inputs: (ctx, prep) => ({ bundle: bundleOf(ctx).digest, mode: prep.mode }),
  check(_ctx, prep, env) {
    const live: InterceptionLive = { missing: interceptionMissing(prep.mode, env.probe) };
    for (const line of env.probe.split('\n')) {
      const w = line.trim().split(/\s+/);
      if (w[0] === 'daemonset' && w[1] === prep.daemonSet) live.daemonSet = { desired: Number(w[2]) || 0, ready: Number(w[3]) || 0 };
    }
    return live;
  },
  healthy: (live) => !live.daemonSet || (live.daemonSet.desired > 0 && live.daemonSet.ready >= live.daemonSet.desired),
  plan(_ctx, prep, live) {
    if (!live.missing.length) return [];
    return [shellChange(`prepare the host for ${prep.mode} interception (${live.missing.join(', ')})`, hostPrepScript(prep.mode))];
  },
  describe: (ctx, prep, live, changes, dryRun) => ({
    summary:
      dryRun && changes.length
        ? `would prepare ${prep.mode} interception (${decisionsOf(ctx).interceptionReason})`
        : `${prep.mode} (${decisionsOf(ctx).interceptionReason})${prep.daemonSet ? `; ${prep.daemonSet} ${live.daemonSet ? `${live.daemonSet.ready}/${live.daemonSet.desired} ready` : 'not found'}` : ''}`,
  }),
  async settle(ctx, prep, _live, env) {
    ctx.installed.interception = prep.mode;
    const reason = decisionsOf(ctx).interceptionReason;
    if (!prep.daemonSet) return { summary: `${prep.mode} (${reason}); sidecars intercept per pod` };
    await waitDaemonSet(ctx, env.host, prep.daemonSet);
    return { summary: `${prep.mode} (${reason}); ${prep.daemonSet} ready` };
  },
});

async function waitDaemonSet(ctx: InstallContext, host: Host, ds: string): Promise<void> {
  const kube = await popKubeOf(ctx, host);
  const ns = fsmNamespace(ctx);
  const crashingSince = new Map<string, number>();
  await pollUntil(
    `DaemonSet ${ns}/${ds} Ready`,
    async () => {
      let d: V1DaemonSet;
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
      const sel = Object.entries(d.spec?.selector?.matchLabels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
      const pods = sel ? await kube.core.listNamespacedPod({ namespace: ns, labelSelector: sel }) : { items: [] };
      const problems: string[] = [];
      for (const pod of pods.items) {
        for (const cs of pod.status?.containerStatuses ?? []) {
          const w = cs.state?.waiting;
          if (!w?.reason || w.reason === 'ContainerCreating' || w.reason === 'PodInitializing') continue;
          const key = `${pod.metadata?.name}/${cs.name}`;
          problems.push(`${key}: ${w.reason}${w.message ? ` — ${w.message}` : ''}`);
          if (/CrashLoopBackOff|ErrImagePull|ImagePullBackOff|ErrImageNeverPull|CreateContainerConfigError/.test(w.reason)) {
            const since = crashingSince.get(key) ?? Date.now();
            crashingSince.set(key, since);
            if (Date.now() - since > 60_000) {
              throw new FatalWaitError(
                `the ${ds} DaemonSet does not become ready: ${key} is in ${w.reason}${w.message ? `: ${w.message}` : ''}`,
              );
            }
          }
        }
      }
      return { done: false, state: `${ready}/${want} ready${problems.length ? `; ${problems.join('; ')}` : ''}` };
    },
    { timeoutMs: Math.min(ctx.options.meshTimeoutMs, 300_000), intervalMs: 2000 },
  );
}
