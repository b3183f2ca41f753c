// FSM through k3s's Helm controller: the chart is already in server/static/charts (assembled from the store by
// the k3s phase); here the values are planned, validated against the chart's own values.schema.json, wrapped
// in a HelmChart validated against the HelmChart CRD, and written into server/manifests. Then we wait for the
// helm-install Job and the FSM deployments — and on failure show the Job's reason, not a timeout. A new manifest
// over a healthy FSM is an upgrade: if it fails, the previous chart is put back (mesh-rollback.ts) and the site
// fails saying so.

import { createHash } from 'node:crypto';
import { parse } from 'yaml';
import { blobPath } from '../bundle/layout.js';
import { change, definePhase, type PlannedChange, PhaseRefusal } from '../engine/phase.js';
import { FsmEdgeError } from '../config/errors.js';
import { errorText } from '../engine/failure.js';
import { FSM_MANIFEST_PATH, K3S_BINARY, K3S_KUBECONFIG_PATH, POP_PREVIOUS_FSM_MANIFEST } from '../engine/pop-layout.js';
import { applyObject, type ApplyObject } from '../kube/apply.js';
import type { PopKube } from '../kube/pop.js';
import { FatalWaitError, isNotFound, pollUntil } from '../kube/poll.js';
import type { Host } from '../transport/host.js';
import { bundleOf, decisionsOf, fsmNamespace, type InstallContext, popKubeOf } from './context.js';
import {
  type FsmHelmState,
  hostHelmLogReader,
  inspectFsmRelease,
  RECOVER_FIX,
  recoverFailedRelease,
  waitForHelmJob,
} from './helm-release.js';
import { keepFsmScript } from './k3s-upgrade.js';
import { fsmRollbackPlan, writeFsmRollback } from './mesh-rollback.js';
import { describeImageWaits, ImageWaitTracker, MISSING_IMAGE_FIX, podsBlockedOnImages } from './pod-health.js';
import { type ChartMeta, readChartArchive } from './render/chart-archive.js';
import { type FsmValuesPlan, ImagesMissingError, planFsmValues, ValuesSchemaError, validateFsmValues } from './render/fsm-values.js';
import { gatewayPortFor } from './render/registration.js';
import { buildFsmHelmChart, FSM_HELMCHART_NAME, FSM_HELMCHART_NAMESPACE, renderHelmChartManifest } from './render/helm-chart.js';

export { FSM_MANIFEST_PATH };
export const HELM_TIMEOUT = '600s';

export interface MeshPlan {
  /** Checks the values against the chart's values.schema.json (seconds: only when a change needs it). */
  validate(): Promise<unknown>;
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
      if (!plan.chart.schema)
        throw new PhaseRefusal(
          'mesh',
          `the FSM chart ${plan.chartFile} has no values.schema.json to validate values against`,
          'use the upstream FSM chart in the bundle',
        );
      validateFsmValues(plan.chartFile, plan.chart.schema, plan.chart.defaults, plan.values.values);
    } catch (e) {
      if (e instanceof ValuesSchemaError)
        throw new PhaseRefusal('mesh', e.message, 'this is a bug in fsm-edge’s values for this chart version; report it with the message');
      throw e;
    }
    validated.add(plan);
  }
  return plan;
}

async function renderMeshPlan(ctx: InstallContext): Promise<MeshPlan> {
  const d = decisionsOf(ctx);
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
      // The port fsm-ingress listens on is the port the hub's Cluster announces: one value for both ends.
      ingressHttpPort: gatewayPortFor(ctx.site.spec),
    });
  } catch (e) {
    if (e instanceof ImagesMissingError)
      throw new PhaseRefusal(
        'mesh',
        e.message.split('\n')[0]!,
        'rebuild the bundle with the features this Site enables, or turn them off in the Site (mesh.ingress, mesh.interception)',
      );
    throw e;
  }
  const hc = buildFsmHelmChart({
    chartVersion: chart.version || fsmVersion,
    chartFile: chartFile.name,
    targetNamespace: fsmNamespace(ctx),
    values: values.values,
    timeout: HELM_TIMEOUT,
  });
  const ingress = ctx.site.spec.mesh.ingress || joinsHub;
  return {
    validate: () => meshPlan(ctx, { validate: true }),
    chart,
    chartFile: chartFile.name,
    values,
    manifest: renderHelmChartManifest(hc),
    deployments: ['fsm-bootstrap', 'fsm-controller', 'fsm-injector', ...(ingress ? ['fsm-ingress'] : [])],
  };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export async function waitForMesh(
  ctx: InstallContext,
  host: Host,
  plan: MeshPlan,
  previousJobUid: string | undefined,
  chart?: string,
): Promise<void> {
  const kube = await popKubeOf(ctx, host);
  const timeoutMs = ctx.options.meshTimeoutMs;
  await waitForHelmJob(kube, {
    jobName: `helm-install-${FSM_HELMCHART_NAME}`,
    targetNamespace: fsmNamespace(ctx),
    release: FSM_HELMCHART_NAME,
    ...(previousJobUid ? { previousJobUid } : {}),
    ...(chart ? { chart } : {}),
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
      if (blocked.length)
        throw new FatalWaitError(
          `FSM pods in ${ns} wait for images that are not on the POP:\n${describeImageWaits(blocked)}\n  fix: ${MISSING_IMAGE_FIX}`,
        );
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

/** A section of the run's probe: the HelmChart manifest on disk, and FSM's workloads as the POP's API sees them. */
export function meshProbe(namespace: string): string {
  return [
    `if [ -f ${FSM_MANIFEST_PATH} ]; then echo "manifest $(sha256sum < ${FSM_MANIFEST_PATH} | cut -d' ' -f1)"; fi`,
    `if [ -x ${K3S_BINARY} ] && [ -s ${K3S_KUBECONFIG_PATH} ]; then`,
    // `api` only when the API answered: "no deployments" and "could not ask" must never look alike (the first
    // reinstalls FSM, the second only waits).
    `  if d=$(timeout 20 ${K3S_BINARY} kubectl get deployments -n ${namespace} --no-headers 2>/dev/null); then`,
    '    echo api; printf \'%s\\n\' "$d" | awk \'NF {print "deployment", $1, $2}\'',
    `    if f=$(timeout 20 ${K3S_BINARY} kubectl get helmcharts.helm.cattle.io -n ${FSM_HELMCHART_NAMESPACE} ${FSM_HELMCHART_NAME} -o jsonpath='{.status.conditions[?(@.type=="Failed")].status}' 2>/dev/null); then echo "helmchart \${f:-False}"; fi`,
    '  fi',
    'fi',
  ].join('\n');
}

export interface MeshLive {
  manifestSha?: string;
  /** The POP's API answered the probe (else nothing below was seen, and nothing may be concluded from it). */
  api: boolean;
  helmChart: boolean;
  /** helm-controller set the HelmChart's Failed condition. */
  helmChartFailed: boolean;
  /** The release as helm recorded it; read only when something is wrong. */
  release?: FsmHelmState;
  /** Deployment → `ready/wanted` as kubectl prints it. */
  deployments: Map<string, string>;
  /** Why FSM is not healthy now (empty when it is). */
  problems: string[];
  previousJobUid?: string;
  /** What the recovery of a failed release did, for the summary. */
  recovered?: string[];
  /** This run replaced a healthy FSM's manifest (this sha256): an upgrade, with a way back if it fails. */
  upgradingFrom?: string;
}

export function parseMeshProbe(out: string, wanted: readonly string[]): MeshLive {
  const live: MeshLive = { api: false, helmChart: false, helmChartFailed: false, deployments: new Map(), problems: [] };
  for (const line of out.split('\n')) {
    const w = line.trim().split(/\s+/);
    if (w[0] === 'manifest' && w[1]) live.manifestSha = w[1];
    else if (w[0] === 'api') live.api = true;
    else if (w[0] === 'deployment' && w[1] && w[2]) live.deployments.set(w[1], w[2]);
    else if (w[0] === 'helmchart') {
      live.helmChart = true;
      live.helmChartFailed = w[1] === 'True';
    }
  }
  if (!live.api) {
    live.problems.push('the POP API did not answer the probe');
    return live;
  }
  for (const name of wanted) {
    const r = live.deployments.get(name);
    const m = r ? /^(\d+)\/(\d+)$/.exec(r) : null;
    if (!r) live.problems.push(`${name} missing`);
    else if (!m || Number(m[1]) < Number(m[2]) || Number(m[2]) === 0) live.problems.push(`${name} ${r} ready`);
  }
  return live;
}

async function readJobUid(kube: PopKube): Promise<string | undefined> {
  return kube.batch
    .readNamespacedJob({ name: `helm-install-${FSM_HELMCHART_NAME}`, namespace: FSM_HELMCHART_NAMESPACE })
    .then((j) => j.metadata?.uid)
    .catch(() => undefined);
}

/**
 * FSM is gone or broken while the manifest on disk is unchanged, so k3s's deploy controller will not apply it
 * again (it skips a file whose checksum it has applied). Delete the HelmChart (helm-controller uninstalls what
 * is left of the release), wait until it is gone, and apply it again.
 */
async function reapplyHelmChart(kube: PopKube, manifest: string, timeoutMs: number): Promise<void> {
  const obj = parse(manifest) as ApplyObject;
  const ref = {
    group: 'helm.cattle.io',
    version: 'v1',
    namespace: FSM_HELMCHART_NAMESPACE,
    plural: 'helmcharts',
    name: FSM_HELMCHART_NAME,
  };
  try {
    await kube.custom.deleteNamespacedCustomObject(ref);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  await pollUntil(
    `HelmChart ${FSM_HELMCHART_NAMESPACE}/${FSM_HELMCHART_NAME} deleted`,
    async () => {
      try {
        await kube.custom.getNamespacedCustomObject(ref);
        return { done: false, state: 'helm-controller is uninstalling the release' };
      } catch (e) {
        if (isNotFound(e)) return { done: true };
        throw e;
      }
    },
    { timeoutMs, intervalMs: 2000 },
  );
  await applyObject(kube.kc, obj);
}

const firstLine = (e: unknown) => (errorText(e).split('\n')[0] ?? '').slice(0, 300);

/**
 * The upgrade of FSM failed: write the previous HelmChart back (mesh-rollback.ts), wait for its Job and the
 * deployments, and fail the site saying which chart runs. Always throws.
 */
async function rollBackFsm(ctx: InstallContext, host: Host, plan: MeshPlan, ranSha: string, cause: unknown): Promise<never> {
  const to = plan.chart.version || plan.chartFile;
  const reason = firstLine(cause);
  let chartVersion: string;
  try {
    const back = fsmRollbackPlan(await host.readFile(POP_PREVIOUS_FSM_MANIFEST, { sudo: true }), ranSha);
    chartVersion = back.chartVersion;
    const jobUid = await readJobUid(await popKubeOf(ctx, host));
    await writeFsmRollback(host, back);
    await waitForMesh(ctx, host, plan, jobUid, back.chartUrl);
  } catch (e2) {
    throw new FsmEdgeError(
      'failed',
      `FSM upgrade to chart ${to} failed (${reason}); going back to the previous chart failed too (${firstLine(e2)})`,
      {
        fix: RECOVER_FIX,
      },
    );
  }
  throw new FsmEdgeError('failed', `FSM upgrade to chart ${to} failed (${reason}); rolled back to chart ${chartVersion}, running`, {
    fix: 'correct the cause above (the helm Job’s log on the POP: `k3s kubectl -n kube-system logs job/helm-install-fsm`), then run again',
  });
}

export const meshPhase = definePhase<InstallContext, MeshPlan, MeshLive>({
  id: 'mesh',
  title: 'deploy FSM',
  probe: (ctx) => meshProbe(fsmNamespace(ctx)),
  // Rendering is cheap; compiling the chart's values schema costs seconds, so it waits until a change needs it.
  prepare: (ctx) => meshPlan(ctx, { validate: false }),
  inputs: (ctx, plan) => ({ bundle: bundleOf(ctx).digest, manifest: sha256(plan.manifest) }),
  async check(ctx, plan, env) {
    const live = parseMeshProbe(env.probe, plan.deployments);
    // Only when something is wrong is the release itself read (through the API: a round trip the healthy path
    // does not pay): a failed release is sticky (failurePolicy abort) and must be uninstalled before FSM can be
    // installed again.
    if (live.api && live.helmChart && (live.problems.length || live.helmChartFailed)) {
      live.release = await inspectFsmRelease(await popKubeOf(ctx, env.host), fsmNamespace(ctx), FSM_HELMCHART_NAME);
    }
    return live;
  },
  healthy: (live) => live.problems.length === 0,
  plan(ctx, plan, live, env) {
    const changes: PlannedChange[] = [];
    const mode = plan.values.trafficInterceptionMode;
    // A healthy FSM whose manifest changes (a new chart or values): an upgrade, which goes back if it fails.
    const upgrade = live.api && live.helmChart && !live.helmChartFailed && live.problems.length === 0 ? live.manifestSha : undefined;
    const write = change(
      `write HelmChart ${FSM_HELMCHART_NAMESPACE}/${FSM_HELMCHART_NAME} (${plan.chartFile}, ${mode}) to ${FSM_MANIFEST_PATH}`,
      async () => {
        await plan.validate();
        if (upgrade && !live.release) {
          // The manifest and chart that run now, kept for the way back (already kept if the k3s phase assembled).
          await env.host.run(keepFsmScript(), { sudo: true, timeoutMs: 30_000 });
          live.upgradingFrom = upgrade;
        }
        if (live.helmChart && !live.recovered) live.previousJobUid = await readJobUid(await popKubeOf(ctx, env.host));
        // A fresh mtime: k3s's deploy controller ignores manifests with mtime 0 (k3s#14568).
        await env.host.writeFile(FSM_MANIFEST_PATH, plan.manifest, { sudo: true, mode: 0o600 });
      },
    );
    if (live.release?.state === 'failed') {
      changes.push(
        change(`uninstall the failed FSM release (${live.release.reason ?? 'failed'}) so it can be installed again`, async () => {
          live.recovered = await recoverFailedRelease(await popKubeOf(ctx, env.host), env.host, {
            manifestPath: FSM_MANIFEST_PATH,
            helmChartName: FSM_HELMCHART_NAME,
            targetNamespace: fsmNamespace(ctx),
            timeoutMs: ctx.options.meshTimeoutMs,
            readLog: hostHelmLogReader(env.host),
          });
        }),
        // The recovery removed the manifest (and k3s's record of it): write it anew.
        write,
      );
    } else if (live.manifestSha !== sha256(plan.manifest)) {
      changes.push(write);
    } else if (live.api && !live.helmChart) {
      changes.push(
        change(
          `apply HelmChart ${FSM_HELMCHART_NAMESPACE}/${FSM_HELMCHART_NAME} again (it was deleted; FSM: ${live.problems.join(', ')})`,
          async () => {
            await reapplyHelmChart(await popKubeOf(ctx, env.host), plan.manifest, ctx.options.meshTimeoutMs);
          },
        ),
      );
    } else if (live.api && live.release?.state === 'deployed' && live.problems.some((p) => p.endsWith('missing'))) {
      changes.push(
        change(`reinstall FSM through its HelmChart (FSM on the POP: ${live.problems.join(', ')})`, async () => {
          const kube = await popKubeOf(ctx, env.host);
          live.previousJobUid = await readJobUid(kube);
          await reapplyHelmChart(kube, plan.manifest, ctx.options.meshTimeoutMs);
        }),
      );
    }
    return changes;
  },
  describe: (ctx, plan, live, changes, dryRun) => ({
    summary:
      dryRun && changes.length
        ? `would deploy FSM ${bundleOf(ctx).doc.versions.fsm} (${plan.values.trafficInterceptionMode})`
        : `FSM ${bundleOf(ctx).doc.versions.fsm} unchanged (${plan.values.trafficInterceptionMode}); ${plan.deployments.length - live.problems.length} of ${plan.deployments.length} deployments ready`,
    warnings: plan.values.warnings,
  }),
  async settle(ctx, plan, live, env, applied) {
    const t0 = Date.now();
    try {
      await waitForMesh(ctx, env.host, plan, live.previousJobUid);
    } catch (e) {
      if (!live.upgradingFrom) throw e;
      await rollBackFsm(ctx, env.host, plan, live.upgradingFrom, e);
    }
    ctx.installed.fsm = bundleOf(ctx).doc.versions.fsm;
    ctx.metrics.meshSeconds = (Date.now() - t0) / 1000;
    const mode = plan.values.trafficInterceptionMode;
    return {
      summary:
        `FSM ${bundleOf(ctx).doc.versions.fsm} ${applied.length ? 'deployed' : 'unchanged'} (${mode}); ${plan.deployments.length} deployments ready` +
        (live.recovered?.length ? `; before that: ${live.recovered.join(', ')}` : ''),
      warnings: plan.values.warnings,
    };
  },
});
