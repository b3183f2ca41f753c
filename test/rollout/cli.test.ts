// `fsm-edge rollout` and `fsm-edge status` at the CLI (in-process, from source): the checks made before any POP
// is contacted, and status listing every site this controller has a record for.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rolloutId, writeRolloutState } from '../../src/rollout/state.js';
import { recordPath } from '../../src/state/paths.js';
import { runMain } from '../cli/run-cli.js';
import { DIGEST } from './fake-fleet.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'rollout-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const KEY = 'SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA';
function fleetFile(rollout: string): string {
  const file = path.join(tmp, `fleet-${Math.random().toString(16).slice(2)}.yaml`);
  writeFileSync(
    file,
    `apiVersion: edge.flomesh.io/v1alpha1
kind: Fleet
metadata: { name: edge }
spec:
  defaults:
    ssh: { user: root, agent: true, hostKeys: ["${KEY}"] }
  sites:
    - metadata: { name: pop1, labels: { tier: canary } }
      spec: { ssh: { host: 127.0.0.91 } }
    - metadata: { name: pop2 }
      spec: { ssh: { host: 127.0.0.92 } }
  rollout:
${rollout}
`,
  );
  return file;
}
const env = (state: string) => ({ PATH: process.env.PATH, HOME: tmp, FSM_EDGE_STATE_DIR: state });

// The first in-process CLI run imports the whole CLI: slow on a loaded machine.
describe('fsm-edge rollout (before any POP is contacted)', { timeout: 60_000 }, () => {
  it('needs a trust key (exit 2)', async () => {
    const r = await runMain(['rollout', fleetFile('    parallel: 2'), '--bundle', tmp], { env: env(tmp) });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no --trust-key given/);
  });

  it('refuses a canary selector that selects no site (exit 2) before opening the bundle', async () => {
    const r = await runMain(
      ['rollout', fleetFile('    canary: { matchLabels: { tier: canry } }'), '--bundle', tmp, '--trust-key', 'k.pub'],
      { env: env(tmp) },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/rollout.canary selects no site \(matchLabels tier=canry\)/);
  });

  it('refuses a bundle that does not verify, saying nothing was sent (exit 1)', async () => {
    const r = await runMain(
      ['rollout', fleetFile('    canary: 1'), '--bundle', path.join(tmp, 'no-bundle'), '--trust-key', path.join(tmp, 'k.pub'), '--json'],
      {
        env: env(tmp),
      },
    );
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { ok: boolean; error: { kind: string; message: string; hint: string } };
    expect(doc).toMatchObject({ ok: false, error: { kind: 'refused' } });
    expect(doc.error.hint).toMatch(/nothing was sent/);
  });
});

describe('fsm-edge status without config files', () => {
  it('lists every site the controller has a record for, with the last rollout it took part in', async () => {
    const state = path.join(tmp, 'state');
    for (const site of ['pop-a', 'pop-b']) {
      mkdirSync(path.dirname(recordPath(state, site)), { recursive: true });
      const rec = {
        version: 1,
        site,
        updatedAt: '2026-11-29T07:00:00.000Z',
        host: { address: '10.0.0.1', port: 22, user: 'root', hostKeys: [] },
        arch: 'amd64',
        versions: { k3s: 'v1.33.1+k3s1', fsm: '1.5.1' },
        modes: { datastore: 'sqlite', profile: 'edge-small', ingress: false, multicluster: false },
        registration: { state: 'managed' },
        escrowed: [],
        history: [],
      };
      writeFileSync(recordPath(state, site), JSON.stringify(rec));
    }
    const id = rolloutId('edge', DIGEST);
    const outcome = { site: 'pop-a', wave: 'canary', status: 'ok', durationMs: 1, bytesSent: 0, roundTrips: 1, phases: [] };
    writeRolloutState(state, {
      version: 1,
      fleet: 'edge',
      id,
      bundleDigest: DIGEST,
      startedAt: 'x',
      updatedAt: 'x',
      sites: { 'pop-a': outcome as never },
    });

    const r = await runMain(['status', '--json'], { env: env(state) });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { sites: Array<{ name: string; arch: string; lastRollout?: { id: string; status: string } }> };
    expect(doc.sites.map((s) => [s.name, s.arch, s.lastRollout?.status ?? null])).toEqual([
      ['pop-a', 'amd64', 'ok'],
      ['pop-b', 'amd64', null],
    ]);
    const table = await runMain(['status'], { env: env(state) });
    expect(table.stdout).toMatch(/LAST ROLLOUT/);
    expect(table.stdout).toMatch(new RegExp(`pop-a .* ${id} ok`));
  });
});
