// A sharded rollout over the fake fleet: n shard runs at once (as the pods of the emitted Job run them), sharing
// one state directory, each writing its own state and report; their sites are disjoint and cover the fleet;
// `fsm-edge report merge` joins the reports into one report.json and report.html. First in this process, then
// as n OS processes (shard-process.ts; each builds its own fake POPs, which is what disjoint shares allow).

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RolloutSchema } from '../../src/config/fleet.js';
import { mergeReports } from '../../src/rollout/merge.js';
import { planRollout } from '../../src/rollout/plan.js';
import { writeRolloutReport } from '../../src/rollout/report.js';
import { type RolloutReport, runRollout } from '../../src/rollout/run.js';
import { inShard } from '../../src/rollout/shard.js';
import { rolloutReportDir, rolloutStatePath } from '../../src/rollout/state.js';
import { runMain, TSX } from '../cli/run-cli.js';
import { DIGEST, FakeFleet } from './fake-fleet.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'shards-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const N = 3;
const names = Array.from({ length: 10 }, (_, i) => `pop${i + 1}`);

async function shardRun(fleet: FakeFleet, index: number, root: string): Promise<{ report: RolloutReport; dir: string }> {
  const shard = { index, count: N };
  const targets = fleet.targets().filter((t) => inShard(t.site.metadata.name, shard));
  const plan = planRollout(
    targets.map((t) => ({ name: t.site.metadata.name })),
    RolloutSchema.parse({ canary: 1, waves: ['50%'], maxFailures: 1 }),
  );
  const report = await runRollout({
    fleet: 'edge',
    plan,
    targets,
    bundle: { name: 'test-bundle', digest: DIGEST },
    operation: fleet.operation,
    facts: fleet.facts,
    runOptions: {},
    stateDir: root,
    resume: false,
    shard,
  });
  const dir = rolloutReportDir(root, report.id);
  writeRolloutReport(dir, report);
  return { report, dir };
}

const sitesOf = (r: RolloutReport) => r.waves.flatMap((w) => w.sites.map((s) => s.site));

describe('a sharded rollout', { timeout: 60_000 }, () => {
  it('n shard runs take disjoint shares that cover the fleet; one merged report holds every site', async () => {
    const fleet = new FakeFleet(names);
    fleet.pop('pop7').fail = 'failed';
    const root = path.join(tmp, 'state');
    const runs = await Promise.all(Array.from({ length: N }, (_, i) => shardRun(fleet, i, root)));

    const shares = runs.map((r) => sitesOf(r.report));
    expect(shares.flat().sort()).toEqual([...names].sort());
    expect(new Set(shares.flat()).size).toBe(names.length);
    for (const n of names) expect(fleet.pop(n).installs, n).toBe(n === 'pop7' ? 0 : 1);
    // Each shard keeps its own state file and report (ids carry the shard).
    expect(new Set(runs.map((r) => r.report.id)).size).toBe(N);
    for (const r of runs) expect(existsSync(rolloutStatePath(root, r.report.id))).toBe(true);
    expect(runs.map((r) => r.report.id).sort()).toEqual(['edge-ab12ab12ab12-s0of3', 'edge-ab12ab12ab12-s1of3', 'edge-ab12ab12ab12-s2of3']);

    const out = path.join(tmp, 'merged');
    const m = await runMain(['report', 'merge', '--out', out, ...runs.map((r) => r.dir)], { env: { PATH: process.env.PATH } });
    expect(m.stderr).toBe('');
    expect(m.code).toBe(1); // pop7 failed
    expect(m.stdout).toMatch(/merged 3 shard report\(s\) of edge \(0\/3 \w+, 1\/3 \w+, 2\/3 \w+\): 9 ok, 1 failed/);
    const merged = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as RolloutReport;
    expect(sitesOf(merged).sort()).toEqual([...names].sort());
    expect(merged.shards?.map((s) => s.index)).toEqual([0, 1, 2]);
    expect(merged.counts).toMatchObject({ ok: 9, failed: 1 });
    expect(merged.waves.map((w) => w.name)).toEqual(['canary', 'wave 1', 'wave 2'].slice(0, merged.waves.length));
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    for (const n of names) expect(html).toContain(`data-site="${n}"`);
    expect(html).toContain('merged from 3 shard report(s)');
  });

  it('merge names a missing shard and refuses reports that are not one rollout’s shards', async () => {
    const fleet = new FakeFleet(names);
    const root = path.join(tmp, 'state2');
    const runs = await Promise.all([0, 1, 2].map((i) => shardRun(fleet, i, root)));
    const partial = mergeReports([runs[0]!.report, runs[2]!.report]);
    expect(partial.ok).toBe(false);
    expect(partial.warnings[0]).toMatch(/no report of shard\(s\) 1\/3/);
    expect(() => mergeReports([runs[0]!.report, runs[0]!.report])).toThrow(/two reports of shard 0\/3/);
    const other = { ...runs[1]!.report, bundle: { digest: `sha256:${'cd'.repeat(32)}` } };
    expect(() => mergeReports([runs[0]!.report, other])).toThrow(/not of edge with sha256:ab12/);
    const overlap = { ...runs[1]!.report, waves: [...runs[1]!.report.waves, ...runs[0]!.report.waves] };
    expect(() => mergeReports([runs[0]!.report, overlap])).toThrow(/is in shard 0 and shard 1/);
  });
});

/** One shard as its own OS process (shard-process.ts); resolves with what it printed. */
function shardProcess(index: number, root: string): Promise<{ installed: string[]; dir: string }> {
  const script = new URL('./shard-process.ts', import.meta.url).pathname;
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, [script, String(index), String(N), root, names.join(',')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`shard ${index} exited ${code}: ${err}`))));
  });
}

describe('sharded rollout in separate processes', { timeout: 120_000 }, () => {
  it('n shard processes sharing one state directory install disjoint sites covering the fleet; merge joins them', async () => {
    const root = path.join(tmp, 'procs');
    const runs = await Promise.all(Array.from({ length: N }, (_, i) => shardProcess(i, root)));
    const installed = runs.map((r) => r.installed);
    expect(installed.flat().sort()).toEqual([...names].sort());
    expect(new Set(installed.flat()).size).toBe(names.length);
    for (const share of installed) expect(share.length).toBeGreaterThan(0);
    const out = path.join(tmp, 'procs-merged');
    const m = await runMain(['report', 'merge', '--out', out, ...runs.map((r) => r.dir)], { env: { PATH: process.env.PATH } });
    expect(m.code, m.stderr).toBe(0);
    const merged = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as RolloutReport;
    expect(merged.ok).toBe(true);
    expect(sitesOf(merged).sort()).toEqual([...names].sort());
  });
});
