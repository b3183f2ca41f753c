// On-site recovery of an arm64 POP from a USB stick (issue 14): the POP is installed and registered from the
// controller, runs a workload, is backed up with `fsm-edge backup`, then wiped. The stick (its arm64 runtime from the
// lab's nodejs.org stand-in, the backup, the Site file) is copied in, the link is cut for the whole run, and the
// stick's launcher runs `sudo ./fsm-edge recover --local …` inside the POP — Node.js and everything it starts
// emulated by qemu, as on an arm64 box. The same objects come back (same UIDs), registration is left pending and no
// byte crosses the link; once it is back, `fsm-edge register` reaches Managed with the one Cluster on the hub.
//   flock /tmp/fsm-edge-lab.lock npx vitest run --project lab test/stick/stick-recover-arm64.lab.test.ts

import fs from 'node:fs';
import path from 'node:path';
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { spawnCli } from '../cli/run-cli.js';
import { type Harness, siteDoc, startHarness } from '../install/harness.js';
import { type FileServerHandle, startFileServer } from '../lab/fileserver.js';
import { cutLink, linkCounters, restoreLink } from '../lab/link.js';
import { popExec } from '../lab/pop.js';
import { type LabNodeRelease, labNodeRelease } from './lab-node-runtime.js';
import { copyIntoPop, exportStick, reachesHub } from './stick-lab.js';
import { WORKLOAD } from '../recover/fixture.js';

const HUB_PORT = 6703;
const PASSPHRASE = 'correct horse battery staple';
const STICK_ON_POP = '/media/usb';

let h: Harness;
let files: FileServerHandle;
let node: LabNodeRelease;
let site: string;

function cli(args: string[]) {
  return spawnCli(args, {
    env: { ...process.env, FSM_EDGE_STATE_DIR: h.stateDir, NO_COLOR: '1', FSM_EDGE_REGISTER_TIMEOUT: '180' },
  }).done;
}

const on = async (cmd: string) => (await popExec(h.pops[0]!, cmd, { allowFail: true, timeoutMs: 300_000 })).stdout.trim();
/** `Kind/name=uid …` of the workload, read object by object (the stand-in kubectl's get takes one object, like
 *  `kubectl get TYPE/NAME`); a failing query shows kubectl's error instead of an empty answer. */
async function uids(): Promise<string> {
  const out: string[] = [];
  for (const o of ['deployment/shop', 'configmap/shop-config', 'secret/shop-secret']) {
    // one JSONPath expression: the stand-in's JSONPath subset has no templates with text between expressions
    const r = await popExec(h.pops[0]!, `/usr/local/bin/k3s kubectl -n default get ${o} -o jsonpath='{.metadata.uid}'`, {
      timeoutMs: 300_000,
    });
    out.push(`${o}=${r.stdout.trim()}`);
  }
  return out.join(' ');
}

async function hubClusters() {
  const kc = new KubeConfig();
  kc.loadFromFile(h.hub!.kubeconfigPath);
  const list = (await kc
    .makeApiClient(CustomObjectsApi)
    .listClusterCustomObject({ group: 'multicluster.flomesh.io', version: 'v1alpha1', plural: 'clusters' })) as {
    items: Array<{ metadata: { name: string }; status?: { conditions?: Array<{ type: string; status: string }> } }>;
  };
  return list.items;
}

beforeAll(async () => {
  node = await labNodeRelease(path.resolve('airgap/cache'));
  [h, files] = await Promise.all([
    startHarness({ arches: ['arm64'], hub: true, hubPort: HUB_PORT, hubForwardHost: '127.0.2.2' }),
    startFileServer({ root: node.root }),
  ]);
  site = h.writeSite(h.pops[0]!);
}, 1_200_000);

afterAll(async () => {
  if (h?.pops[0]) await restoreLink(h.pops[0]).catch(() => {});
  await files?.stop();
  await h?.stop();
}, 180_000);

describe('on-site recovery of an arm64 POP from the stick, link cut for the whole run', () => {
  it('recovers the same objects with no network, registration pending; register after the link returns → Managed', async () => {
    const pop = h.pops[0]!;
    const i = await cli(['install', site, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile]);
    expect(i.code, i.stderr).toBe(0);
    await popExec(pop, '/usr/local/bin/k3s kubectl apply -f -', { input: WORKLOAD, timeoutMs: 300_000 });
    const before = await uids();
    expect(before).toMatch(/^deployment\/shop=[0-9a-f-]{36} configmap\/shop-config=[0-9a-f-]{36} secret\/shop-secret=[0-9a-f-]{36}$/);
    const passFile = path.join(h.dir, 'pass.txt');
    fs.writeFileSync(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    const out = path.join(h.dir, 'backups');
    const b = await cli(['backup', site, '--out', out, '--passphrase-file', passFile]);
    expect(b.code, b.stderr).toBe(0);
    const backup = path.join(out, fs.readdirSync(out).find((f) => f.endsWith('.fsm-edge-backup.age'))!);

    // the disk dies: k3s and fsm-edge's state are gone
    await on('/usr/local/bin/k3s-uninstall.sh >/dev/null 2>&1 || true');
    await on('rm -rf /var/lib/fsm-edge');
    expect(await on('ls -A /var/lib/rancher/k3s/server/db 2>/dev/null')).toBe('');

    const siteOnly = path.join(h.dir, 'site.yaml');
    fs.writeFileSync(siteOnly, stringify(siteDoc(pop, { hub: true })));
    const stick = await exportStick(h, node, files.url, { site: siteOnly, backups: [backup], arch: 'arm64' });
    expect(stick.result.runtimes).toEqual([
      { arch: 'arm64', tarball: expect.any(String), tarballDigest: expect.any(String), nodeDigest: `sha256:${node.nodeSha256.arm64}` },
    ]);
    await copyIntoPop(pop, stick.dir, STICK_ON_POP);

    await cutLink(pop);
    const linkBefore = await linkCounters(pop);
    expect(await reachesHub(pop, HUB_PORT)).toBe(false);
    // the technician types the passphrase into a file on the POP's RAM disk (as README.txt says)
    await popExec(pop, `umask 077; cat > /run/fsm-edge-passphrase`, { input: `${PASSPHRASE}\n` });
    const key = stick.result.trustKeys[0]!.file;
    const t0 = Date.now();
    const run = await popExec(
      pop,
      `cd ${STICK_ON_POP} && su ${pop.user} -s /bin/sh -c 'uname -m; sudo -n ./fsm-edge recover --local sites/site.yaml --backup ${stick.result.backups[0]} --passphrase-file /run/fsm-edge-passphrase --bundle bundle --trust-key ${key} --json'`,
      { allowFail: true, timeoutMs: 2_400_000 },
    );
    expect(run.code, run.stderr).toBe(0);
    console.log(`recover --local through the launcher (arm64 under qemu, link cut): ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const [machine, ...json] = run.stdout.split('\n');
    expect(machine).toBe('aarch64');
    const rep = JSON.parse(json.join('\n')).sites[0];
    expect(rep.ok, run.stderr).toBe(true);
    expect(run.stderr).toMatch(/registration pending: run `fsm-edge register sites\/site\.yaml` from the controller/);
    expect(await uids()).toBe(before);
    expect(await linkCounters(pop)).toEqual(linkBefore);
    await popExec(pop, 'rm -f /run/fsm-edge-passphrase');

    await restoreLink(pop);
    const reg = await cli(['register', site, '--json']);
    expect(reg.code, reg.stderr).toBe(0);
    expect(JSON.parse(reg.stdout).sites[0].registration).toMatchObject({ state: 'managed' });
    const clusters = await hubClusters();
    expect(clusters.map((c) => c.metadata.name)).toEqual([`site-${pop.name}`]);
    expect(clusters[0]!.status?.conditions?.find((c) => c.type === 'Managed')?.status).toBe('True');
  }, 3_600_000);
});
