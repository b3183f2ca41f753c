// A failed FSM release on a lab POP, the way k3s's helm-controller leaves it with `failurePolicy: abort`: the
// first install stops at once with helm's own error, the cause is removed, and a plain re-run uninstalls the
// sticky release through k3s, installs FSM again and says so. The failure is injected into the k3s stand-in's
// helm (`helm-apply` fault: the API refuses an object after helm stored the release), from a manifest placed on
// the POP before the install so it is there when k3s first runs the HelmChart.

import { spawnCli } from '../cli/run-cli.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { popExec } from '../lab/pop.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
let site: string;
const FAULT = 'admission webhook "lab.fault" denied the request: ConfigMap preset-mesh-config refused';

function cli(args: string[]) {
  return spawnCli(args, {
    env: { ...process.env, FSM_EDGE_STATE_DIR: h.stateDir, NO_COLOR: '1', FSM_EDGE_MESH_TIMEOUT: '240', FSM_EDGE_K3S_TIMEOUT: '180' },
  }).done;
}

async function pop(cmd: string): Promise<string> {
  const r = await popExec(h.pops[0]!, cmd, { allowFail: true });
  return typeof r === 'string' ? r : (r as { stdout: string }).stdout;
}

const installArgs = () => ['install', site, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile];

beforeAll(async () => {
  h = await startHarness({ arches: ['amd64'], hub: false });
  site = h.writeSite(h.pops[0]!, { hub: false, interception: 'iptables' });
  const faults = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'lab-apiserver-faults', namespace: 'kube-system' },
    data: { 'helm-apply': FAULT },
  };
  await pop(
    `mkdir -p /var/lib/rancher/k3s/server/manifests && cat > /var/lib/rancher/k3s/server/manifests/lab-faults.yaml <<'EOF'\n${stringify(faults)}EOF`,
  );
}, 600_000);

afterAll(async () => {
  await h?.stop();
}, 120_000);

describe('a failed FSM release (failurePolicy abort)', () => {
  it(
    "stops the install with helm's error, and a plain re-run after the fix uninstalls the sticky release and installs FSM",
    async () => {
      const t0 = Date.now();
      const first = await cli(installArgs());
      expect(first.code, first.stdout + first.stderr).not.toBe(0);
      const out1 = first.stdout + first.stderr;
      expect(out1).toContain(FAULT);
      expect(out1).not.toMatch(/timed out after/);
      expect(Date.now() - t0).toBeLessThan(15 * 60_000);
      expect(await pop('k3s kubectl -n fsm-system get secret -l owner=helm,name=fsm,status=failed -o name'), out1).toMatch(
        /sh\.helm\.release\.v1\.fsm\.v1/,
      );

      // the cause goes away; k3s alone would keep "waiting for operator intervention"
      await pop(
        'rm -f /var/lib/rancher/k3s/server/manifests/lab-faults.yaml; k3s kubectl -n kube-system delete configmap lab-apiserver-faults',
      );
      const second = await cli(installArgs());
      const out2 = second.stdout + second.stderr;
      expect(second.code, out2).toBe(0);
      expect(out2).toMatch(/uninstall(ed)? the failed FSM release|helm-controller uninstalled release fsm/);
      expect(await pop('k3s kubectl -n fsm-system get secret -l owner=helm,name=fsm,status=deployed -o name')).toMatch(
        /sh\.helm\.release\.v1\.fsm\.v1/,
      );
    },
    30 * 60_000,
  );
});
