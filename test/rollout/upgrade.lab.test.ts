// Upgrades by rollout on two amd64 lab POPs and a private lab hub: the sample bundle (lab) installed by a rollout,
// then lab-v2 (newer k3s, newer FSM chart, two changed image layers) rolled over it: exactly the blobs
// `bundle diff` counts are sent, both sites end Managed on the new k3s and chart, and the store keeps the
// previous bundle's blobs; rolling lab out again is refused per site (--allow-downgrade is the fix); lab-v3,
// whose k3s never becomes ready, fails each site with the old k3s restored and running, and says so; lab-v2 again
// then drops lab-v3's blobs from the stores (neither the current nor the previous bundle uses them).
// Run under the lab lock: flock /tmp/fsm-edge-lab.lock npx vitest run --project lab test/rollout/upgrade.lab.test.ts

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { diffBundles } from '../../src/bundle/diff.js';
import { archBlobs } from '../../src/bundle/format.js';
import { hexOf } from '../../src/bundle/layout.js';
import { readSiteRecord } from '../../src/state/site-record.js';
import { buildUpgradeBundles, type UpgradeBundle, UPGRADE_VERSIONS } from '../lab/images/upgrade-bundles.js';
import { popExec } from '../lab/pop.js';
import type { PopInfo } from '../lab/types.js';
import { hubDoc, siteDoc, startHarness, type Harness } from '../install/harness.js';
import { runMain } from '../cli/run-cli.js';
import type { SampleBundle } from '../lab/images/sample-bundle.js';

let h: Harness;
let fleet: string;
let v1: SampleBundle;
let v2: UpgradeBundle;
let v3: UpgradeBundle;

interface Site {
  site: string;
  status: string;
  failure?: string;
  failedPhase?: string;
  reason?: string;
  fix?: string;
  registration?: string;
  bytesSent: number;
  phases: Array<{ id: string; status: string; summary: string }>;
}
interface Doc {
  ok: boolean;
  waves: Array<{ sites: Site[] }>;
}

function rollout(dir: string, extra: Record<string, string> = {}) {
  const env = {
    ...process.env,
    FSM_EDGE_STATE_DIR: h.stateDir,
    NO_COLOR: '1',
    FSM_EDGE_REGISTER_TIMEOUT: '120',
    FSM_EDGE_MESH_TIMEOUT: '300',
    FSM_EDGE_K3S_TIMEOUT: '300',
    ...extra,
  };
  return runMain(['rollout', fleet, '--bundle', dir, '--trust-key', v1.publicKeyFile, '--json'], { env });
}

const sitesOf = (stdout: string) => (JSON.parse(stdout) as Doc).waves.flatMap((w) => w.sites);
const sh = async (pop: PopInfo, cmd: string) => (await popExec(pop, cmd, { allowFail: true })).stdout.trim();
const k3sVersion = (pop: PopInfo) => sh(pop, '/usr/local/bin/k3s --version | head -n 1');
const chartVersion = (pop: PopInfo) =>
  sh(
    pop,
    `/usr/local/bin/k3s kubectl -n fsm-system get deploy fsm-controller -o jsonpath='{.metadata.labels.app\\.kubernetes\\.io/version}'`,
  );
const journalOf = async (pop: PopInfo) =>
  JSON.parse(await sh(pop, 'cat /var/lib/fsm-edge/journal.json')) as {
    runs: unknown[];
    bundle?: { name: string };
    previousBundle?: { name: string };
    bundleBlobs?: Record<string, string[]>;
    k3sRollback?: { outcome: string; from: string; to: string };
  };

beforeAll(async () => {
  ({ v1, v2, v3 } = await buildUpgradeBundles());
  h = await startHarness({ arches: ['amd64', 'amd64'], hub: true, hubPort: 6723, hubForwardHost: '127.0.2.3' });
  const doc = {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Fleet',
    metadata: { name: 'upgrade-fleet' },
    spec: {
      sites: h.pops.map((p) => siteDoc(p)).map((d) => ({ metadata: d.metadata, spec: d.spec })),
      rollout: { parallel: 2, maxFailures: 2 },
    },
  };
  fleet = path.join(h.dir, 'fleet.yaml');
  fs.writeFileSync(fleet, [stringify(doc), stringify(hubDoc(h.hub!.kubeconfigPath))].join('---\n'));
}, 1_800_000);

afterAll(async () => {
  await h?.stop();
}, 120_000);

describe('upgrades by rollout on two amd64 lab POPs', () => {
  it('installs the sample bundle, then upgrades to lab-v2 sending only the blobs bundle diff counts; both end Managed on it', async () => {
    const first = await rollout(v1.dir);
    expect(first.code, first.stderr).toBe(0);

    const diff = diffBundles(v1.dir, v2.dir).arches.find((a) => a.arch === 'amd64')!;
    expect(diff.send.blobs).toBeGreaterThan(0);
    const r = await rollout(v2.dir);
    expect(r.code, r.stderr).toBe(0);
    for (const s of sitesOf(r.stdout)) {
      expect(s).toMatchObject({ status: 'ok', registration: 'managed' });
      // The sync sent exactly what `bundle diff` says the link carries: its blobs, its bytes.
      const last = readSiteRecord(h.stateDir, s.site)!.lastRun!;
      expect([last.blobsSent, last.bytesSent]).toEqual([diff.send.blobs, diff.send.bytes]);
      expect(s.phases.find((p) => p.id === 'sync')!.summary).toMatch(new RegExp(`^sent ${diff.send.blobs} of \\d+ blobs`));
      // On the wire: the blobs plus the protocol (scripts, the HelmChart, API calls through the tunnel).
      // Measured: 709,688 wire bytes for a 641,384-byte diff (~68 KB of protocol). The lab bundle reuses only 44 KB,
      // so wire bytes cannot tell a resend apart: the exact sync figures above do (the benchmark uses real sizes).
      expect(s.bytesSent).toBeGreaterThanOrEqual(diff.send.bytes);
      process.stderr.write(`${s.site}: upgrade wire bytes ${s.bytesSent} / bundle diff ${diff.send.bytes}\n`);
    }
    for (const pop of h.pops) {
      expect(await k3sVersion(pop)).toContain(UPGRADE_VERSIONS['lab-v2'].k3s);
      expect(await chartVersion(pop)).toBe(UPGRADE_VERSIONS['lab-v2'].chart);
      // The store kept the previous bundle's blobs (going back sends nothing) and the journal lists both.
      const j = await journalOf(pop);
      expect([j.bundle?.name, j.previousBundle?.name]).toEqual(['lab-v2', 'lab']);
      const stored = new Set((await sh(pop, 'ls /var/lib/fsm-edge/store/sha256')).split('\n'));
      for (const d of archBlobs(v1.doc.arches.amd64!).keys()) expect(stored.has(hexOf(d))).toBe(true);
    }
  }, 1_800_000);

  it('rolling the older sample bundle out again is refused per site, with --allow-downgrade as the fix', async () => {
    const runs = await Promise.all(h.pops.map(async (p) => (await journalOf(p)).runs.length));
    const r = await rollout(v1.dir);
    expect(r.code).toBe(1);
    for (const s of sitesOf(r.stdout)) {
      expect(s).toMatchObject({ status: 'failed', failure: 'refused', failedPhase: 'preflight' });
      expect(s.reason).toMatch(/the POP runs bundle lab-v2 .* newer than lab /);
      expect(s.fix).toMatch(/--allow-downgrade/);
    }
    expect(await Promise.all(h.pops.map(async (p) => (await journalOf(p)).runs.length))).toEqual(runs);
  }, 900_000);

  it('lab-v3’s k3s never becomes ready: each site fails, the old k3s is restored and running, and the report says so', async () => {
    const r = await rollout(v3.dir, { FSM_EDGE_K3S_TIMEOUT: '40' });
    expect(r.code).toBe(1);
    const from = UPGRADE_VERSIONS['lab-v2'].k3s;
    const to = UPGRADE_VERSIONS['lab-v3'].k3s;
    for (const s of sitesOf(r.stdout)) {
      expect(s).toMatchObject({ status: 'failed', failedPhase: 'k3s' });
      expect(s.reason).toBe(`k3s upgrade to ${to} failed (k3s did not start within 40s); rolled back to ${from}, running`);
    }
    for (const pop of h.pops) {
      expect(await k3sVersion(pop)).toContain(from);
      expect(await sh(pop, 'systemctl is-active k3s')).toBe('active');
      expect(await sh(pop, '/usr/local/bin/k3s kubectl get --raw /readyz')).toBe('ok');
      const j = await journalOf(pop);
      expect(j.k3sRollback).toMatchObject({ outcome: 'rolled-back', from, to });
      // The failed upgrade did not take the POP's bundle forward.
      expect(j.bundle?.name).toBe('lab-v2');
    }
  }, 900_000);

  it('lab-v2 again after the failed lab-v3: the POP is back on lab-v2’s files, and the store drops lab-v3’s blobs only', async () => {
    const r = await rollout(v2.dir);
    expect(r.code, r.stderr).toBe(0);
    const onlyV3 = diffBundles(v2.dir, v3.dir).arches.find((a) => a.arch === 'amd64')!.send.blobs;
    for (const s of sitesOf(r.stdout)) {
      expect(s).toMatchObject({ status: 'ok', registration: 'managed' });
      expect(s.phases.find((p) => p.id === 'prune')!.summary).toMatch(new RegExp(`^deleted ${onlyV3} blob\\(s\\)`));
    }
    for (const pop of h.pops) {
      expect(await k3sVersion(pop)).toContain(UPGRADE_VERSIONS['lab-v2'].k3s);
      const stored = new Set((await sh(pop, 'ls /var/lib/fsm-edge/store/sha256')).split('\n'));
      for (const b of [v1.doc, v2.doc]) for (const d of archBlobs(b.arches.amd64!).keys()) expect(stored.has(hexOf(d))).toBe(true);
      const v3k3s = v3.doc.arches.amd64!.files.find((f) => f.role === 'k3s-binary')!;
      expect(stored.has(hexOf(v3k3s.digest))).toBe(false);
    }
  }, 900_000);
});
