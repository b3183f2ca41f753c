// `fsm-edge rollout` on two amd64 lab POPs and a private lab hub: a canary whose link is cut stops the rollout
// before wave 1 (the other POP untouched); a controller SIGKILLed mid-wave, then `--resume`, converges both to
// Managed without redoing the finished site (the one in flight continues from its POP journal, 0 blobs re-sent);
// with the controller's rollout state deleted, `--resume` re-derives from the POP journals and installs nothing.
// Run under the lab lock: flock /tmp/fsm-edge-lab.lock npx vitest run --project lab test/rollout/rollout.lab.test.ts

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { cutLink, restoreLink } from '../lab/link.js';
import { popExec } from '../lab/pop.js';
import type { PopInfo } from '../lab/types.js';
import { hubDoc, siteDoc, startHarness, type Harness } from '../install/harness.js';
import { spawnCli } from '../cli/run-cli.js';

let h: Harness;
let fleet: string;
let canary: PopInfo;
let other: PopInfo;

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

interface Doc {
  ok: boolean;
  stoppedBy?: string;
  waves: Array<{
    name: string;
    gate: string;
    sites: Array<{
      site: string;
      status: string;
      failure?: string;
      doneEarlier?: boolean;
      registration?: string;
      phases: Array<{ id: string; summary: string }>;
    }>;
  }>;
  files: { html: string; json: string; state: string };
}

beforeAll(async () => {
  h = await startHarness({ arches: ['amd64', 'amd64'], hub: true, hubPort: 6683, hubForwardHost: '127.0.0.8' });
  [other, canary] = [h.pops[0]!, h.pops[1]!];
  const sites = h.pops.map((p) => {
    const d = siteDoc(p);
    return { metadata: { name: d.metadata.name, labels: { lab: 'true', ...(p === canary ? { tier: 'canary' } : {}) } }, spec: d.spec };
  });
  const doc = {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Fleet',
    metadata: { name: 'lab-fleet' },
    spec: { sites, rollout: { parallel: 1, canary: { matchLabels: { tier: 'canary' } }, maxFailures: 0 } },
  };
  fleet = path.join(h.dir, 'fleet.yaml');
  fs.writeFileSync(fleet, [stringify(doc), stringify(hubDoc(h.hub!.kubeconfigPath))].join('---\n'));
}, 900_000);

afterAll(async () => {
  await h?.stop();
}, 120_000);

describe('rollout on two amd64 lab POPs', () => {
  it('stops before wave 1 when the canary cannot be reached; the other POP is not touched', async () => {
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
    expect(doc.waves[0]!.sites[0]).toMatchObject({ site: `site-${canary.name}`, status: 'failed' });
    expect(['unreachable', 'timeout']).toContain(doc.waves[0]!.sites[0]!.failure);
    expect(doc.waves[1]!.sites[0]).toMatchObject({ site: `site-${other.name}`, status: 'not-started' });
    expect(await journalRuns(other)).toBe(0);
    expect(fs.readFileSync(doc.files.html, 'utf8')).toContain(`site-${other.name}`);
    expect(r.stderr).toMatch(/to continue: fsm-edge rollout .* --resume/);
  }, 900_000);

  it('SIGKILL mid-wave, then --resume: the finished canary is not redone, the site in flight continues; both end Managed', async () => {
    // Killed once the wave-1 site has synced its blobs: the canary is done, the other is in flight.
    const killed = await rollout(['--resume'], new RegExp(`site-${other.name}: \\S+ sync `));
    expect(killed.signal ?? killed.code).not.toBe(0);
    expect(killed.stderr).toMatch(/== canary: 1 ok/);
    const canaryRuns = await journalRuns(canary);

    const r = await rollout(['--resume']);
    expect(r.stderr).not.toMatch(/rollout stopped/);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as Doc;
    expect(doc.ok).toBe(true);
    expect(doc.waves.flatMap((w) => w.sites.map((s) => [s.site, s.status, s.registration, s.doneEarlier ?? false]))).toEqual([
      [`site-${canary.name}`, 'ok', 'managed', true],
      [`site-${other.name}`, 'ok', 'managed', false],
    ]);
    // The canary was not contacted again; the other sent no blob twice.
    expect(await journalRuns(canary)).toBe(canaryRuns);
    const sync = doc.waves[1]!.sites[0]!.phases.find((p) => p.id === 'sync')!;
    expect(sync.summary).toMatch(/already on the POP.*0 sent/);
    const status = await cli(['status', '--json']);
    const sites = (JSON.parse(status.stdout) as { sites: Array<{ name: string; lastRollout?: { status: string } }> }).sites;
    expect(sites.map((s) => [s.name, s.lastRollout?.status]).sort()).toEqual(
      [
        [`site-${canary.name}`, 'ok'],
        [`site-${other.name}`, 'ok'],
      ].sort(),
    );
  }, 1_800_000);

  it('with the rollout state deleted, --resume re-derives from the POP journals and redoes no site', async () => {
    const runs = [await journalRuns(canary), await journalRuns(other)];
    fs.rmSync(path.join(h.stateDir, 'rollouts'), { recursive: true, force: true });
    const r = await rollout(['--resume']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/POP journals show 2 site\(s\) already on this bundle/);
    const doc = JSON.parse(r.stdout) as Doc;
    expect(doc.waves.flatMap((w) => w.sites.map((s) => [s.status, s.doneEarlier]))).toEqual([
      ['ok', true],
      ['ok', true],
    ]);
    // The derivation was a dry run: neither POP's journal gained a run.
    expect([await journalRuns(canary), await journalRuns(other)]).toEqual(runs);
  }, 900_000);
});
