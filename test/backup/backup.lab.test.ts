// `fsm-edge backup` end to end on a lab POP (amd64, systemd, SQLite, no hub): install (which sets up the backup
// timer), a workload (ConfigMap, Secret), a backup that Debian's age CLI decrypts with a manifest of digests and
// the workload inside; a link cut during the pull, then a re-run that resumes (what crossed again ≤ one chunk);
// the scheduled snapshot with retention, collected with --collect; a passphrase backup refusing a wrong
// passphrase; a corrupted backup naming the bad entry; no token or key in any output, record or log.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { openBackupArchive } from '../../src/backup/archive.js';
import { spawnCli } from '../cli/run-cli.js';
import { startHarness, type Harness } from '../install/harness.js';
import { cutLink, restoreLink, shapeLink } from '../lab/link.js';
import { popExec } from '../lab/pop.js';

let h: Harness;
let site: string;
let siteName: string;
let identity: string;
let recipient: string;
let keyFile: string;
let outDir: string;
const transcript: string[] = [];
const CHUNK = 64 * 1024;
const PASSPHRASE = 'orange-tractor-violin-42';

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { env?: Record<string, string>; when?: RegExp; then?: (kill: () => void) => Promise<void> } = {}) {
  return new Promise<CliRun>((resolve) => {
    const hooks: Promise<void>[] = [];
    const run = spawnCli(args, {
      env: {
        ...process.env,
        FSM_EDGE_STATE_DIR: h.stateDir,
        NO_COLOR: '1',
        FSM_EDGE_DEBUG: '1',
        FSM_EDGE_K3S_TIMEOUT: '180',
        FSM_EDGE_MESH_TIMEOUT: '180',
        FSM_EDGE_BACKUP_CHUNK: String(CHUNK),
        ...opts.env,
      },
      onStderr: (stderr, r) => {
        if (opts.when && opts.then && opts.when.test(stderr)) {
          opts.when = undefined;
          hooks.push(opts.then(() => r.kill()));
        }
      },
    });
    void run.done.then(async (r) => {
      transcript.push(r.stdout, r.stderr);
      await Promise.all(hooks);
      resolve({ code: r.code, stdout: r.stdout, stderr: r.stderr });
    });
  });
}

async function pop(cmd: string): Promise<string> {
  const r = await popExec(h.pops[0]!, cmd, { allowFail: true });
  return r.stdout;
}

const backups = () => fs.readdirSync(outDir).filter((f) => f.endsWith('.fsm-edge-backup.age'));
const newest = () => path.join(outDir, backups().sort().at(-1)!);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  h = await startHarness({ arches: ['amd64'], hub: false });
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  keyFile = path.join(h.dir, 'backup-key.txt');
  fs.writeFileSync(keyFile, `${identity}\n`, { mode: 0o600 });
  outDir = path.join(h.dir, 'backups');
  const file = h.writeSite(h.pops[0]!, { hub: false });
  const doc = parse(fs.readFileSync(file, 'utf8'));
  doc.spec.backup = { recipients: [recipient], keep: 2 };
  fs.writeFileSync(file, stringify(doc));
  site = file;
  siteName = doc.metadata.name;
  const r = await cli(['install', site, '--bundle', h.bundle.dir, '--trust-key', h.bundle.publicKeyFile]);
  if (r.code !== 0) throw new Error(`install failed:\n${r.stderr}`);
}, 900_000);

afterAll(async () => {
  await h?.stop();
}, 120_000);

describe('backup on an amd64 lab POP (SQLite)', () => {
  it('install set up the snapshot script and the nightly timer', async () => {
    expect((await pop('systemctl is-enabled fsm-edge-backup.timer')).trim()).toBe('enabled');
    expect(await pop('stat -c %a /var/lib/fsm-edge/backup-snapshot.sh')).toMatch(/^700/);
    expect(await pop('systemctl cat fsm-edge-backup.timer')).toMatch(/OnCalendar=daily/);
  });

  it('backs up a workload into a file the age CLI decrypts, with a manifest of digests; prints size and pause', async () => {
    const workload = `apiVersion: v1
kind: ConfigMap
metadata: { name: backup-demo, namespace: default }
data: { colour: teal }
---
apiVersion: v1
kind: Secret
metadata: { name: backup-demo-secret, namespace: default }
stringData: { password: WORKLOAD-SECRET-7731 }
`;
    const applied = await popExec(h.pops[0]!, 'k3s kubectl apply -f -', { input: workload, allowFail: true });
    expect(applied.code, applied.stderr).toBe(0);
    const r = await cli(['backup', site, '--out', outDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    const b = doc.sites[0].backup;
    expect(b.file).toBe(newest());
    expect(fs.statSync(b.file).mode & 0o777).toBe(0o600);
    console.log(`backup: ${b.bytes} bytes, control-plane pause ${b.controlPlanePauseMs} ms (SQLite: k3s stopped for the copy)`);
    expect(b.datastore).toBe('sqlite');
    expect(b.controlPlanePauseMs).toBeGreaterThan(0);

    const plain = execFileSync('age', ['-d', '-i', keyFile, b.file]);
    const names = execFileSync('tar', ['-t'], { input: plain }).toString().trim().split('\n');
    expect(names[0]).toBe('manifest.json');
    for (const want of ['k3s/token', 'k3s/node-password', 'k3s/config.yaml', 'k3s/registries.yaml', 'pop/journal.json']) {
      expect(names).toContain(want);
    }
    expect(names.some((n) => n.startsWith('datastore/sqlite/'))).toBe(true);
    const manifest = JSON.parse(execFileSync('tar', ['-xO', 'manifest.json'], { input: plain }).toString());
    expect(manifest).toMatchObject({
      format: 'fsm-edge-backup/v1',
      site: siteName,
      source: 'controller',
      k3s: { datastore: 'sqlite', arch: 'amd64' },
    });
    expect(manifest.pause.controlPlaneMs).toBe(b.controlPlanePauseMs);
    expect(manifest.k3s.version).toBe(h.bundle.doc.versions.k3s);
    const token = manifest.entries.find((e: { path: string }) => e.path === 'k3s/token');
    expect(token.sha256).toMatch(/^[0-9a-f]{64}$/);

    const opened = await openBackupArchive(b.file, { identities: [identity] });
    const onPop = (await pop('cat /var/lib/rancher/k3s/server/token')).trim();
    expect(opened.entry('k3s/token').toString().trim()).toBe(onPop);
    const db = opened.paths
      .filter((p) => p.startsWith('datastore/sqlite/'))
      .map((p) => opened.entry(p).toString('latin1'))
      .join('');
    expect(db).toContain('backup-demo');
    expect(db).toContain('backup-demo-secret');
    // the staged snapshot and its pull key are gone from the POP; the controller kept no partial
    expect((await pop('ls -A /var/lib/fsm-edge/backups/staging')).trim()).toBe('');
    expect(fs.existsSync(path.join(h.stateDir, 'sites', siteName, 'backup-partial'))).toBe(false);
    // journaled on the POP
    const journal = JSON.parse(await pop('cat /var/lib/fsm-edge/journal.json'));
    expect(journal.runs.at(-1)).toMatchObject({ operation: 'backup', outcome: 'done' });
  });

  it('a link cut during the pull: the re-run resumes the staged snapshot, re-sending at most one chunk', async () => {
    // a volume makes the pull long enough to cut on a 4 Mbit/s link
    await pop('mkdir -p /srv/shop-data && head -c 6000000 /dev/urandom > /srv/shop-data/sales.bin');
    await shapeLink(h.pops[0]!, { rateKbit: 4000 });
    const partialDir = path.join(h.stateDir, 'sites', siteName, 'backup-partial');
    let keptAtCut = 0;
    try {
      const first = await cli(['backup', site, '--out', outDir, '--volume', '/srv/shop-data'], {
        when: /✓ snapshot/,
        then: async (kill) => {
          for (let i = 0; i < 600; i++) {
            const parts = fs.existsSync(partialDir) ? fs.readdirSync(partialDir) : [];
            keptAtCut = parts.length ? fs.statSync(path.join(partialDir, parts[0]!)).size : 0;
            if (keptAtCut >= 1024 * 1024) break;
            await sleep(100);
          }
          await cutLink(h.pops[0]!);
          await sleep(1000);
          keptAtCut = fs.statSync(path.join(partialDir, fs.readdirSync(partialDir)[0]!)).size;
          kill(); // the controller gives up with the link down (a laptop closed, a crash)
        },
      });
      expect(first.code).not.toBe(0);
    } finally {
      await restoreLink(h.pops[0]!);
      await shapeLink(h.pops[0]!, {});
    }
    expect(keptAtCut).toBeGreaterThanOrEqual(1024 * 1024);
    const partial = fs.readdirSync(partialDir);
    expect(partial).toHaveLength(1);
    // what the controller kept is ciphertext: the server token (among the tar's first entries) is not in it
    const tokenText = (await pop('cat /var/lib/rancher/k3s/server/token')).trim();
    expect(fs.readFileSync(path.join(partialDir, partial[0]!)).includes(Buffer.from(tokenText))).toBe(false);
    const staged = (await pop('ls /var/lib/fsm-edge/backups/staging')).trim().split('\n');
    expect(staged.some((f) => f.endsWith('.tar'))).toBe(true);

    // the killed run's lock holder on the POP lets go once its lease runs out (no heartbeat over the dead link)
    for (let i = 0; i < 120; i++) {
      if ((await popExec(h.pops[0]!, 'flock -n /run/fsm-edge/lock true', { allowFail: true })).code === 0) break;
      await sleep(1000);
    }
    const again = await cli(['backup', site, '--out', outDir, '--volume', '/srv/shop-data', '--json']);
    expect(again.code, again.stderr).toBe(0);
    const rep = JSON.parse(again.stdout).sites[0];
    const snap = rep.phases.find((p: { id: string }) => p.id === 'snapshot');
    expect(snap.summary).toMatch(/staged by an earlier run/);
    const pull = rep.backup.pull;
    console.log(`resume: kept ${pull.resumedFrom} of ${pull.bytes} bytes before the cut; this run received ${pull.receivedBytes}`);
    expect(pull.resumedFrom).toBe(keptAtCut);
    // framing lines are ~90 bytes per 64 KiB chunk
    const framing = Math.ceil((pull.bytes - pull.resumedFrom) / CHUNK + 1) * 100;
    expect(pull.receivedBytes).toBeLessThanOrEqual(pull.bytes - pull.resumedFrom + framing);
    expect(pull.resentBytes).toBeLessThanOrEqual(CHUNK);
    const opened = await openBackupArchive(rep.backup.file, { identities: [identity] });
    expect(opened.paths.some((p) => /^volumes\/1-shop-data\.tar$/.test(p))).toBe(true);
    expect(fs.existsSync(partialDir)).toBe(false);
  });

  it('the timer’s service writes scheduled snapshots with retention; --collect takes the latest', async () => {
    for (let i = 0; i < 3; i++) {
      const out = await popExec(h.pops[0]!, 'systemctl start fsm-edge-backup.service', { allowFail: true, timeoutMs: 300_000 });
      expect(out.code, out.stderr).toBe(0);
      await sleep(1100); // names carry a one-second stamp
    }
    const files = (await pop('ls /var/lib/fsm-edge/backups/scheduled')).trim().split('\n');
    expect(files.filter((f) => f.endsWith('.tar'))).toHaveLength(2); // keep: 2
    expect(await pop('stat -c %a /var/lib/fsm-edge/backups/scheduled')).toMatch(/^700/);
    expect((await pop('stat -c %a /var/lib/fsm-edge/backups/scheduled/*.tar')).trim().split('\n')).toEqual(['600', '600']);
    const latest = files
      .filter((f) => f.endsWith('.tar'))
      .sort()
      .at(-1)!;
    const r = await cli(['backup', site, '--out', outDir, '--collect', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout).sites[0].backup;
    expect(b.snapshot.name).toBe(latest.replace(/\.tar$/, ''));
    const opened = await openBackupArchive(b.file, { identities: [identity] });
    expect(opened.manifest.source).toBe('scheduled');
    // the scheduled snapshot stays for its retention
    expect(await pop(`ls /var/lib/fsm-edge/backups/scheduled/${latest}`)).toContain(latest);
  });

  it('a passphrase backup: the right passphrase opens it, a wrong one is refused', async () => {
    const pf = path.join(h.dir, 'pass.txt');
    fs.writeFileSync(pf, `${PASSPHRASE}\n`, { mode: 0o600 });
    const r = await cli(['backup', site, '--out', path.join(outDir, 'pass'), '--passphrase-file', pf, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const file = JSON.parse(r.stdout).sites[0].backup.file;
    await expect(openBackupArchive(file, { passphrase: 'wrong-tractor' })).rejects.toThrow(/no identity\/passphrase opens it/);
    await expect(openBackupArchive(file, { identities: [identity] })).rejects.toThrow(/no identity\/passphrase opens it/);
    const ok = await openBackupArchive(file, { passphrase: PASSPHRASE });
    expect(ok.paths).toContain('k3s/token');
  }, 120_000);

  it('a corrupted backup names the bad entry', async () => {
    const file = newest();
    const dec = new Decrypter();
    dec.addIdentity(identity);
    const plain = Buffer.from(await dec.decrypt(fs.readFileSync(file)));
    const tokenText = (await pop('cat /var/lib/rancher/k3s/server/token')).trim();
    const at = plain.indexOf(Buffer.from(tokenText));
    expect(at).toBeGreaterThan(0);
    plain[at + tokenText.length - 1] = (plain[at + tokenText.length - 1] ?? 0) ^ 0x01;
    const enc = new Encrypter();
    enc.addRecipient(recipient);
    const bad = path.join(h.dir, 'corrupted.fsm-edge-backup.age');
    fs.writeFileSync(bad, await enc.encrypt(plain));
    await expect(openBackupArchive(bad, { identities: [identity] })).rejects.toThrow(/entry k3s\/token: digest mismatch/);
    const cut = path.join(h.dir, 'truncated.fsm-edge-backup.age');
    fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, 2000));
    await expect(openBackupArchive(cut, { identities: [identity] })).rejects.toThrow(/truncated/);
  });

  it('no token, node password, age key or passphrase in any output, report, record or POP log', async () => {
    const token = (await pop('cat /var/lib/rancher/k3s/server/token')).trim().replace(/^.*::server:/, '');
    const clusterToken = (await pop('cat /etc/rancher/k3s/cluster-token')).trim();
    const nodePassword = (await pop('cat /etc/rancher/node/password')).trim();
    expect(token.length).toBeGreaterThanOrEqual(16);
    expect(nodePassword.length).toBeGreaterThanOrEqual(16);
    const secrets = { token, clusterToken, nodePassword, ageKey: identity.slice(0, 40), passphrase: PASSPHRASE };
    const haystacks: Array<[string, string]> = transcript.map((t, i) => [`cli output #${i}`, t]);
    const walk = (dir: string): string[] =>
      fs
        .readdirSync(dir, { withFileTypes: true })
        .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
    for (const f of walk(h.stateDir)) haystacks.push([f, fs.readFileSync(f, 'latin1')]);
    for (const f of walk(outDir)) haystacks.push([f, fs.readFileSync(f, 'latin1')]);
    haystacks.push(['POP journal', await pop('cat /var/lib/fsm-edge/journal.json')]);
    haystacks.push(['POP units', await pop('cat /etc/systemd/system/fsm-edge-backup.*')]);
    haystacks.push(['POP journald', await pop('journalctl --no-pager 2>/dev/null | tail -n 3000')]);
    haystacks.push(['POP process list', await pop('ps -eo args')]);
    expect(transcript.join('').length).toBeGreaterThan(1000);
    for (const [where, text] of haystacks) {
      for (const [name, secret] of Object.entries(secrets)) {
        expect(text.includes(secret), `${name} found in ${where}`).toBe(false);
      }
    }
  });
});
