// The POP's Kubernetes API, reached through an SSH tunnel to its 127.0.0.1:6443 (so 6443 needs no WAN
// exposure), authenticated with the POP's own admin kubeconfig read over SSH (root-only, mode 0600; never
// written to the controller's disk).

import { formatHostPort } from '../config/formats.js';
import { AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import type { Host, Tunnel } from '../transport/host.js';

interface KubeconfigDoc {
  clusters?: Array<{ name: string; cluster: { server: string; 'certificate-authority-data'?: string } }>;
}

export class PopKube {
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly batch: BatchV1Api;
  readonly custom: CustomObjectsApi;

  private constructor(
    readonly kc: KubeConfig,
    /** Base64 PEM of the POP cluster CA, for kubeconfigs handed to the hub. */
    readonly caData: string,
    private readonly tunnel: Tunnel,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.batch = kc.makeApiClient(BatchV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /** `kubeconfigPath`: where k3s writes its admin kubeconfig on the POP (the engine's POP layout says). */
  static async open(host: Host, kubeconfigPath: string): Promise<PopKube> {
    const raw = await host.readFile(kubeconfigPath, { sudo: true });
    if (!raw) throw new Error(`${host.name}: ${kubeconfigPath} is missing — k3s has not started on this POP`);
    const text = raw.toString('utf8');
    const doc = parse(text) as KubeconfigDoc;
    const caData = doc.clusters?.[0]?.cluster['certificate-authority-data'] ?? '';
    const tunnel = await host.tunnel(6443, '127.0.0.1');
    const kc = new KubeConfig();
    kc.loadFromString(text);
    const local = `https://${formatHostPort(tunnel.localHost, tunnel.localPort)}`;
    // The k3s serving certificate always carries 127.0.0.1; the tunnel's local end is on loopback too.
    kc.clusters = kc.clusters.map((c) => ({
      ...c,
      server: local,
      ...(tunnel.localHost !== '127.0.0.1' ? { tlsServerName: '127.0.0.1' } : {}),
    }));
    return new PopKube(kc, caData, tunnel);
  }

  async close(): Promise<void> {
    await this.tunnel.close().catch(() => {});
  }
}
