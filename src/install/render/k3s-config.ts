// `/etc/rancher/k3s/config.yaml` for a single-server POP. Keys are k3s's long flag names (k3s reads the file at
// every start; install.sh does not notice changes, so the k3s phase restarts k3s itself when this text changes).

import { stringify } from 'yaml';
import { K3S_TOKEN_PATH } from '../../engine/pop-layout.js';

export {
  K3S_CNI_BIN_DIR,
  K3S_CNI_NETD_DIR,
  K3S_CONFIG_PATH,
  K3S_DATA_DIR,
  K3S_IMAGES_DIR,
  K3S_KUBECONFIG_PATH,
  K3S_MANIFESTS_DIR,
  K3S_REGISTRIES_PATH,
  K3S_STATIC_CHARTS_DIR,
  K3S_TOKEN_PATH,
} from '../../engine/pop-layout.js';

export interface K3sConfigInput {
  nodeName: string;
  /** Extra names/addresses for the API server certificate (the SSH host, the hub-facing endpoint, …). */
  tlsSans: string[];
  nodeLabels: Record<string, string>;
  disable: string[];
  datastore: 'sqlite' | 'etcd';
  clusterCidr?: string;
  serviceCidr?: string;
  /** Keep API and kubelet headroom on 2-core/2 GiB POPs. */
  systemReserved?: { cpu: string; memory: string };
}

/** Host part of an `https://host:port` endpoint, without IPv6 brackets. */
export function endpointHost(url: string): string {
  const u = new URL(url);
  return u.hostname.replace(/^\[(.*)\]$/, '$1');
}

function unique(xs: string[]): string[] {
  return [...new Set(xs.filter((x) => x !== ''))];
}

export function renderK3sConfig(input: K3sConfigInput): string {
  const labels = Object.entries(input.nodeLabels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  const doc: Record<string, unknown> = {
    'node-name': input.nodeName,
    // Root-only kubeconfig: the installer reads it with sudo; nobody else on the POP needs cluster-admin.
    'write-kubeconfig-mode': '0600',
    'token-file': K3S_TOKEN_PATH,
    'tls-san': unique(input.tlsSans),
    ...(labels.length ? { 'node-label': labels } : {}),
    ...(input.disable.length ? { disable: unique(input.disable) } : {}),
    ...(input.clusterCidr ? { 'cluster-cidr': input.clusterCidr } : {}),
    ...(input.serviceCidr ? { 'service-cidr': input.serviceCidr } : {}),
    // Airgap: never fall back to docker.io & co. for registries listed in registries.yaml.
    'disable-default-registry-endpoint': true,
    ...(input.datastore === 'etcd'
      ? { 'cluster-init': true, 'etcd-snapshot-schedule-cron': '0 */6 * * *', 'etcd-snapshot-retention': 12 }
      : {}),
    ...(input.systemReserved
      ? { 'kubelet-arg': [`system-reserved=cpu=${input.systemReserved.cpu},memory=${input.systemReserved.memory}`] }
      : {}),
  };
  return '# Written by fsm-edge; edits are overwritten on the next install.\n' + stringify(doc);
}

/** The registry host of an image reference, as containerd resolves it (`flomesh/x:1` → docker.io). */
export function registryOf(ref: string): string {
  const first = ref.split('/')[0] ?? '';
  if (!ref.includes('/') || !(first.includes('.') || first.includes(':') || first === 'localhost')) return 'docker.io';
  return first;
}

/**
 * Where every pull of an airgapped POP goes: a loopback port nothing listens on (tcpmux, port 1), so containerd's
 * pull fails at once with "connection refused" and nothing leaves the POP.
 */
export const AIRGAP_PULL_ENDPOINT = 'http://127.0.0.1:1';

/**
 * `registries.yaml`: every registry the bundle's images name, and `*` for any other, is mirrored to
 * {@link AIRGAP_PULL_ENDPOINT}; with `disable-default-registry-endpoint` k3s then renders hosts.toml files with
 * only that endpoint and no `server =` fallback. An empty `endpoint: []` would NOT do: k3s drops a mirror with
 * no endpoints and no config (pkg/agent/containerd/config.go getHostConfigs), and containerd then pulls from
 * registry-1.docker.io & co. (k3s#2961, #10351).
 */
export function renderRegistries(imageRefs: string[]): string {
  const registries = unique(['docker.io', ...imageRefs.map(registryOf)]).sort();
  const mirrors: Record<string, { endpoint: string[] }> = {};
  for (const r of [...registries, '*']) mirrors[r] = { endpoint: [AIRGAP_PULL_ENDPOINT] };
  return '# Written by fsm-edge: airgapped POP, images come only from the bundle.\n' + stringify({ mirrors });
}
