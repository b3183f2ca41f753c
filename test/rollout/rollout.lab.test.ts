// `fsm-edge rollout` on six lab POPs — an arm64 canary and five amd64 sites in one wave at concurrency 2 — and a
// private lab hub, with failure budget 1 (`maxFailures: 1`: one failed site is tolerated, the second spends the
// budget). The POPs are installed once; the scenarios follow each other on them:
//   (a) the canary's link cut: the rollout stops before wave 1, no amd64 POP is touched;
//   (b) the canary restored, two wave-1 links cut: the canary installs, both cut sites are reported failed and no
//       site starts after the second failure (with 2 slots at most one other site can have started in between);
//   (c) links restored, the controller SIGKILLed mid-wave, then `--resume`: every site ends Managed, sites done
//       earlier are not contacted again, a site whose blobs had crossed before the kill sends 0 blobs;
//   (d) the controller's rollout state deleted, `--resume` re-derives it from the POP journals and redoes nothing.
// report.html of (b) and (d) is loaded in headless Chromium and holds every site.
// Run under the lab lock: flock /tmp/fsm-edge-lab.lock npx vitest run --project lab test/rollout/rollout.lab.test.ts

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cutLink, restoreLink } from '../lab/link.js';
import { K3S_BINARY } from '../../src/engine/pop-layout.js';
import { popExec } from '../lab/pop.js';
import type { PopInfo } from '../lab/types.js';
import { hubDoc, siteDoc, startHarness, type Harness } from '../install/harness.js';
import { spawnCli } from '../cli/run-cli.js';
import { dumpDom } from './chromium.js';

let h: Harness;
let fleet: string;
let canary: PopInfo;
/** Wave 1, in fleet order: the first two are the ones whose links (b) cuts. */
let wave: PopInfo[];
/** The controller's rollout state, as (b) left it. */
let stateFile: string;
const site = (p: PopInfo) => `site-${p.name}`;

interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI from source; `killWhen`: SIGKILL the whole process tree once stderr matches (a crashed controller). */
function cli(args: string[], killWhen?: RegExp): Promise<CliRun> {
  const env = {
    ...process.env,
    FSM_EDGE_STATE_DIR: h.stateDir,
    NO_COLOR: '1',
    FSM_EDGE_REGISTER_TIMEOUT: '120',
    FSM_EDGE_MESH_TIMEOUT: '300',
    FSM_EDGE_K3S_TIMEOUT: '300',
  };
  return spawnCli(args, {
    env,
    onStderr: (stderr, run) => {
      if (killWhen?.test(stderr)) {
        killWhen = undefined;
        run.kill();
      }
    },
  }).done;
}

const rollout = (extra: string[] = [], killWhen?: RegExp) =>
  cli(['rollout', fleet, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile, '--json', ...extra], killWhen);

async function journalRuns(pop: PopInfo): Promise<number> {
  const text = (await popExec(pop, 'cat /var/lib/fsm-edge/journal.json 2>/dev/null || true', { allowFail: true })).stdout;
  return text.trim() ? (JSON.parse(text) as { runs: unknown[] }).runs.length : 0;
}

/**
 * Waits until the POP's k3s answers the readiness probe install's facts phase uses (`k3s kubectl get --raw /readyz`
 * within 10 s). An emulated arm64 POP on a loaded machine can miss it for minutes after the sites beside it
 * installed; a dry run then plans a k3s restart, and the derivation rightly counts the site as not done.
 */
async function untilReady(pop: PopInfo, minutes = 10): Promise<void> {
  const deadline = Date.now() + minutes * 60_000;
  let last = '';
  while (Date.now() < deadline) {
    const r = await popExec(pop, `timeout 10 ${K3S_BINARY} kubectl get --raw /readyz 2>&1 | head -c 200`, { allowFail: true });
    if (r.stdout.trim() === 'ok') return;
    last = r.stdout.trim();
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  throw new Error(`${pop.name}: k3s not ready after ${minutes} min (last answer: ${last || 'none within 10 s'})`);
}

const allRuns = async () => Object.fromEntries(await Promise.all(h.pops.map(async (p) => [site(p), await journalRuns(p)] as const)));

interface SiteDoc {
  site: string;
  status: string;
  arch?: string;
  failure?: string;
  reason?: string;
  fix?: string;
  note?: string;
  doneEarlier?: boolean;
  registration?: string;
  startedAt?: string;
  phases: Array<{ id: string; summary: string }>;
}

interface Doc {
  ok: boolean;
  stoppedBy?: string;
  stopReason?: string;
  waves: Array<{ name: string; gate: string; sites: SiteDoc[] }>;
  files: { html: string; json: string; state: string };
}

const sitesOf = (doc: Doc) => new Map(doc.waves.flatMap((w) => w.sites.map((s) => [s.site, s] as const)));

/** Every site is a row of the report as Chromium renders it, with the status the JSON report gives it. */
async function expectReportRendersEverySite(doc: Doc): Promise<void> {
  const dom = await dumpDom(doc.files.html);
  for (const s of sitesOf(doc).values()) expect(dom).toMatch(new RegExp(`<tr data-site="${s.site}" data-status="${s.status}">`));
  expect(dom.match(/<tr data-site="/g)).toHaveLength(h.pops.length);
}

beforeAll(async () => {
  h = await startHarness({
    arches: ['arm64', 'amd64', 'amd64', 'amd64', 'amd64', 'amd64'],
    hub: true,
    hubPort: 6683,
    hubForwardHost: '127.0.0.8',
  });
  [canary, ...wave] = h.pops as [PopInfo, ...PopInfo[]];
  // The canary is listed last: a label selects it, not its place in the fleet.
  const sites = [...wave, canary].map((p) => {
    const d = siteDoc(p);
    return { metadata: { name: d.metadata.name, labels: { lab: 'true', ...(p === canary ? { tier: 'canary' } : {}) } }, spec: d.spec };
  });
  const doc = {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Fleet',
    metadata: { name: 'lab-fleet' },
    spec: { sites, rollout: { parallel: 2, canary: { matchLabels: { tier: 'canary' } }, maxFailures: 1 } },
  };
  fleet = path.join(h.dir, 'fleet.yaml');
  fs.writeFileSync(fleet, [stringify(doc), stringify(hubDoc(h.hub!.kubeconfigPath))].join('---\n'));
}, 900_000);

afterAll(async () => {
  await h?.stop();
}, 120_000);

describe('rollout on six lab POPs (arm64 canary, five amd64 at concurrency 2, failure budget 1)', () => {
  it('(a) stops before wave 1 when the arm64 canary cannot be reached; no other POP is touched', async () => {
    await cutLink(canary);
    let r: CliRun;
    try {
      r = await rollout();
    } finally {
      await restoreLink(canary);
    }
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as Doc;
    expect(doc.stoppedBy).toBe('canary');
    expect(doc.waves.map((w) => [w.name, w.gate])).toEqual([
      ['canary', 'failed'],
      ['wave 1', 'not-reached'],
    ]);
    expect(doc.waves[0]!.sites).toHaveLength(1);
    expect(doc.waves[0]!.sites[0]).toMatchObject({ site: site(canary), status: 'failed' });
    expect(['unreachable', 'timeout']).toContain(doc.waves[0]!.sites[0]!.failure);
    expect(doc.waves[1]!.sites.map((s) => [s.site, s.status])).toEqual(wave.map((p) => [site(p), 'not-started']));
    expect(await allRuns()).toEqual(Object.fromEntries(h.pops.map((p) => [site(p), 0])));
    expect(r.stderr).toMatch(/to continue: fsm-edge rollout .* --resume/);
  }, 900_000);

  it('(b) two cut links in wave 1 spend the budget of 1: both are reported, no site starts after the second failure', async () => {
    const [cut1, cut2, maybe, ...never] = wave as [PopInfo, PopInfo, PopInfo, ...PopInfo[]];
    await Promise.all([cutLink(cut1), cutLink(cut2)]);
    let r: CliRun;
    try {
      r = await rollout(['--resume']);
    } finally {
      await Promise.all([restoreLink(cut1), restoreLink(cut2)]);
    }
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as Doc;
    expect(doc.stoppedBy).toBe('budget');
    expect(doc.stopReason).toMatch(/2 sites failed, more than the rollout's budget of 1/);
    expect(doc.waves.map((w) => [w.name, w.gate])).toEqual([
      ['canary', 'passed'],
      ['wave 1', 'failed'],
    ]);
    const sites = sitesOf(doc);
    expect(sites.get(site(canary))).toMatchObject({ status: 'ok', arch: 'arm64', registration: 'managed' });
    // Both failures are reported, each with its reason and the fix.
    for (const p of [cut1, cut2]) {
      const s = sites.get(site(p))!;
      expect(s.status).toBe('failed');
      expect(['unreachable', 'timeout']).toContain(s.failure);
      expect(s.reason).toBeTruthy();
      expect(s.fix).toMatch(/--resume/);
    }
    // Two slots: cut1 and cut2 start together; a third site may take the slot of the first failure, before the
    // second one spends the budget. Nothing after it: the rest are not started and their POPs untouched.
    const third = sites.get(site(maybe))!;
    expect(['ok', 'not-started']).toContain(third.status);
    for (const p of never) {
      expect(sites.get(site(p))).toMatchObject({ status: 'not-started', note: expect.stringMatching(/failure budget was spent/) });
    }
    const runs = await allRuns();
    for (const p of third.status === 'ok' ? never : [maybe, ...never]) expect(runs[site(p)]).toBe(0);
    expect(r.stderr).toMatch(/rollout stopped/);
    stateFile = doc.files.state;
    await expectReportRendersEverySite(doc);
  }, 1_800_000);

  it('(c) SIGKILL mid-wave, then --resume: every site ends Managed, none done earlier is redone, no blob crosses twice', async () => {
    const before = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { sites: Record<string, { status: string }> };
    const done = Object.values(before.sites).filter((s) => s.status === 'ok').length;
    expect(done).toBeGreaterThanOrEqual(1);
    const first = wave[0]!;
    // Killed once the first wave-1 site to run has all its blobs on the POP; the other slot is in flight too.
    const killed = await rollout(['--resume'], new RegExp(`${site(first)}: \\S+ sync `));
    expect(killed.signal ?? killed.code).not.toBe(0);
    const runsAfterKill = await allRuns();
    const synced = h.pops.map(site).filter((s) => new RegExp(`${s}: \\S+ sync `).test(killed.stderr));
    expect(synced).toContain(site(first));

    const r = await rollout(['--resume']);
    expect(r.stderr).not.toMatch(/rollout stopped/);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as Doc;
    expect(doc.ok).toBe(true);
    const sites = sitesOf(doc);
    expect([...sites.values()].map((s) => [s.site, s.status, s.registration])).toEqual([...sites.keys()].map((s) => [s, 'ok', 'managed']));
    expect(sites.size).toBe(6);
    for (const s of sites.values()) {
      if (s.doneEarlier) {
        // Not contacted again: its POP journal has no new run.
        expect(runsAfterKill[s.site]).toBeGreaterThan(0);
        expect(await journalRuns(h.pops.find((p) => site(p) === s.site)!)).toBe(runsAfterKill[s.site]);
      } else if (synced.includes(s.site)) {
        // In flight at the kill with its blobs already sent: continues from its POP journal, sends none again.
        expect(s.phases.find((p) => p.id === 'sync')!.summary).toMatch(/already on the POP.*0 sent/);
      }
    }
    expect([...sites.values()].filter((s) => s.doneEarlier).length).toBeGreaterThanOrEqual(done);
    const status = await cli(['status', '--json']);
    const known = (JSON.parse(status.stdout) as { sites: Array<{ name: string; lastRollout?: { status: string } }> }).sites;
    expect(known.map((s) => [s.name, s.lastRollout?.status]).sort()).toEqual(h.pops.map((p) => [site(p), 'ok']).sort());
  }, 1_800_000);

  it('(d) with the rollout state deleted, --resume re-derives from the POP journals and redoes no site', async () => {
    for (const p of h.pops) await untilReady(p);
    const runs = await allRuns();
    fs.rmSync(path.join(h.stateDir, 'rollouts'), { recursive: true, force: true });
    const r = await rollout(['--resume']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/POP journals show 6 site\(s\) already on this bundle/);
    const doc = JSON.parse(r.stdout) as Doc;
    expect([...sitesOf(doc).values()].map((s) => [s.site, s.status, s.doneEarlier])).toEqual(
      [...sitesOf(doc).keys()].map((s) => [s, 'ok', true]),
    );
    // The derivation was a dry run: no POP's journal gained a run.
    expect(await allRuns()).toEqual(runs);
    await expectReportRendersEverySite(doc);
  }, 900_000);
});
