// The install on an arm64 POP (qemu-user emulated, systemd): a full install reaches Managed=True on the hub and
// an immediate re-run changes nothing. Slow by nature (every POP-side process is emulated), so only the core
// path runs here; the fault cases run on amd64 (install.lab.test.ts).

import { spawnCli } from '../cli/run-cli.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { popExec } from '../lab/pop.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
let site: string;

function cli(args: string[]) {
  return spawnCli(args, { env: { ...process.env, FSM_EDGE_STATE_DIR: h.stateDir, NO_COLOR: '1' } }).done;
}

beforeAll(async () => {
  h = await startHarness({ arches: ['arm64'], hub: true, hubPort: 6663, hubForwardHost: '127.0.0.5' });
  site = h.writeSite(h.pops[0]!);
}, 600_000);

afterAll(async () => {
  await h?.stop();
}, 120_000);

describe('install on an arm64 lab POP', () => {
  it('reaches Managed=True, then an immediate re-run changes nothing', async () => {
    const args = ['install', site, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile, '--json'];
    const first = await cli(args);
    expect(first.code, first.stderr).toBe(0);
    const rep = JSON.parse(first.stdout).sites[0];
    expect(rep.record).toMatchObject({ arch: 'arm64', registration: { state: 'managed' } });
    // Issue 10's bounds, counted by the transport: a fresh install in at most 15 round trips (the blob
    // transfer's own streams excluded), a re-run in at most 3.
    const syncTrips = rep.phases.find((p: { id: string }) => p.id === 'sync').metrics.syncRoundTrips ?? 0;
    expect(
      rep.roundTrips - syncTrips,
      JSON.stringify(rep.phases.map((p: { id: string; status: string }) => [p.id, p.status])),
    ).toBeLessThanOrEqual(15);
    const mc = await popExec(
      h.pops[0]!,
      "k3s kubectl -n fsm-system get meshconfig fsm-mesh-config -o jsonpath='{.spec.clusterSet.isManaged}'",
    );
    expect(typeof mc === 'string' ? mc : (mc as { stdout: string }).stdout).toBe('true');

    const again = await cli(args);
    expect(again.code, again.stderr).toBe(0);
    const rep2 = JSON.parse(again.stdout).sites[0];
    expect(rep2.phases.map((p: { status: string }) => p.status)).toEqual(Array(rep2.phases.length).fill('unchanged'));
    expect(rep2.phases.find((p: { id: string }) => p.id === 'sync').summary).toMatch(/0 sent/);
    expect(rep2.roundTrips).toBeLessThanOrEqual(3);
  }, 1_200_000);
});
