// Past one controller, on two amd64 lab POPs: two `rollout --shard i/2` processes at once (as the pods of the
// emitted Job run), each installing only its share, each writing its own report; `report merge` joins them;
// then `status --refresh` reads both POP journals, and shows a POP whose link is cut as unreachable.
// Run under the lab lock: flock /tmp/fsm-edge-lab.lock npx vitest run --project lab test/rollout/shards.lab.test.ts

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { shardOf } from '../../src/rollout/shard.js';
import { spawnCli } from '../cli/run-cli.js';
import { type Harness, siteDoc, startHarness } from '../install/harness.js';
import { cutLink, restoreLink } from '../lab/link.js';

let h: Harness;
let fleet: string;
let names: string[];

function cli(args: string[]) {
  const env = { ...process.env, FSM_EDGE_STATE_DIR: h.stateDir, NO_COLOR: '1', FSM_EDGE_K3S_TIMEOUT: '300', FSM_EDGE_MESH_TIMEOUT: '300' };
  return spawnCli(args, { env }).done;
}

/** The first candidate name of each shard of 2, so the two POPs land in different shards. */
function oneNamePerShard(): string[] {
  const pick = (i: number) => Array.from({ length: 50 }, (_, k) => `edge-${k}`).find((n) => shardOf(n, 2) === i)!;
  return [pick(0), pick(1)];
}

beforeAll(async () => {
  h = await startHarness({ arches: ['amd64', 'amd64'] });
  names = oneNamePerShard();
  const sites = h.pops.map((p, i) => ({ metadata: { name: names[i]! }, spec: siteDoc(p, { hub: false }).spec }));
  const doc = {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Fleet',
    metadata: { name: 'lab-shards' },
    spec: { sites, rollout: { parallel: 1, canary: 1, maxFailures: 0 } },
  };
  fleet = path.join(h.dir, 'fleet.yaml');
  fs.writeFileSync(fleet, stringify(doc));
}, 900_000);

afterAll(async () => {
  await h?.stop();
}, 120_000);

describe('a sharded rollout on two lab POPs', () => {
  it('two shard processes install disjoint sites; one merged report; status --refresh asks the POPs', async () => {
    const base = ['rollout', fleet, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile];
    const runs = await Promise.all([0, 1].map((i) => cli([...base, '--shard', `${i}/2`])));
    for (const [i, r] of runs.entries()) {
      fs.writeFileSync(path.join('/tmp', `fsm-edge-shard-${i}.stderr.txt`), r.stderr); // the README's sample
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`${names[i]}: `);
      expect(r.stderr).not.toContain(`${names[1 - i]}: `);
      expect(r.stderr).not.toContain('\x1b');
    }
    const dirs = fs
      .readdirSync(path.join(h.stateDir, 'rollouts'))
      .filter((d) => /-s[01]of2$/.test(d))
      .map((d) => path.join(h.stateDir, 'rollouts', d));
    expect(dirs).toHaveLength(2);
    const out = path.join(h.dir, 'merged');
    const m = await cli(['report', 'merge', '--out', out, ...dirs]);
    expect(m.code, m.stderr).toBe(0);
    const merged = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as {
      ok: boolean;
      waves: Array<{ sites: Array<{ site: string; status: string }> }>;
    };
    expect(merged.ok).toBe(true);
    expect(merged.waves.flatMap((w) => w.sites.map((s) => [s.site, s.status])).sort()).toEqual(names.map((n) => [n, 'ok']).sort());

    const fresh = await cli(['status', fleet, '--refresh', '--json']);
    expect(fresh.code, fresh.stderr).toBe(0);
    const pops = (JSON.parse(fresh.stdout) as { sites: Array<{ name: string; pop: { reachable: boolean; bundle?: { digest: string } } }> })
      .sites;
    expect(pops.map((s) => [s.name, s.pop.reachable])).toEqual(names.map((n) => [n, true]));
    expect(pops[0]!.pop.bundle?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(pops[1]!.pop.bundle?.digest).toBe(pops[0]!.pop.bundle?.digest);

    await cutLink(h.pops[1]!);
    try {
      const cut = await cli(['status', fleet, '--refresh']);
      fs.writeFileSync('/tmp/fsm-edge-status-refresh.txt', cut.stdout);
      expect(cut.code).toBe(1);
      expect(cut.stdout).toMatch(new RegExp(`${names[1]}.*unreachable \\(`));
      expect(cut.stdout).toMatch(new RegExp(`${names[0]}.*install done`));
    } finally {
      await restoreLink(h.pops[1]!);
    }
  }, 1_800_000);
});
