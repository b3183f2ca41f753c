// FSM through k3s's Helm controller: the chart is already in server/static/charts (assembled from the store by
// the k3s phase); here the values are planned, validated against the chart's own values.schema.json, wrapped
// in a HelmChart validated against the HelmChart CRD, and written into server/manifests. Then we wait for the
// helm-install Job and the FSM deployments — and on failure show the Job's reason, not a timeout.

import { createHash } from 'node:crypto';
import { blobPath } from '../bundle/layout.js';
import type { Host } from '../transport/host.js';
import { PopKube } from '../kube/pop.js';
import { FatalWaitError, isNotFound, pollUntil } from '../kube/poll.js';
import { PhaseRefusal, type Changes } from '../engine/phase.js';
import { fsmNamespace, requireDecisions, type InstallContext, bundleOf } from './context.js';
import type { InstallPhase, StepOutcome } from '../engine/runner.js';
import { readChartArchive, type ChartMeta } from './render/chart-archive.js';
import { ImagesMissingError, planFsmValues, validateFsmValues, ValuesSchemaError, type FsmValuesPlan } from './render/fsm-values.js';
import { buildFsmHelmChart, FSM_HELMCHART_NAME, FSM_HELMCHART_NAMESPACE, renderHelmChartManifest } from './render/helm-chart.js';
import { K3S_MANIFESTS_DIR } from './render/k3s-config.js';
import { hostHelmLogReader, inspectFsmRelease, recoverFailedRelease, waitForHelmJob } from './helm-release.js';
import { describeImageWaits, ImageWaitTracker, MISSING_IMAGE_FIX, podsBlockedOnImages } from './pod-health.js';

export const FSM_MANIFEST_PATH = `${K3S_MANIFESTS_DIR}/fsm-edge-fsm.yaml`;
export const HELM_TIMEOUT = '600s';

export interface MeshPlan {
  chart: ChartMeta;
  chartFile: string;
  values: FsmValuesPlan;
  manifest: string;
  deployments: string[];
}

const cache = new WeakMap<InstallContext, MeshPlan>();
const validated = new WeakSet<MeshPlan>();

/**
 * Everything the mesh phase writes, rendered on the controller; with `validate`, also checked against the
 * chart's values.schema.json (compiling that schema costs seconds, so a journaled, unchanged phase skips it).
 */
export async function meshPlan(ctx: InstallContext, opts: { validate: boolean } = { validate: true }): Promise<MeshPlan> {
  const hit = cache.get(ctx);
  if (hit && (!opts.validate || validated.has(hit))) return hit;
  const plan = hit ?? (await renderMeshPlan(ctx));
  cache.set(ctx, plan);
  if (opts.validate && !validated.has(plan)) {
    try {
      if (!plan.chart.schema) throw new PhaseRefusal('mesh', `the FSM chart ${plan.chartFile} has no values.schema.json to validate values against`, 'use the upstream FSM chart in the bundle');
      validateFsmValues(plan.chartFile, plan.chart.schema, plan.chart.defaults, plan.values.values);
    } catch (e) {
      if (e instanceof ValuesSchemaError) throw new PhaseRefusal('mesh', e.message, 'this is a bug in fsm-edge’s values for this chart version; report it with the message');
      throw e;
    }
    validated.add(plan);
  }
  return plan;
}

async function renderMeshPlan(ctx: InstallContext): Promise<MeshPlan> {
  const d = requireDecisions(ctx);
  const chartFile = d.content.files.find((f) => f.role === 'fsm-chart');
  if (!chartFile) throw new PhaseRefusal('mesh', `the bundle has no FSM chart for ${d.arch}`, 'rebuild the bundle with the mesh features');
  const chart = await readChartArchive(blobPath(bundleOf(ctx).dir, chartFile.digest));
  const fsmVersion = bundleOf(ctx).doc.versions.fsm;
  const joinsHub = Boolean(ctx.site.spec.hub) && ctx.site.spec.mesh.multicluster;
  let values: FsmValuesPlan;
  try {
    values = planFsmValues({
      fsmVersion,
      namespace: fsmNamespace(ctx),
      bundleImages: d.content.images.map((i) => i.ref),
      interception: d.interception,
      ingress: ctx.site.spec.mesh.ingress,
      multicluster: joinsHub,
      profile: ctx.site.spec.mesh.profile,
    });
  } catch (e) {
    if (e instanceof ImagesMissingError) throw new PhaseRefusal('mesh', e.message.split('\n')[0]!, 'rebuild the bundle with the features this Site enables, or turn them off in the Site (mesh.ingress, mesh.interception)');
    throw e;
  }
  const hc = buildFsmHelmChart({ chartVersion: chart.version || fsmVersion, chartFile: chartFile.name, targetNamespace: fsmNamespace(ctx), values: values.values, timeout: HELM_TIMEOUT });
  const ingress = ctx.site.spec.mesh.ingress || joinsHub;
  return {
    chart,
    chartFile: chartFile.name,
    values,
    manifest: renderHelmChartManifest(hc),
    deployments: ['fsm-bootstrap', 'fsm-controller', 'fsm-injector', ...(ingress ? ['fsm-ingress'] : [])],
  };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export async function waitForMesh(ctx: InstallContext, host: Host, plan: MeshPlan, previousJobUid: string | undefined): Promise<void> {
  ctx.popKube ??= await PopKube.open(host);
  const kube = ctx.popKube;
  const timeoutMs = ctx.options.meshTimeoutMs;
  await waitForHelmJob(kube, {
    jobName: `helm-install-${FSM_HELMCHART_NAME}`,
    targetNamespace: fsmNamespace(ctx),
    release: FSM_HELMCHART_NAME,
    ...(previousJobUid ? { previousJobUid } : {}),
    timeoutMs,
    readLog: hostHelmLogReader(host),
  });
  const ns = fsmNamespace(ctx);
  const images = new ImageWaitTracker();
  await pollUntil(
    `FSM deployments in ${ns} (${plan.deployments.join(', ')})`,
    async () => {
      // helm ran without --wait: a missing image shows only as pods waiting for it, never as a failure
      const blocked = images.persistent(await podsBlockedOnImages(kube, ns));
      if (blocked.length) throw new FatalWaitError(`FSM pods in ${ns} wait for images that are not on the POP:\n${describeImageWaits(blocked)}\n  fix: ${MISSING_IMAGE_FIX}`);
      const notReady: string[] = [];
      for (const name of plan.deployments) {
        try {
          const dep = await kube.apps.readNamespacedDeployment({ name, namespace: ns });
          const want = dep.spec?.replicas ?? 1;
          if ((dep.status?.availableReplicas ?? 0) < want) notReady.push(`${name} ${dep.status?.availableReplicas ?? 0}/${want}`);
        } catch (e) {
          if (!isNotFound(e)) throw e;
          notReady.push(`${name} missing`);
        }
      }
      return { done: notReady.length === 0, state: notReady.join(', ') };
    },
    { timeoutMs, intervalMs: 2000 },
  );
}

/**
 * A release a previous run left failed is sticky (failurePolicy abort): uninstall it through k3s first, so the
 * manifest written next installs FSM anew. Returns what was done (empty when nothing was failed).
 */
async function recoverIfFailed(ctx: InstallContext, host: Host, changes: Changes): Promise<string[]> {
  // No kubeconfig yet (k3s never started, e.g. a dry run before the first install): nothing can have failed.
  ctx.popKube ??= await PopKube.open(host).catch(() => undefined);
  if (!ctx.popKube) return [];
  const st = await inspectFsmRelease(ctx.popKube, fsmNamespace(ctx), FSM_HELMCHART_NAME);
  if (st.state !== 'failed') return [];
  let done: string[] = [];
  await changes.change(`uninstall the failed FSM release (${st.reason ?? 'failed'}) so it can be installed again`, async () => {
    done = await recoverFailedRelease(ctx.popKube!, host, {
      manifestPath: FSM_MANIFEST_PATH,
      helmChartName: FSM_HELMCHART_NAME,
      targetNamespace: fsmNamespace(ctx),
      timeoutMs: ctx.options.meshTimeoutMs,
      readLog: hostHelmLogReader(host),
    });
  });
  return done;
}

export const meshPhase: InstallPhase<InstallContext> = {
  id: 'mesh',
  title: 'deploy FSM',
  async inputs(ctx) {
    const p = await meshPlan(ctx, { validate: false });
    return { bundle: bundleOf(ctx).digest, manifest: sha256(p.manifest) };
  },
  async apply(ctx: InstallContext, host: Host, changes: Changes): Promise<StepOutcome> {
    const plan = await meshPlan(ctx);
    const recovered = await recoverIfFailed(ctx, host, changes);
    const current = await host.exec(`sha256sum < ${FSM_MANIFEST_PATH} 2>/dev/null | cut -d' ' -f1`, { sudo: true });
    const changed = current.stdout.trim() !== sha256(plan.manifest);
    const warnings = plan.values.warnings;
    const mode = plan.values.trafficInterceptionMode;
    if (changes.dryRun) {
      if (changed) await changes.change(`write HelmChart ${FSM_HELMCHART_NAMESPACE}/${FSM_HELMCHART_NAME} (${plan.chartFile}, ${mode}) to ${FSM_MANIFEST_PATH}`, async () => {});
      return { summary: changed ? `would deploy FSM ${bundleOf(ctx).doc.versions.fsm} (${mode})` : 'FSM HelmChart unchanged', changes: [], warnings };
    }
    let previousJobUid: string | undefined;
    if (changed) {
      ctx.popKube ??= await PopKube.open(host);
      previousJobUid = await ctx.popKube.batch
        .readNamespacedJob({ name: `helm-install-${FSM_HELMCHART_NAME}`, namespace: FSM_HELMCHART_NAMESPACE })
        .then((j) => j.metadata?.uid)
        .catch(() => undefined);
      // A fresh mtime: k3s's deploy controller ignores manifests with mtime 0 (k3s#14568).
      await changes.change(`write HelmChart to ${FSM_MANIFEST_PATH}`, () => host.writeFile(FSM_MANIFEST_PATH, plan.manifest, { sudo: true, mode: 0o600 }));
    }
    const t0 = Date.now();
    await waitForMesh(ctx, host, plan, previousJobUid);
    ctx.installed.fsm = bundleOf(ctx).doc.versions.fsm;
    ctx.metrics.meshSeconds = (Date.now() - t0) / 1000;
    return {
      summary: `FSM ${bundleOf(ctx).doc.versions.fsm} ${changed ? 'deployed' : 'unchanged'} (${mode}); ${plan.deployments.length} deployments ready${recovered.length ? `; before that: ${recovered.at(-1)}` : ''}`,
      changes: [...recovered, ...(changed ? [`wrote ${FSM_MANIFEST_PATH}`] : [])],
      warnings,
    };
  },
};
