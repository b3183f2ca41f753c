// Joining the federation hub. On the POP: a ServiceAccount with only what the hub's FSM controller needs, and a
// token for it. On the hub: the FSM `Cluster` (validated against the real CRD) by server-side apply, so re-runs
// never duplicate it. Then wait for `Managed=True` on the hub and `clusterSet.isManaged` in the POP's MeshConfig.
// A hub that is down (or unreachable) leaves the registration *pending* — not a failure; `fsm-edge register`
// completes it later. The token and the kubeconfig holding it are never logged or recorded.

import type { Host } from '../transport/host.js';
import { applyObject } from '../kube/apply.js';
import { CLUSTER_GROUP, CLUSTER_VERSION, type ClusterResource } from '../kube/hub.js';
import { PopKube } from '../kube/pop.js';
import { describeApiError, FatalWaitError, pollUntil, WaitTimeoutError, withTimeout } from '../kube/poll.js';
import { ApiException } from '@kubernetes/client-node';
import type { Changes } from '../engine/phase.js';
import { fsmNamespace, type InstallContext } from './context.js';
import type { InstallPhase, StepOutcome } from '../engine/runner.js';
import { apiEndpoint } from './k3s.js';
import { endpointHost } from './render/k3s-config.js';
import { buildClusterObject, HUB_ACCESS_NAME, popAccessObjects, renderHubKubeconfig, type ClusterFields } from './render/registration.js';

export function clusterFields(ctx: InstallContext): ClusterFields {
  const hub = ctx.site.spec.hub!;
  return {
    name: ctx.site.metadata.name,
    region: hub.region,
    zone: hub.zone,
    group: hub.group,
    gatewayHost: hub.gateway?.host ?? endpointHost(apiEndpoint(ctx)),
    gatewayPort: hub.gateway?.port ?? 80,
    fsmNamespace: fsmNamespace(ctx),
  };
}

/** Network trouble (hub down, link cut, DNS) as opposed to the hub refusing what we sent. */
function isUnreachable(e: unknown): boolean {
  if (e instanceof ApiException) return e.code >= 500 || e.code === 0;
  const msg = e instanceof Error ? `${e.message} ${(e as { code?: string }).code ?? ''}` : String(e);
  return /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|socket hang up|no answer within|network|fetch failed/i.test(msg);
}

async function popToken(kube: PopKube, ns: string, timeoutMs: number): Promise<string> {
  return pollUntil(
    `the token of ServiceAccount ${ns}/${HUB_ACCESS_NAME}`,
    async () => {
      const s = await kube.core.readNamespacedSecret({ name: HUB_ACCESS_NAME, namespace: ns });
      const t = s.data?.token;
      return t ? { done: true, value: Buffer.from(t, 'base64').toString('utf8') } : { done: false, state: 'token not issued yet' };
    },
    { timeoutMs, intervalMs: 1000 },
  );
}

function managedCondition(c: ClusterResource) {
  return c.status?.conditions?.find((x) => x.type === 'Managed');
}

export const registerPhase: InstallPhase<InstallContext> = {
  id: 'register',
  title: 'register with the hub',
  inputs(ctx) {
    return ctx.site.spec.hub ? { cluster: clusterFields(ctx), endpoint: apiEndpoint(ctx), hub: ctx.hubKube?.server ?? '' } : { standalone: true };
  },
  async apply(ctx: InstallContext, host: Host, changes: Changes): Promise<StepOutcome> {
    if (!ctx.site.spec.hub) {
      return { summary: 'no hub configured: standalone POP', changes: [] };
    }
    const fields = clusterFields(ctx);
    const ns = fields.fsmNamespace;
    if (!ctx.hubKube) {
      const reason = `no Hub document named "${ctx.site.spec.hub.ref}" was given`;
      ctx.registration = { state: 'pending', reason, clusterName: fields.name };
      return { summary: `registration pending: ${reason}`, changes: [], pending: reason };
    }
    if (changes.dryRun) {
      await changes.change(`create ServiceAccount ${ns}/${HUB_ACCESS_NAME} with a Role/ClusterRole for the hub, and its token`, async () => {});
      await changes.change(`apply Cluster ${fields.name} on the hub ${ctx.hubKube.server} (region ${fields.region}, zone ${fields.zone}, group ${fields.group}, gateway ${fields.gatewayHost}:${fields.gatewayPort})`, async () => {});
      return { summary: `would register as Cluster ${fields.name} (${fields.region}/${fields.zone}/${fields.group})`, changes: [] };
    }

    ctx.popKube ??= await PopKube.open(host);
    const kube = ctx.popKube;
    for (const obj of popAccessObjects(ns)) await applyObject(kube.kc, obj);
    const token = await popToken(kube, ns, 60_000);
    const kubeconfig = renderHubKubeconfig({ clusterName: fields.name, server: apiEndpoint(ctx), caData: kube.caData, token });
    const cluster = buildClusterObject({ ...fields, kubeconfig });

    const hub = ctx.hubKube;
    const pending = (reason: string): StepOutcome => {
      ctx.registration = { state: 'pending', reason, clusterName: fields.name };
      return { summary: `registration pending: ${reason}; run \`fsm-edge register\` when the hub is back`, changes: [`created hub access on the POP (ServiceAccount ${ns}/${HUB_ACCESS_NAME})`], pending: reason };
    };
    try {
      await withTimeout(applyObject(hub.kc, cluster), 20_000, `hub ${hub.server}`);
    } catch (e) {
      if (isUnreachable(e)) return pending(`the hub ${hub.server} is unreachable (${describeApiError(e)})`);
      throw new Error(`the hub refused Cluster ${fields.name}: ${describeApiError(e)}`);
    }

    const t0 = Date.now();
    try {
      await pollUntil(
        `Cluster ${fields.name} Managed=True on the hub`,
        async () => {
          const c = (await hub.custom.getClusterCustomObject({ group: CLUSTER_GROUP, version: CLUSTER_VERSION, plural: 'clusters', name: fields.name })) as ClusterResource;
          const m = managedCondition(c);
          if (m?.status === 'False') throw new FatalWaitError(`the hub could not join ${fields.name}: ${m.reason ?? ''} ${m.message ?? ''}`.trim());
          return { done: m?.status === 'True', state: m ? `Managed=${m.status} ${m.message ?? ''}`.trim() : 'no Managed condition yet' };
        },
        { timeoutMs: ctx.options.registerTimeoutMs, intervalMs: 2000 },
      );
    } catch (e) {
      if (e instanceof FatalWaitError) {
        ctx.registration = { state: 'failed', reason: e.message, clusterName: fields.name };
        throw new Error(`${e.message}\n  fix: check that the hub can reach ${apiEndpoint(ctx)} (and resolve ${fields.gatewayHost}), then run \`fsm-edge register\``);
      }
      if (e instanceof WaitTimeoutError && /HTTP 5|ECONN|no answer/i.test(e.lastState)) return pending(`the hub stopped answering (${e.lastState})`);
      if (e instanceof WaitTimeoutError) {
        ctx.registration = { state: 'failed', reason: e.message, clusterName: fields.name };
      }
      throw e;
    }
    await pollUntil(
      `MeshConfig ${ns}/fsm-mesh-config clusterSet.isManaged on the POP`,
      async () => {
        const mc = (await kube.custom.getNamespacedCustomObject({ group: 'config.flomesh.io', version: 'v1alpha3', plural: 'meshconfigs', namespace: ns, name: 'fsm-mesh-config' })) as {
          spec?: { clusterSet?: { isManaged?: boolean } };
        };
        return { done: mc.spec?.clusterSet?.isManaged === true, state: `isManaged=${String(mc.spec?.clusterSet?.isManaged ?? false)}` };
      },
      { timeoutMs: 60_000, intervalMs: 2000 },
    );
    ctx.registration = { state: 'managed', clusterName: fields.name };
    ctx.metrics.registerSeconds = (Date.now() - t0) / 1000;
    return { summary: `Cluster ${fields.name} is Managed on the hub (${fields.region}/${fields.zone}/${fields.group})`, changes: [`applied Cluster ${fields.name} on the hub`] };
  },
};
