// The FSM way back after a failed upgrade: the kept HelmChart is written again serving the kept chart under its
// own name with klipper-helm's `retry` policy (which upgrades over a failed release), and only when the kept copy
// is the manifest that ran before this upgrade; nothing from the kept file reaches a path or a command unchecked.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { FSM_MANIFEST_PATH } from '../../src/engine/pop-layout.js';
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
