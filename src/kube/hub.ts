// The federation hub's Kubernetes API, from the Hub document's kubeconfig (a secret reference resolved at the
// moment of use; its contents are never logged or recorded).

import { CustomObjectsApi, KubeConfig, VersionApi } from '@kubernetes/client-node';
import { withTimeout } from './poll.js';

export const CLUSTER_GROUP = 'multicluster.flomesh.io';
export const CLUSTER_VERSION = 'v1alpha1';

export interface ClusterCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface ClusterResource {
  metadata: { name: string; uid?: string; resourceVersion?: string; creationTimestamp?: string };
  spec?: Record<string, unknown>;
  status?: { conditions?: ClusterCondition[] };
}

export class HubKube {
  readonly custom: CustomObjectsApi;
  constructor(readonly kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  static fromKubeconfig(text: string, context?: string): HubKube {
    const kc = new KubeConfig();
    kc.loadFromString(text);
    if (context) {
      if (!kc.getContexts().some((c) => c.name === context)) {
        throw new Error(
          `the hub kubeconfig has no context "${context}" (it has: ${
            kc
              .getContexts()
              .map((c) => c.name)
              .join(', ') || 'none'
          })`,
        );
      }
      kc.setCurrentContext(context);
    }
    return new HubKube(kc);
  }

  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? '(no server)';
  }

  /** The hub answers `/version` within `ms`. */
  async reachable(ms = 8000): Promise<{ ok: true; version: string } | { ok: false; reason: string }> {
    try {
      const v = await withTimeout(this.kc.makeApiClient(VersionApi).getCode(), ms, `hub ${this.server}`);
      return { ok: true, version: v.gitVersion };
    } catch (e) {
      return { ok: false, reason: e instanceof Error ? e.message : String(e) };
    }
  }

  async getCluster(name: string): Promise<ClusterResource> {
    return (await this.custom.getClusterCustomObject({
      group: CLUSTER_GROUP,
      version: CLUSTER_VERSION,
      plural: 'clusters',
      name,
    })) as ClusterResource;
  }
}
