// The HelmChart k3s's helm-controller installs FSM from: chart served by the POP's own API server from
// `server/static/charts` (no repo, no internet), `failurePolicy: abort` so a broken install stops with a
// `Failed` condition instead of uninstall/reinstall loops, and our own timeout.

import { stringify } from 'yaml';
import { validateHelmChart } from '../../kube/crd-schema.js';

export const FSM_HELMCHART_NAME = 'fsm';
export const FSM_HELMCHART_NAMESPACE = 'kube-system';

export function fsmChartFileName(chartVersion: string): string {
  return `fsm-${chartVersion.replace(/^v/, '')}.tgz`;
}

export interface HelmChartInput {
  chartVersion: string;
  /** File name in server/static/charts; default `fsm-<chartVersion>.tgz`. */
  chartFile?: string;
  targetNamespace: string;
  values: Record<string, unknown>;
  /** Helm `--timeout`, e.g. `600s`. */
  timeout: string;
}

export interface HelmChartObject {
  apiVersion: 'helm.cattle.io/v1';
  kind: 'HelmChart';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: Record<string, unknown>;
}

export function buildFsmHelmChart(input: HelmChartInput): HelmChartObject {
  const obj: HelmChartObject = {
    apiVersion: 'helm.cattle.io/v1',
    kind: 'HelmChart',
    metadata: {
      name: FSM_HELMCHART_NAME,
      namespace: FSM_HELMCHART_NAMESPACE,
      labels: { 'app.kubernetes.io/managed-by': 'fsm-edge' },
    },
    spec: {
      chart: `https://%{KUBERNETES_API}%/static/charts/${input.chartFile ?? fsmChartFileName(input.chartVersion)}`,
      targetNamespace: input.targetNamespace,
      createNamespace: true,
      failurePolicy: 'abort',
      timeout: input.timeout,
      // A bad chart must not retry ~forever (default 1000): fail, show why, let the operator re-run.
      backOffLimit: 2,
      valuesContent: stringify(input.values),
    },
  };
  validateHelmChart(obj);
  return obj;
}

/** The manifest file k3s's deploy controller applies (`server/manifests/fsm-edge-fsm.yaml`). */
export function renderHelmChartManifest(obj: HelmChartObject): string {
  return '# Written by fsm-edge; edits are overwritten on the next install.\n' + stringify(obj);
}
