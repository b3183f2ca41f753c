// The backup operation's pure parts: the POP listing and the snapshot script's report, the POP tar → backup
// entries and manifest (refusing another site's snapshot, links and stray files), the timer's units, the shell
// scripts' syntax, and the CLI's refusals of ambiguous keys.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Header } from 'tar';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type BackupContext, backupContents, parseSnapshotListing, parseSnapshotOutput } from '../../src/backup/operation.js';
import { SiteSchema } from '../../src/config/site.js';
import { PhaseRefusal } from '../../src/engine/failure.js';
import { BACKUP_TIMER_PROBE, backupUnits, SNAPSHOT_SCRIPT, snapshotCommand } from '../../src/install/backup-timer.js';
import { pullScript } from '../../src/transport/file-pull.js';
import { runMain } from '../cli/run-cli.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backup-op-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const siteDoc = {
  apiVersion: 'edge.flomesh.io/v1alpha1',
  kind: 'Site',
  metadata: { name: 'pop-a' },
  spec: {
    ssh: { host: '10.0.0.5', user: 'pop', agent: true, hostKeys: ['SHA256:' + 'A'.repeat(42) + 'E'] },
    hub: { ref: 'hub', region: 'eu', zone: 'z1', group: 'retail', gateway: { host: '10.0.0.5', port: 80 } },
    backup: { recipients: ['age1' + 'q'.repeat(58)], keep: 3, schedule: '*-*-* 02:30:00', volumes: ['/srv/data'] },
  },
};
const site = SiteSchema.parse(siteDoc);

function tar(files: Array<{ path: string; data?: string; type?: 'File' | 'Directory' | 'SymbolicLink'; linkpath?: string }>): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const type = f.type ?? 'File';
    const data = Buffer.from(f.data ?? '');
    const h = new Header({
      path: f.path,
      mode: 0o600,
      size: type === 'File' ? data.length : 0,
      type,
      mtime: new Date(0),
      ...(f.linkpath ? { linkpath: f.linkpath } : {}),
    });
    const b = Buffer.alloc(512);
    h.encode(b, 0);
    parts.push(b);
    if (type === 'File') parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const info = (over: Record<string, string> = {}) =>
  Object.entries({
    format: 'fsm-edge-pop-snapshot/v1',
    site: 'pop-a',
    source: 'scheduled',
    createdAt: '2026-11-29T02:30:11Z',
    nodeName: 'pop-a',
    arch: 'aarch64',
    k3sVersion: 'v1.37.1+k3s1',
    datastore: 'sqlite',
    pauseMs: '640',
    ...over,
  })
    .map(([k, v]) => `${k}=${v}\n`)
    .join('');

const snap = {
  path: '/var/lib/fsm-edge/backups/scheduled/pop-a-20261129T023011Z.tar',
  name: 'pop-a-20261129T023011Z',
  size: 1,
  sha256: 'a'.repeat(64),
  createdAt: new Date('2026-11-29T02:30:11Z'),
  source: 'scheduled' as const,
  reused: true,
  volumes: [],
};
const ctx = (): BackupContext => ({
  site,
  configDir: dir,
  options: { dryRun: false, outDir: dir, keys: { recipients: [] }, collect: true, volumes: [], stateDir: path.join(dir, 'state') },
});

describe('backup operation parts', () => {
  it('parses the POP listing (staged and scheduled, oldest first, volumes) and ignores odd names', () => {
    const sha = 'b'.repeat(64);
    const l = parseSnapshotListing(
      [
        `snap /var/lib/fsm-edge/backups/scheduled pop-a-20261129T023011Z 100 ${sha}`,
        `snap /var/lib/fsm-edge/backups/scheduled pop-a-20261128T023011Z 90 ${sha}`,
        `snap /var/lib/fsm-edge/backups/staging pop-a-20261129T101010Z 120 ${sha} /srv/data /srv/other`,
        `snap /var/lib/fsm-edge/backups/staging ../../etc-20261129T101010Z 120 ${sha}`,
        `snap /tmp pop-a-20261129T101010Z 120 ${sha}`,
        'script -',
      ].join('\n'),
    );
    expect(l.scheduled.map((s) => s.name)).toEqual(['pop-a-20261128T023011Z', 'pop-a-20261129T023011Z']);
    expect(l.staged).toHaveLength(1);
    expect(l.staged[0]).toMatchObject({ source: 'controller', volumes: ['/srv/data', '/srv/other'], size: 120 });
    expect(l.scriptSha).toBe('-');
  });

  it("parses the script's report line and refuses a report without one", () => {
    const s = parseSnapshotOutput(
      `noise\nsnapshot=/var/lib/fsm-edge/backups/staging/pop-a-20261129T101010Z.tar size=2048 sha256=${'c'.repeat(64)} pauseMs=812 datastore=sqlite\n`,
    );
    expect(s).toMatchObject({ name: 'pop-a-20261129T101010Z', size: 2048, pauseMs: 812, reused: false });
    expect(() => parseSnapshotOutput('k3s failed\n')).toThrow(/did not report its snapshot/);
  });

  it('maps the POP tar to the contract entries and the manifest (arch, pause, registration without secrets)', async () => {
    const t = tar([
      { path: 'k3s/', type: 'Directory' },
      { path: 'k3s/token', data: 'K10abc::server:tok' },
      { path: 'k3s/node-password', data: 'np' },
      { path: 'datastore/sqlite/state.db', data: 'db' },
      { path: 'pop/journal.json', data: '{}' },
      { path: 'meta/info.env', data: info() },
    ]);
    const { manifest, entries } = await backupContents(ctx(), snap, t);
    expect(manifest).toMatchObject({
      site: 'pop-a',
      source: 'scheduled',
      k3s: { version: 'v1.37.1+k3s1', datastore: 'sqlite', nodeName: 'pop-a', arch: 'arm64' },
      pause: { controlPlaneMs: 640 },
    });
    const paths = entries.map((e) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining(['k3s/token', 'datastore/sqlite/state.db', 'controller/site-spec.json', 'hub/registration.json']),
    );
    const reg = JSON.parse(entries.find((e) => e.path === 'hub/registration.json')!.data.toString());
    expect(reg).toMatchObject({
      clusterName: 'pop-a',
      region: 'eu',
      zone: 'z1',
      group: 'retail',
      gatewayHost: '10.0.0.5',
      apiEndpoint: 'https://10.0.0.5:6443',
    });
    expect(JSON.stringify(reg)).not.toMatch(/token/i);
  });

  it("refuses another site's snapshot, a link, a stray file, and a snapshot without a token", async () => {
    const base = [
      { path: 'k3s/token', data: 't' },
      { path: 'meta/info.env', data: info() },
    ];
    const other = tar([
      { path: 'k3s/token', data: 't' },
      { path: 'meta/info.env', data: info({ site: 'pop-b' }) },
    ]);
    const e = await backupContents(ctx(), snap, other).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PhaseRefusal);
    expect((e as Error).message).toMatch(/of site "pop-b", not "pop-a"/);
    await expect(
      backupContents(ctx(), snap, tar([...base, { path: 'k3s/x', type: 'SymbolicLink', linkpath: '/etc/shadow' }])),
    ).rejects.toThrow(/SymbolicLink/);
    await expect(backupContents(ctx(), snap, tar([...base, { path: 'etc/cron.d/x', data: 'x' }]))).rejects.toThrow(/unexpected entry/);
    await expect(backupContents(ctx(), snap, tar([{ path: 'meta/info.env', data: info() }]))).rejects.toThrow(/no k3s\/token/);
  });

  it('the timer runs the snapshot script with the site’s retention, schedule and volumes', () => {
    const u = backupUnits(site);
    expect(u.timer).toMatch(/^OnCalendar=\*-\*-\* 02:30:00$/m);
    expect(u.timer).toMatch(/^Persistent=true$/m);
    expect(u.service).toContain(
      `ExecStart=${snapshotCommand('/var/lib/fsm-edge/backups/scheduled', 'pop-a', 'scheduled', 3, ['/srv/data'])}`,
    );
    expect(u.service).toMatch(
      /ExecStart=\/bin\/sh \/var\/lib\/fsm-edge\/backup-snapshot\.sh '\/var\/lib\/fsm-edge\/backups\/scheduled' 'pop-a' scheduled 3 '\/srv\/data'/,
    );
  });

  it('every shell script parses (sh -n)', () => {
    for (const [name, script] of [
      ['snapshot', SNAPSHOT_SCRIPT],
      ['timer probe', BACKUP_TIMER_PROBE],
      ['pull', pullScript('/var/lib/fsm-edge/backups/staging/pop-a-20261129T101010Z.tar', 0, 65536)],
    ] as const) {
      const r = spawnSync('sh', ['-n'], { input: script });
      expect(r.status, `${name}: ${r.stderr}`).toBe(0);
    }
  });

  it('the CLI refuses a passphrase with recipients, and a backup with no key at all, before connecting', { timeout: 60_000 }, async () => {
    const f = path.join(dir, 'site.yaml');
    const noBackup = { ...siteDoc, spec: { ...siteDoc.spec, backup: undefined, hub: undefined } };
    fs.writeFileSync(f, stringify(JSON.parse(JSON.stringify(noBackup))));
    const pf = path.join(dir, 'pass.txt');
    fs.writeFileSync(pf, 'secret-pass\n');
    const both = await runMain(['backup', f, '--recipient', 'age1' + 'q'.repeat(58), '--passphrase-file', pf]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/age allows a passphrase only as the sole recipient/);
    expect(both.stderr).not.toContain('secret-pass');
    const none = await runMain(['backup', f], { env: { PATH: process.env.PATH } });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no age recipient or passphrase for pop-a/);
    const badVol = await runMain(['backup', f, '--recipient', 'age1' + 'q'.repeat(58), '--volume', '/srv/../etc']);
    expect(badVol.code).toBe(2);
  });
});
