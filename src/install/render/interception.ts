// Maps the Site's interception choice onto the FSM chart's keys for the FSM version in the bundle:
// v1.5+ uses `NodeLevel` (eBPF via the fsm-xnetwork DaemonSet) / `PodLevel` (iptables init container);
// v1.0–v1.4 used `ebpf` (fsm-interceptor DaemonSet) / `iptables`.

import { K3S_CNI_BIN_DIR, K3S_CNI_NETD_DIR } from './k3s-config.js';

export type InterceptionMode = 'ebpf' | 'iptables';

export interface InterceptionValues {
  trafficInterceptionMode: string;
  /** DaemonSet that must become Ready for interception to work, if the mode has one. */
  daemonSet?: string;
  /** Extra values under `fsm.` (CNI paths for xnet, kernel tracing off for the legacy interceptor). */
  fsmValues: Record<string, unknown>;
}

/** `1.5.1` → [1, 5, 1]; tolerates a leading `v`. */
export function parseVersion(v: string): [number, number, number] {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.trim());
  if (!m) throw new Error(`not a version: "${v}"`);
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

export function versionAtLeast(v: string, min: string): boolean {
  const a = parseVersion(v);
  const b = parseVersion(min);
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}

export function interceptionValues(fsmVersion: string, mode: InterceptionMode): InterceptionValues {
  if (versionAtLeast(fsmVersion, '1.5.0')) {
    if (mode === 'iptables') return { trafficInterceptionMode: 'PodLevel', fsmValues: {} };
    return {
      trafficInterceptionMode: 'NodeLevel',
      daemonSet: 'fsm-xnetwork',
      fsmValues: {
        fsmXnetwork: {
          xnet: {
            // Bare-metal k3s keeps CNI plugins in its data dir, not /bin (that is only true inside k3d).
            nodePaths: {
              k8s: { enable: false },
              k3s: {
                enable: true,
                cniBin: K3S_CNI_BIN_DIR,
                cniNetd: K3S_CNI_NETD_DIR,
                sysFs: '/opt',
                sysProc: '/proc',
                sysRun: '/var/run',
              },
            },
          },
        },
      },
    };
  }
  if (mode === 'iptables') return { trafficInterceptionMode: 'iptables', fsmValues: {} };
  // trace_printk on every packet is not for a 2-core POP.
  return { trafficInterceptionMode: 'ebpf', daemonSet: 'fsm-interceptor', fsmValues: { fsmInterceptor: { kernelTracing: false } } };
}
