// Recovery end to end on an amd64 lab POP with a private lab hub: install + register, a workload (Deployment,
// ConfigMap, Secret), `fsm-edge backup`; the faults that must change nothing (wrong passphrase, a backup of another
// site, a corrupted backup with the bad entry named); the POP wiped (k3s-uninstall.sh + fsm-edge's state) and
// `recover` → the same object UIDs, one Cluster on the hub, Managed; SIGKILL during a recovery then a re-run to
// the end; a replacement POP (new host key, new address, same site name): refused without the flag, re-pinned
// with it, the Cluster updated. Figures (time, bytes sent) with the POP's blob store kept and wiped.

import fs from 'node:fs';
import path from 'node:path';
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ageEncrypt, completeManifest, openBackupArchive, packBackupTar } from '../../src/backup/archive.js';
import { spawnCli } from '../cli/run-cli.js';
import { startHarness, type Harness } from '../install/harness.js';
import { popDown, popExec, popUp } from '../lab/pop.js';
import type { PopInfo } from '../lab/types.js';
import { WORKLOAD } from './fixture.js';

let h: Harness;
let site: string;
let siteName: string;
let backupFile: string;
const passFile = () => path.join(h.dir, 'pass.txt');
const transcript: string[] = [];
const figures: string[] = [];
let replacement: PopInfo | undefined;

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { killWhen?: RegExp } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const run = spawnCli(args, {
      env: {
        ...process.env,
        FSM_EDGE_STATE_DIR: h.stateDir,
        NO_COLOR: '1',
        FSM_EDGE_REGISTER_TIMEOUT: '90',
        FSM_EDGE_MESH_TIMEOUT: '180',
        FSM_EDGE_K3S_TIMEOUT: '180',
      },
      onStderr: (stderr, r) => {
        if (opts.killWhen?.test(stderr)) {
          opts.killWhen = undefined;
          r.kill();
        }
      },
    });
    void run.done.then((r) => {
      transcript.push(r.stdout, r.stderr);
      resolve({ code: r.code, stdout: r.stdout, stderr: r.stderr });
    });
  });
}

async function on(p: PopInfo, cmd: string): Promise<string> {
  return (await popExec(p, cmd, { allowFail: true, timeoutMs: 120_000 })).stdout.trim();
}

const recoverArgs = (file: string, backup: string, extra: string[] = []) => [
  'recover',
  file,
  '--backup',
  backup,
  '--passphrase-file',
  passFile(),
  '--bundle',
  h.bundle.dir,
  '--trust-key',
  h.bundle.publicKeyFile,
  '--json',
  ...extra,
];

async function uids(p: PopInfo): Promise<string> {
  const out: string[] = [];
  for (const [kind, name] of [
    ['deployment', 'shop'],
    ['configmap', 'shop-config'],
    ['secret', 'shop-secret'],
  ]) {
    out.push(`${kind}/${name}=${await on(p, `k3s kubectl -n default get ${kind} ${name} -o jsonpath='{.metadata.uid}'`)}`);
  }
  return out.join(' ');
}

async function hubClusters(): Promise<
  Array<{ metadata: { name: string }; spec: { gatewayHost?: string }; status?: { conditions?: Array<{ type: string; status: string }> } }>
> {
  const kc = new KubeConfig();
  kc.loadFromFile(h.hub!.kubeconfigPath);
  const list = (await kc
    .makeApiClient(CustomObjectsApi)
    .listClusterCustomObject({ group: 'multicluster.flomesh.io', version: 'v1alpha1', plural: 'clusters' })) as { items: never[] };
  return list.items;
}

async function wipe(p: PopInfo, keepStore: boolean): Promise<void> {
  await on(p, '/usr/local/bin/k3s-uninstall.sh >/dev/null 2>&1 || true');
  await on(p, keepStore ? 'find /var/lib/fsm-edge -mindepth 1 -maxdepth 1 ! -name store -exec rm -rf {} +' : 'rm -rf /var/lib/fsm-edge');
  expect(await on(p, 'ls -A /var/lib/rancher/k3s/server/db 2>/dev/null')).toBe('');
}

function reportOf(r: CliRun) {
  return JSON.parse(r.stdout).sites[0] as {
    ok: boolean;
    phases: Array<{ id: string; status: string; summary: string; reason?: string; fix?: string }>;
    figures: { durationMs: number; bytesSent: number; restoreWireBytes: number; blobBytesSent: number };
    repinned?: { old: string[]; presented: string };
  };
}

beforeAll(async () => {
  h = await startHarness({ arches: ['amd64'], hub: true, hubPort: 6763, hubForwardHost: '127.0.2.1' });
  site = h.writeSite(h.pops[0]!);
  siteName = `site-${h.pops[0]!.name}`;
  fs.writeFileSync(passFile(), 'correct horse battery staple\n', { mode: 0o600 });
}, 600_000);

afterAll(async () => {
  if (replacement) await popDown(replacement).catch(() => {});
  await h?.stop();
  if (figures.length) console.log(`recovery figures:\n${figures.join('\n')}`);
}, 180_000);

describe('recover an amd64 lab POP from a backup', { timeout: 600_000 }, () => {
  let before = '';

  it('installs, registers, runs a workload and takes a backup', async () => {
    const i = await cli(['install', site, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile]);
    expect(i.code, i.stderr).toBe(0);
    await popExec(h.pops[0]!, 'k3s kubectl apply -f -', { input: WORKLOAD });
    before = await uids(h.pops[0]!);
    expect(before).toMatch(/^deployment\/shop=[0-9a-f-]{36} configmap\/shop-config=[0-9a-f-]{36} secret\/shop-secret=[0-9a-f-]{36}$/);
    const out = path.join(h.dir, 'backups');
    const b = await cli(['backup', site, '--out', out, '--passphrase-file', passFile(), '--json']);
    expect(b.code, b.stderr).toBe(0);
    backupFile = path.join(out, fs.readdirSync(out).find((f) => f.endsWith('.fsm-edge-backup.age'))!);
    const opened = await openBackupArchive(backupFile, { passphrase: 'correct horse battery staple' });
    expect(opened.paths).toEqual(expect.arrayContaining(['k3s/token', 'k3s/node-password', 'datastore/sqlite/state.db']));
  });

  it('refuses a wrong passphrase, a backup of another site and a corrupted backup, changing nothing', async () => {
    const wrong = path.join(h.dir, 'wrong.txt');
    fs.writeFileSync(wrong, 'wrong horse\n');
    const w = await cli([
      'recover',
      site,
      '--backup',
      backupFile,
      '--passphrase-file',
      wrong,
      '--bundle',
      h.bundle.dir,
      '--trust-key',
      h.bundle.publicKeyFile,
    ]);
    expect(w.code).not.toBe(0);
    expect(w.stderr).toMatch(/no identity\/passphrase opens it/);

    // The same backup re-sealed as another site's, and one with an entry that does not match its digest.
    const opened = await openBackupArchive(backupFile, { passphrase: 'correct horse battery staple' });
    const entries = opened.paths.map((p) => ({ path: p, data: opened.entry(p), mode: 0o600 }));
    const { entries: _e, ...rest } = opened.manifest;
    const seal = async (file: string, manifest: typeof opened.manifest, list: typeof entries) => {
      fs.writeFileSync(
        file,
        await ageEncrypt(packBackupTar(manifest, list), { recipients: [], passphrase: 'correct horse battery staple' }),
      );
      return file;
    };
    const other = await seal(path.join(h.dir, 'other.age'), completeManifest({ ...rest, site: 'pop-elsewhere' }, entries), entries);
    const o = await cli(recoverArgs(site, other));
    expect(o.code).toBe(1);
    const rep = reportOf(o);
    expect(rep.phases.find((p) => p.status === 'refused')?.reason).toMatch(/is of site "pop-elsewhere", not "site-pop\d+"/);

    const good = completeManifest(rest, entries);
    const tampered = entries.map((e) =>
      e.path === 'datastore/sqlite/state.db' ? { ...e, data: Buffer.concat([e.data, Buffer.from(' ')]) } : e,
    );
    const bad = await seal(path.join(h.dir, 'bad.age'), good, tampered);
    const c = await cli(recoverArgs(site, bad));
    expect(c.code).not.toBe(0);
    expect(`${c.stdout}${c.stderr}`).toMatch(/entry datastore\/sqlite\/state\.db/);
    // The POP still runs the original cluster.
    expect(await uids(h.pops[0]!)).toBe(before);
  });

  it('refuses to recover over a POP whose k3s datastore is still there', async () => {
    const r = await cli(recoverArgs(site, backupFile));
    expect(r.code).toBe(1);
    expect(reportOf(r).phases.find((p) => p.status === 'refused')?.reason).toMatch(/already has a k3s datastore/);
  });

  it('wiped with the blob store kept: recover brings back the same objects, one Managed Cluster, ≤ 1 MiB sent', async () => {
    await wipe(h.pops[0]!, true);
    const r = await cli(recoverArgs(site, backupFile));
    expect(r.code, r.stderr).toBe(0);
    const rep = reportOf(r);
    figures.push(
      `store kept: ${(rep.figures.durationMs / 1000).toFixed(1)} s, ${rep.figures.bytesSent} bytes sent (restored files ${rep.figures.restoreWireBytes}, blobs ${rep.figures.blobBytesSent})`,
    );
    expect(await uids(h.pops[0]!)).toBe(before);
    const clusters = await hubClusters();
    expect(clusters.map((c) => c.metadata.name)).toEqual([siteName]);
    expect(clusters[0]!.status?.conditions?.find((c) => c.type === 'Managed')?.status).toBe('True');
    expect(rep.figures.bytesSent).toBeLessThanOrEqual(1024 * 1024);
    // The token k3s runs with is the backup's: not a new one.
    const opened = await openBackupArchive(backupFile, { passphrase: 'correct horse battery staple' });
    expect(await on(h.pops[0]!, 'cat /var/lib/rancher/k3s/server/token')).toBe(opened.entry('k3s/token').toString().trim());
  });

  it('a recovery SIGKILLed mid-way completes on a re-run (store wiped: figures)', async () => {
    await wipe(h.pops[0]!, false);
    const killed = await cli(recoverArgs(site, backupFile), { killWhen: /restore-etcd|✓ restore /m });
    expect(killed.code).not.toBe(0);
    const r = await cli(recoverArgs(site, backupFile));
    expect(r.code, r.stderr).toBe(0);
    const rep = reportOf(r);
    figures.push(
      `re-run after a SIGKILL (the killed run had synced the store): ${(rep.figures.durationMs / 1000).toFixed(1)} s, ${rep.figures.bytesSent} bytes sent`,
    );
    expect(await uids(h.pops[0]!)).toBe(before);
    expect((await hubClusters()).map((c) => c.metadata.name)).toEqual([siteName]);
  });

  it('a replacement POP (new host key and address): refused without the flag, re-pinned with it, the Cluster updated', async () => {
    replacement = await popUp({ arch: 'amd64', systemd: true });
    const old = h.pops[0]!;
    const docs = fs.readFileSync(site, 'utf8').split('---\n');
    const s = parse(docs[0]!);
    s.spec.ssh.host = replacement.sshHost;
    s.spec.ssh.port = replacement.sshPort;
    s.spec.k3s.tlsSans = [replacement.labAddress];
    s.spec.hub.gateway.host = replacement.labAddress;
    s.spec.hub.apiEndpoint = `https://${replacement.labAddress}:6443`;
    const file = path.join(h.dir, 'replacement.yaml');
    fs.writeFileSync(file, [stringify(s), ...docs.slice(1)].join('---\n'));
    await popDown(old);
    h.pops.splice(0, 1);

    const refused = await cli(recoverArgs(file, backupFile));
    expect(refused.code).toBe(1);
    const why = reportOf(refused).phases[0]!;
    expect(why.reason).toContain(`pinned ${old.hostKeyFingerprint}, presented ${replacement.hostKeyFingerprint}`);
    expect(why.fix).toContain('--accept-new-host-key');

    const r = await cli(recoverArgs(file, backupFile, ['--accept-new-host-key']));
    expect(r.code, r.stderr).toBe(0);
    const rep = reportOf(r);
    expect(rep.repinned).toEqual({ old: [old.hostKeyFingerprint], presented: replacement.hostKeyFingerprint });
    expect(parse(fs.readFileSync(file, 'utf8').split('---\n')[0]!).spec.ssh.hostKeys).toEqual([replacement.hostKeyFingerprint]);
    expect(await uids(replacement)).toBe(before);
    const clusters = await hubClusters();
    expect(clusters.map((c) => c.metadata.name)).toEqual([siteName]);
    expect(clusters[0]!.spec.gatewayHost).toBe(replacement.labAddress);
    expect(clusters[0]!.status?.conditions?.find((c) => c.type === 'Managed')?.status).toBe('True');
    figures.push(
      `replacement POP (empty blob store): ${(rep.figures.durationMs / 1000).toFixed(1)} s, ${rep.figures.bytesSent} bytes sent`,
    );
  });

  it('no token, node password or passphrase in any output', async () => {
    const opened = await openBackupArchive(backupFile, { passphrase: 'correct horse battery staple' });
    const token = opened.entry('k3s/token').toString().trim();
    const password = token.split(':').at(-1)!;
    const all = transcript.join('\n');
    expect(all).not.toContain(password);
    expect(all).not.toContain(opened.entry('k3s/node-password').toString().trim());
    expect(all).not.toContain('correct horse battery staple');
  });
});
