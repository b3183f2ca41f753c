// Going back to the previous FSM chart after a failed upgrade. helm-controller has no rollback verb, and with our
// `failurePolicy: abort` a failed release is sticky; klipper-helm's `retry` policy (entry `helm_update`: "Upgrading
// <name> from failed state" → `helm upgrade`) upgrades over a failed release. So the way back is the previous
// HelmChart (kept before the upgrade, with the chart archive it names) written again with `failurePolicy: retry`:
// helm-controller sees a new spec (the chart URL differs from the failed one's, whatever the config hash covers),
// replaces the Job, and klipper upgrades the release to the previous chart — a new revision, as `helm rollback`
// would make. The kept chart is served under its own name (`previous-<file>`),
// so the new chart of the same file name stays in place for the next attempt.

import { createHash } from 'node:crypto';
import { parse } from 'yaml';
import { SAFE_NAME } from '../bundle/format.js';
import { FSM_MANIFEST_PATH, K3S_STATIC_CHARTS_DIR, POP_PREVIOUS_CHARTS_DIR, POP_PREVIOUS_FSM_MANIFEST } from '../engine/pop-layout.js';
import type { Host } from '../transport/host.js';
import { FSM_HELMCHART_NAME, FSM_HELMCHART_NAMESPACE, type HelmChartObject, renderHelmChartManifest } from './render/helm-chart.js';
import { validateHelmChart } from '../kube/crd-schema.js';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const CHART_URL = /^https:\/\/%\{KUBERNETES_API\}%\/static\/charts\/([A-Za-z0-9._+-]+\.tgz)$/;

export interface FsmRollbackPlan {
  /** The HelmChart manifest to write: the previous one, its chart renamed, `failurePolicy: retry`. */
  manifest: string;
  /** The kept chart archive (in the kept charts dir) and the name it is served under. */
  keptChart: string;
  servedAs: string;
  /** The HelmChart's `spec.chart` for it (the helm Job's `CHART`). */
  chartUrl: string;
  /** `1.5.1` from `fsm-1.5.1.tgz`, for the operator. */
  chartVersion: string;
}

/**
 * Pure: the way-back manifest from the kept previous one. `ranSha` is the sha256 of the manifest that ran before
 * this upgrade (the probe's): a kept copy of anything else is not the way back, and is refused.
 */
export function fsmRollbackPlan(kept: Buffer | undefined, ranSha: string | undefined): FsmRollbackPlan {
  if (!kept) throw new Error(`no previous FSM manifest was kept (${POP_PREVIOUS_FSM_MANIFEST})`);
  if (!ranSha || sha256(kept) !== ranSha) throw new Error('the kept FSM manifest is not the one that ran before this upgrade');
  const obj = parse(kept.toString('utf8')) as HelmChartObject;
  if (obj?.kind !== 'HelmChart' || obj.metadata?.name !== FSM_HELMCHART_NAME || obj.metadata?.namespace !== FSM_HELMCHART_NAMESPACE)
    throw new Error(`the kept manifest is not HelmChart ${FSM_HELMCHART_NAMESPACE}/${FSM_HELMCHART_NAME}`);
  const m = CHART_URL.exec(String(obj.spec?.chart ?? ''));
  if (!m || !SAFE_NAME.test(m[1]!) || m[1]!.includes('..')) throw new Error('the kept manifest names no chart in static/charts');
  const keptChart = m[1]!;
  const servedAs = `previous-${keptChart.replace(/^(previous-)+/, '')}`;
  const chartUrl = `https://%{KUBERNETES_API}%/static/charts/${servedAs}`;
  obj.spec = { ...obj.spec, chart: chartUrl, failurePolicy: 'retry' };
  validateHelmChart(obj);
  const chartVersion = /^(?:previous-)*fsm-(.+)\.tgz$/.exec(keptChart)?.[1] ?? keptChart;
  return { manifest: renderHelmChartManifest(obj), keptChart, servedAs, chartUrl, chartVersion };
}

/** Serves the kept chart under its way-back name, then writes the way-back manifest (k3s applies it). */
export async function writeFsmRollback(host: Host, p: FsmRollbackPlan): Promise<void> {
  for (const n of [p.keptChart, p.servedAs]) if (!SAFE_NAME.test(n)) throw new Error(`internal: chart file name ${n}`);
  const dest = `${K3S_STATIC_CHARTS_DIR}/${p.servedAs}`;
  await host.run(
    [
      'set -e',
      `[ -f ${POP_PREVIOUS_CHARTS_DIR}/${p.keptChart} ] || { echo "the kept chart ${POP_PREVIOUS_CHARTS_DIR}/${p.keptChart} is missing" >&2; exit 3; }`,
      `cp ${POP_PREVIOUS_CHARTS_DIR}/${p.keptChart} ${dest}.tmp`,
      `mv -f ${dest}.tmp ${dest}`,
    ].join('\n'),
    { sudo: true, timeoutMs: 30_000 },
  );
  await host.writeFile(FSM_MANIFEST_PATH, p.manifest, { sudo: true, mode: 0o600 });
}
