// The FSM way back after a failed upgrade: the kept HelmChart is written again serving the kept chart under its
// own name with klipper-helm's `retry` policy (which upgrades over a failed release), and only when the kept copy
// is the manifest that ran before this upgrade; nothing from the kept file reaches a path or a command unchecked.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { BundleDoc } from '../../src/bundle/format.js';
import { FSM_MANIFEST_PATH } from '../../src/engine/pop-layout.js';
import { applyChanges } from '../../src/engine/runner.js';
import { DEFAULT_TIMEOUTS, type InstallContext } from '../../src/install/context.js';
import { keepFsmScript } from '../../src/install/k3s-upgrade.js';
import { type MeshPlan, meshPhase } from '../../src/install/mesh.js';
import { fsmRollbackPlan, writeFsmRollback } from '../../src/install/mesh-rollback.js';
import { buildFsmHelmChart, renderHelmChartManifest } from '../../src/install/render/helm-chart.js';
import { RecordingHost } from '../engine/recording-host.js';

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const kept = (chartFile: string) =>
  renderHelmChartManifest(
    buildFsmHelmChart({ chartVersion: '1.5.1', chartFile, targetNamespace: 'fsm-system', values: { fsm: {} }, timeout: '600s' }),
  );

describe('fsmRollbackPlan', () => {
  it('serves the kept chart as previous-<file> with failurePolicy retry, values unchanged', () => {
    const text = kept('fsm-1.5.1.tgz');
    const p = fsmRollbackPlan(Buffer.from(text), sha(text));
    expect([p.keptChart, p.servedAs, p.chartVersion]).toEqual(['fsm-1.5.1.tgz', 'previous-fsm-1.5.1.tgz', '1.5.1']);
    const obj = parse(p.manifest) as { spec: Record<string, unknown> };
    const was = parse(text) as { spec: Record<string, unknown> };
    expect(obj.spec.chart).toBe('https://%{KUBERNETES_API}%/static/charts/previous-fsm-1.5.1.tgz');
    expect(obj.spec.failurePolicy).toBe('retry');
    expect(obj.spec.valuesContent).toBe(was.spec.valuesContent);
    // a second way back from a way-back manifest does not grow the name
    expect(fsmRollbackPlan(Buffer.from(p.manifest), sha(p.manifest)).servedAs).toBe('previous-fsm-1.5.1.tgz');
  });

  it('refuses a kept copy that is not the manifest that ran, or that names no chart of ours', () => {
    const text = kept('fsm-1.5.1.tgz');
    expect(() => fsmRollbackPlan(undefined, sha(text))).toThrow(/no previous FSM manifest was kept/);
    expect(() => fsmRollbackPlan(Buffer.from(text), sha('other'))).toThrow(/not the one that ran/);
    const evil = text.replace('static/charts/fsm-1.5.1.tgz', 'static/charts/../../../etc/x.tgz');
    expect(() => fsmRollbackPlan(Buffer.from(evil), sha(evil))).toThrow(/names no chart/);
    const other = text.replace('name: fsm\n', 'name: other\n');
    expect(() => fsmRollbackPlan(Buffer.from(other), sha(other))).toThrow(/is not HelmChart kube-system\/fsm/);
  });

  it('writes the chart copy (renamed into place) before the manifest', async () => {
    const text = kept('fsm-1.5.1.tgz');
    const host = new RecordingHost();
    await writeFsmRollback(host, fsmRollbackPlan(Buffer.from(text), sha(text)));
    expect(host.calls.map((c) => c.kind)).toEqual(['exec', 'write']);
    expect(host.calls[0]!.command).toContain(
      'mv -f /var/lib/rancher/k3s/server/static/charts/previous-fsm-1.5.1.tgz.tmp /var/lib/rancher/k3s/server/static/charts/previous-fsm-1.5.1.tgz',
    );
    expect(host.calls[1]!.path).toBe(FSM_MANIFEST_PATH);
  });
});

function meshPrep(): MeshPlan {
  return {
    validate: async () => {},
    chart: { name: 'fsm', version: '1.5.2' },
    chartFile: 'fsm-1.5.2.tgz',
    values: { values: {}, warnings: [], trafficInterceptionMode: 'NodeLevel' },
    manifest: kept('fsm-1.5.2.tgz'),
    deployments: ['fsm-bootstrap', 'fsm-controller', 'fsm-injector'],
  } as unknown as MeshPlan;
}

function context(): InstallContext {
  const doc = { name: 'v2', versions: { fsm: '1.5.1' }, arches: {} } as unknown as BundleDoc;
  return {
    site: { metadata: { name: 'pop1' }, spec: {} } as unknown as InstallContext['site'],
    configDir: '/tmp',
    bundle: { dir: '/nonexistent', doc, digest: 'sha256:x', signer: 'k', verifyArch: async () => {} },
    options: { ...DEFAULT_TIMEOUTS, dryRun: false },
    // The POP's API as far as the write needs it: the helm Job of the running release.
    popKube: {
      batch: { readNamespacedJob: async () => ({ metadata: { uid: 'job-1' } }) },
      core: {
        listNamespacedSecret: async () => ({
          items: [{ type: 'helm.sh/release.v1', metadata: { labels: { version: '1', status: 'deployed' } }, data: {} }],
        }),
        listNamespacedPod: async () => ({ items: [] }),
      },
      close: async () => {},
    } as never,
    metrics: {},
    installed: {},
  };
}

const fsmProbe = (manifestSha: string, helmChartFailed = false) =>
  `manifest ${manifestSha}\napi\ndeployment fsm-bootstrap 1/1\ndeployment fsm-controller 1/1\ndeployment fsm-injector 1/1\nhelmchart ${helmChartFailed ? 'True' : 'False'}`;

describe('the mesh phase over a running FSM', () => {
  async function apply(probe: string) {
    const ctx = context();
    const prep = meshPrep();
    const host = new RecordingHost();
    const env = { host, dryRun: false, signal: new AbortController().signal, probe };
    const live = await meshPhase.check(ctx, prep, env);
    const applied: string[] = [];
    await applyChanges(host, meshPhase.plan(ctx, prep, live, env), env.signal, applied);
    return { host, live, applied };
  }

  it('a new chart over a healthy FSM is an upgrade: the running manifest and chart are kept before the new one is written', async () => {
    const ran = kept('fsm-1.5.1.tgz');
    const { host, live, applied } = await apply(fsmProbe(sha(ran)));
    expect(applied).toHaveLength(1);
    expect(host.calls.map((c) => [c.kind, c.command ?? c.path])).toEqual([
      ['exec', keepFsmScript()],
      ['write', FSM_MANIFEST_PATH],
    ]);
    expect(live.upgradingFrom).toBe(sha(ran));
    expect(live.previousJobUid).toBe('job-1');
  });

  it('over an FSM that is not healthy it is no upgrade (nothing to go back to): nothing is kept', async () => {
    const { host, live } = await apply(fsmProbe(sha(kept('fsm-1.5.1.tgz')), true).replace('deployment fsm-injector 1/1\n', ''));
    expect(live.upgradingFrom).toBeUndefined();
    expect(host.calls.filter((c) => c.kind === 'exec')).toEqual([]);
  });
});
