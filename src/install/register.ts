// Joining the federation hub. On the POP: a ServiceAccount with only what the hub's FSM controller needs, and a
// token for it. On the hub: the FSM `Cluster` (validated against the real CRD) by server-side apply, so re-runs
// never duplicate it. Then wait for `Managed=True` on the hub and `clusterSet.isManaged` in the POP's MeshConfig.
// A hub that is down (or unreachable) leaves the registration *pending* — not a failure; `fsm-edge register`
// completes it later. The token and the kubeconfig holding it are never logged or recorded.

import { ApiException, AuthorizationV1Api, KubeConfig } from '@kubernetes/client-node';
import { change, definePhase, type PhaseResult, type PlannedChange } from '../engine/phase.js';
import { K3S_BINARY, K3S_KUBECONFIG_PATH } from '../engine/pop-layout.js';
import { applyObject } from '../kube/apply.js';
import { CLUSTER_GROUP, CLUSTER_VERSION, type ClusterResource } from '../kube/hub.js';
import type { PopKube } from '../kube/pop.js';
import type { Host } from '../transport/host.js';
import { describeApiError, FatalWaitError, isNotFound, pollUntil, WaitTimeoutError, withTimeout } from '../kube/poll.js';
import { fsmNamespace, type InstallContext, popKubeOf } from './context.js';
import { apiEndpoint } from './k3s.js';
import { endpointHost } from './render/k3s-config.js';
import {
  buildClusterObject,
  type ClusterFields,
  gatewayPortFor,
  HUB_ACCESS_NAME,
  hubAccessChecks,
  popAccessObjects,
  renderHubKubeconfig,
} from './render/registration.js';

export function clusterFields(ctx: InstallContext): ClusterFields {
  const hub = ctx.site.spec.hub!;
  return {
    name: ctx.site.metadata.name,
    region: hub.region,
    zone: hub.zone,
    group: hub.group,
    gatewayHost: hub.gateway?.host ?? endpointHost(apiEndpoint(ctx)),
    gatewayPort: gatewayPortFor(ctx.site.spec),
    fsmNamespace: fsmNamespace(ctx),
  };
}

/** Network trouble (hub down, link cut, DNS) as opposed to the hub refusing what we sent. */
function isUnreachable(e: unknown): boolean {
  if (e instanceof ApiException) return e.code >= 500 || e.code === 0;
  const msg = e instanceof Error ? `${e.message} ${(e as { code?: string }).code ?? ''}` : String(e);
  return /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|socket hang up|no answer within|network|fetch failed/i.test(
    msg,
  );
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

/**
 * Asks the POP's API, as the hub's own ServiceAccount token, for every right FSM v1.5.1's hub uses. FSM's hub
 * never reports a missing right: its informer waits for ever (and holds up every other Cluster on that hub), so
 * the join would only time out. A denied right is named here instead, before the Cluster is applied.
 */
export async function missingHubRights(kube: PopKube, token: string, ns: string): Promise<string[]> {
  const kc = new KubeConfig();
  const cluster = kube.kc.getCurrentCluster()!;
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name: 'fsm-hub', token }],
    contexts: [{ name: 'fsm-hub', cluster: cluster.name, user: 'fsm-hub' }],
    currentContext: 'fsm-hub',
  });
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const denied: string[] = [];
  for (const c of hubAccessChecks(ns)) {
    const r = await authz.createSelfSubjectAccessReview({
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SelfSubjectAccessReview',
        spec: {
          resourceAttributes: {
            verb: c.verb,
            group: c.group,
            resource: c.resource,
            ...(c.subresource ? { subresource: c.subresource } : {}),
            ...(c.namespace ? { namespace: c.namespace } : {}),
            ...(c.name ? { name: c.name } : {}),
          },
        },
      },
    });
    if (!r.status?.allowed) {
      const what = `${c.verb} ${c.resource}${c.subresource ? `/${c.subresource}` : ''}${c.group ? `.${c.group}` : ''}${c.name ? ` ${c.name}` : ''}${c.namespace ? ` in ${c.namespace}` : ''}`;
      denied.push(`${what} (${c.usedBy})`);
    }
  }
  return denied;
}

function managedCondition(c: ClusterResource) {
  return c.status?.conditions?.find((x) => x.type === 'Managed');
}

/**
 * A section of the run's probe: whether the hub's access (ServiceAccount token Secret) exists on the POP —
 * `access`, `no-access` (the API said NotFound), or `access-unknown` (no answer in time, or another error): "absent"
 * and "could not ask" must never look alike, or a busy POP is registered again.
 */
export function registerProbe(namespace: string): string {
  return [
    `if [ -x ${K3S_BINARY} ] && [ -s ${K3S_KUBECONFIG_PATH} ]; then`,
    `  if e=$(timeout 20 ${K3S_BINARY} kubectl get secret -n ${namespace} ${HUB_ACCESS_NAME} --no-headers 2>&1 >/dev/null); then echo access`,
    `  elif printf '%s' "$e" | grep -q '(NotFound)'; then echo no-access`,
    '  else echo access-unknown; fi',
    'fi',
  ].join('\n');
}

/** The probe could not tell: asked through the POP's API (the tunnel), bounded; still unknown counts as absent. */
async function popAccessThroughApi(ctx: InstallContext, host: Host, namespace: string): Promise<boolean> {
  try {
    const kube = await withTimeout(popKubeOf(ctx, host), 30_000, 'the POP API');
    await withTimeout(kube.core.readNamespacedSecret({ name: HUB_ACCESS_NAME, namespace }), 30_000, 'the POP API');
    return true;
  } catch {
    return false;
  }
}

interface RegisterLive {
  /** Why registration cannot happen in this run (no Hub document): reported as pending. */
  pending?: string;
  fields?: ClusterFields;
  popAccess: boolean;
  /** The Cluster on the hub: Managed=True with our fields, or why not (undefined: the hub did not answer). */
  cluster?: { exists: boolean; managed: boolean; fieldsMatch: boolean };
  hubError?: string;
  applied: { pending?: string; generation?: number };
}

function sameFields(c: ClusterResource, f: ClusterFields): boolean {
  const spec = (c as { spec?: Record<string, unknown> }).spec ?? {};
  return (
    spec.region === f.region &&
    spec.zone === f.zone &&
    spec.group === f.group &&
    spec.gatewayHost === f.gatewayHost &&
    spec.gatewayPort === f.gatewayPort
  );
}

export const registerPhase = definePhase<InstallContext, undefined, RegisterLive>({
  id: 'register',
  title: 'register with the hub',
  probe: (ctx) => registerProbe(fsmNamespace(ctx)),
  inputs: (ctx) =>
    ctx.site.spec.hub ? { cluster: clusterFields(ctx), endpoint: apiEndpoint(ctx), hub: ctx.hubKube?.server ?? '' } : { standalone: true },
  async check(ctx, _prep, env) {
    const said = new Set(env.probe.split('\n').map((l) => l.trim()));
    const live: RegisterLive = { popAccess: said.has('access'), applied: {} };
    if (!ctx.site.spec.hub) return live;
    live.fields = clusterFields(ctx);
    if (!ctx.hubKube) {
      live.pending = `no Hub document named "${ctx.site.spec.hub.ref}" was given`;
      return live;
    }
    if (said.has('access-unknown')) live.popAccess = await popAccessThroughApi(ctx, env.host, fsmNamespace(ctx));
    try {
      const c = await withTimeout(ctx.hubKube.getCluster(live.fields.name), 10_000, `hub ${ctx.hubKube.server}`);
      live.cluster = { exists: true, managed: managedCondition(c)?.status === 'True', fieldsMatch: sameFields(c, live.fields) };
    } catch (e) {
      if (isNotFound(e)) live.cluster = { exists: false, managed: false, fieldsMatch: false };
      else live.hubError = describeApiError(e);
    }
    return live;
  },
  healthy: (live) => !live.fields || live.cluster?.managed === true,
  plan(ctx, _prep, live, env) {
    const fields = live.fields;
    if (!fields || live.pending || !ctx.hubKube) return [];
    const hub = ctx.hubKube;
    const ns = fields.fsmNamespace;
    const current = live.cluster?.managed && live.cluster.fieldsMatch && live.popAccess;
    if (current) return [];
    const changes: PlannedChange[] = [];
    let kube: PopKube | undefined;
    changes.push(
      change(`create ServiceAccount ${ns}/${HUB_ACCESS_NAME} with a Role/ClusterRole for the hub, and its token`, async () => {
        kube = await popKubeOf(ctx, env.host);
        for (const obj of popAccessObjects(ns)) await applyObject(kube.kc, obj);
      }),
    );
    changes.push(
      change(
        `apply Cluster ${fields.name} on the hub ${hub.server} (region ${fields.region}, zone ${fields.zone}, group ${fields.group}, gateway ${fields.gatewayHost}:${fields.gatewayPort})`,
        async () => {
          const k = kube ?? (await popKubeOf(ctx, env.host));
          const token = await popToken(k, ns, 60_000);
          const denied = await missingHubRights(k, token, ns);
          if (denied.length) {
            throw new Error(
              `the hub's ServiceAccount ${ns}/${HUB_ACCESS_NAME} on the POP lacks rights FSM's hub needs, so the join would hang: ${denied.join('; ')}` +
                `\n  fix: restore the Role/ClusterRole fsm-edge creates (run the install or \`fsm-edge register\` again; check nothing on the POP edits them)`,
            );
          }
          const kubeconfig = renderHubKubeconfig({ clusterName: fields.name, server: apiEndpoint(ctx), caData: k.caData, token });
          try {
            const applied = (await withTimeout(
              applyObject(hub.kc, buildClusterObject({ ...fields, kubeconfig })),
              20_000,
              `hub ${hub.server}`,
            )) as {
              metadata?: { generation?: number };
            };
            live.applied.generation = applied?.metadata?.generation;
          } catch (e) {
            if (isUnreachable(e)) {
              live.applied.pending = `the hub ${hub.server} is unreachable (${describeApiError(e)})`;
              return;
            }
            throw new Error(`the hub refused Cluster ${fields.name}: ${describeApiError(e)}`);
          }
        },
      ),
    );
    return changes;
  },
  describe: (ctx, _prep, live, changes, dryRun) => describeRegistration(ctx, live, changes, dryRun),
  async settle(ctx, _prep, live, env, applied) {
    const fields = live.fields;
    if (!fields) return { summary: 'no hub configured: standalone POP' };
    const pendingReason = live.pending ?? live.applied.pending;
    if (pendingReason) {
      ctx.registration = { state: 'pending', reason: pendingReason, clusterName: fields.name };
      return { summary: `registration pending: ${pendingReason}; run \`fsm-edge register\` when the hub is back`, pending: pendingReason };
    }
    if (!applied.length && live.cluster?.managed) return describeRegistration(ctx, live, applied, false);
    return waitManaged(ctx, env.host, fields, live.applied.generation);
  },
});

function describeRegistration(ctx: InstallContext, live: RegisterLive, changes: readonly string[], dryRun: boolean): PhaseResult {
  if (!live.fields) return { summary: 'no hub configured: standalone POP' };
  if (live.pending) return { summary: `registration pending: ${live.pending}`, pending: live.pending };
  if (dryRun)
    return {
      summary: changes.length
        ? `would register as Cluster ${live.fields.name} (${live.fields.region}/${live.fields.zone}/${live.fields.group})`
        : `Cluster ${live.fields.name} is Managed on the hub`,
    };
  ctx.registration = { state: 'managed', clusterName: live.fields.name };
  return { summary: `Cluster ${live.fields.name} is Managed on the hub (${live.fields.region}/${live.fields.zone}/${live.fields.group})` };
}

async function waitManaged(ctx: InstallContext, host: Host, fields: ClusterFields, generation: number | undefined): Promise<PhaseResult> {
  const hub = ctx.hubKube!;
  const ns = fields.fsmNamespace;
  const t0 = Date.now();
  // A condition counts only when it was written for what we applied (observedGeneration, as FSM v1.5.1's
  // cluster controller sets it): a verdict left from before a reinstall (an old CA, an old token) is not ours.
  // FSM writes only Managed=True; a Failed condition, should one appear, is final only when current and seen
  // twice in a row.
  let failedSeen = 0;
  try {
    await pollUntil(
      `Cluster ${fields.name} Managed=True on the hub`,
      async () => {
        const c = (await hub.custom.getClusterCustomObject({
          group: CLUSTER_GROUP,
          version: CLUSTER_VERSION,
          plural: 'clusters',
          name: fields.name,
        })) as ClusterResource & {
          metadata?: { generation?: number };
        };
        const want = generation ?? c.metadata?.generation;
        const m = managedCondition(c) as (ReturnType<typeof managedCondition> & { observedGeneration?: number }) | undefined;
        const current = m && (m.observedGeneration === undefined || want === undefined || m.observedGeneration >= want);
        if (current && m.status === 'False') {
          if (++failedSeen >= 2)
            throw new FatalWaitError(`the hub could not join ${fields.name}: ${m.reason ?? ''} ${m.message ?? ''}`.trim());
        } else failedSeen = 0;
        if (m && !current)
          return { done: false, state: `Managed=${m.status} is from generation ${m.observedGeneration}, waiting for ${want}` };
        return { done: m?.status === 'True', state: m ? `Managed=${m.status} ${m.message ?? ''}`.trim() : 'no Managed condition yet' };
      },
      { timeoutMs: ctx.options.registerTimeoutMs, intervalMs: 2000 },
    );
  } catch (e) {
    if (e instanceof FatalWaitError) {
      ctx.registration = { state: 'failed', reason: e.message, clusterName: fields.name };
      throw new Error(
        `${e.message}\n  fix: check that the hub can reach ${apiEndpoint(ctx)} (and resolve ${fields.gatewayHost}), then run \`fsm-edge register\``,
      );
    }
    if (e instanceof WaitTimeoutError && /HTTP 5|ECONN|no answer/i.test(e.lastState)) {
      const reason = `the hub stopped answering (${e.lastState})`;
      ctx.registration = { state: 'pending', reason, clusterName: fields.name };
      return { summary: `registration pending: ${reason}; run \`fsm-edge register\` when the hub is back`, pending: reason };
    }
    if (e instanceof WaitTimeoutError) {
      ctx.registration = { state: 'failed', reason: e.message, clusterName: fields.name };
      throw new Error(
        `${e.message}\n  fix: FSM's hub reports a failed join only in its own log: look at the fsm-controller log on the hub, then run \`fsm-edge register\``,
      );
    }
    throw e;
  }
  const kube = await popKubeOf(ctx, host);
  await pollUntil(
    `MeshConfig ${ns}/fsm-mesh-config clusterSet.isManaged on the POP`,
    async () => {
      const mc = (await kube.custom.getNamespacedCustomObject({
        group: 'config.flomesh.io',
        version: 'v1alpha3',
        plural: 'meshconfigs',
        namespace: ns,
        name: 'fsm-mesh-config',
      })) as {
        spec?: { clusterSet?: { isManaged?: boolean } };
      };
      return { done: mc.spec?.clusterSet?.isManaged === true, state: `isManaged=${String(mc.spec?.clusterSet?.isManaged ?? false)}` };
    },
    { timeoutMs: 60_000, intervalMs: 2000 },
  );
  ctx.registration = { state: 'managed', clusterName: fields.name };
  ctx.metrics.registerSeconds = (Date.now() - t0) / 1000;
  return { summary: `Cluster ${fields.name} is Managed on the hub (${fields.region}/${fields.zone}/${fields.group})` };
}
