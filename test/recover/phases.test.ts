// The recover phases against a recording Host: what they refuse before anything changes, what the restore writes
// (where, with which mode, and that secrets cross the link only on a batch's stdin), that k3s's token generation is
// pre-empted, that a journaled restore is never written again (k3s may have changed the datastore since), the etcd
// order (assemble, then --cluster-reset with the staged snapshot), and the forced re-registration after a restore.

import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inputsDigest, type Journal } from '../../src/engine/journal.js';
import type { AnyPhase, PhaseEnv } from '../../src/engine/phase.js';
import { K3S_BINARY, K3S_CONFIG_PATH, K3S_TOKEN_PATH } from '../../src/engine/pop-layout.js';
import { applyChanges, runPhases } from '../../src/engine/runner.js';
import type { InstallContext } from '../../src/install/context.js';
import { K3S_PROBE, k3sPhase } from '../../src/install/k3s.js';
import {
  K3S_DB_DIR,
  K3S_NODE_PASSWORD_PATH,
  K3S_SERVER_TOKEN_PATH,
  POP_RESTORE_MARKER,
  POP_RESTORE_SNAPSHOT,
} from '../../src/recover/backup-entries.js';
import { backupRefusal, olderVersion, recoverCheckPhase, restoreInputs } from '../../src/recover/check.js';
import { RECOVER_PHASES } from '../../src/recover/operation.js';
import { registeredSinceRestore } from '../../src/recover/register.js';
import { etcdRestorePhase, restorePhase } from '../../src/recover/restore.js';
import { writeBytesScript } from '../../src/recover/write-bytes.js';
import { RecordingHost } from '../engine/recording-host.js';
import { memoryBackup, NODE_PASSWORD, recoverContext, tmp, TOKEN, TOKEN_PASSWORD, writtenFiles } from './fixture.js';

const env = (host: RecordingHost, probe = ''): PhaseEnv => ({ host, dryRun: false, signal: new AbortController().signal, probe });

async function planAndApply(phase: AnyPhase<InstallContext>, ctx: InstallContext, probe = '') {
  const host = new RecordingHost();
  const e = env(host, probe);
  const live = await phase.check(ctx, undefined, e);
  const planned = phase.plan(ctx, undefined, live, e);
  const applied: string[] = [];
  await applyChanges(host, planned, e.signal, applied);
  return { planned: planned.map((c) => c.description), applied, host };
}

describe('recover-check: refusals before anything changes', () => {
  it('refuses a backup of another site, naming both, and takes it with the explicit flag', async () => {
    const b = memoryBackup({ site: 'pop-other' });
    const refusal = backupRefusal(recoverContext(b));
    expect(refusal?.reason).toContain('is of site "pop-other", not "pop1"');
    expect(refusal?.fix).toContain('--allow-other-site');
    expect(backupRefusal(recoverContext(b, { allowOtherSite: true }))).toBeUndefined();
  });

  it('refuses a datastore of the other kind, an older k3s in the bundle, and a backup missing an entry (named)', () => {
    expect(backupRefusal(recoverContext(memoryBackup({ datastore: 'etcd' })))?.reason).toContain('holds a etcd datastore');
    expect(backupRefusal(recoverContext(memoryBackup(), { k3s: 'v1.36.1+k3s1' }))?.reason).toContain('older than the k3s v1.37.1+k3s1');
    expect(backupRefusal(recoverContext(memoryBackup({ drop: ['k3s/node-password'] })))?.reason).toContain(
      'has no entry k3s/node-password',
    );
    expect(backupRefusal(recoverContext(memoryBackup({ token: 'K10zz;rm -rf /' })))?.reason).toContain('is not a k3s server token');
    expect(olderVersion('v1.37.1+k3s1', 'v1.37.1+k3s2')).toBe(true);
    expect(olderVersion('v1.37.2+k3s1', 'v1.37.1+k3s9')).toBe(false);
  });

  it('refuses a POP that still has a datastore, unless this backup began restoring it (marker) or the journal says it did', async () => {
    const b = memoryBackup();
    const host = new RecordingHost();
    const probe = (marker = '') => `datastore=1\nmarker=${marker}\nactive=active\n`;
    await expect(recoverCheckPhase.check(recoverContext(b), undefined, env(host, probe()))).rejects.toThrow(
      /already has a k3s datastore in \/var\/lib\/rancher\/k3s\/server\/db and k3s is running/,
    );
    await expect(recoverCheckPhase.check(recoverContext(b), undefined, env(host, probe(b.sha256)))).resolves.toMatchObject({
      restored: false,
    });
    const ctx = recoverContext(b);
    ctx.journal = {
      version: 1,
      site: 'pop1',
      runs: [],
      phases: { restore: { inputs: inputsDigest(restoreInputs(b)), finishedAt: 'x', durationMs: 1, summary: '', runId: 'r' } },
    };
    await expect(recoverCheckPhase.check(ctx, undefined, env(host, probe()))).resolves.toMatchObject({ restored: true });
    await expect(
      recoverCheckPhase.check(recoverContext(b), undefined, env(host, 'datastore=0\nmarker=\nactive=inactive\n')),
    ).resolves.toBeTruthy();
  });
});

describe('restore phase', () => {
  it('writes token, node password and the SQLite db (0600) before k3s; secrets only on the batch stdin', async () => {
    const b = memoryBackup();
    const r = await planAndApply(restorePhase, recoverContext(b));
    expect(r.applied).toEqual(r.planned);
    expect(r.host.commands()).toEqual(['sh -s']);
    const files = writtenFiles(r.host.changes);
    expect(files.get(K3S_TOKEN_PATH)).toEqual({ data: Buffer.from(TOKEN_PASSWORD), mode: 0o600 });
    expect(files.get(K3S_SERVER_TOKEN_PATH)).toEqual({ data: Buffer.from(`${TOKEN}\n`), mode: 0o600 });
    expect(files.get(K3S_NODE_PASSWORD_PATH)).toEqual({ data: Buffer.from(NODE_PASSWORD), mode: 0o600 });
    expect(files.get(`${K3S_DB_DIR}/state.db`)?.data.equals(b.entry('datastore/sqlite/state.db'))).toBe(true);
    // The marker is the first change: a killed run leaves it before any datastore byte.
    expect(r.planned[0]).toContain(POP_RESTORE_MARKER);
    // No secret in argv, in a change's description, or in clear text anywhere in what was sent.
    const sent = r.host.calls.map((c) => `${c.command ?? ''}\n${c.stdin ?? ''}`).join('\n');
    expect(sent).not.toContain(TOKEN_PASSWORD);
    expect(sent).not.toContain(NODE_PASSWORD.trim());
    expect(r.planned.join('\n')).not.toMatch(new RegExp(`${TOKEN_PASSWORD}|${NODE_PASSWORD.trim()}`));
  });

  it('the restored token file is the one the k3s phase checks: it plans no new token after a restore', async () => {
    expect(K3S_PROBE).toContain(`[ -s ${K3S_TOKEN_PATH} ]`);
    const ctx = recoverContext(memoryBackup());
    const host = new RecordingHost();
    const probe = `sha ${K3S_CONFIG_PATH} -\ntoken=1\nunit=0\nactive=inactive`;
    const files = k3sPhase.prepare!(ctx, env(host));
    const live = await k3sPhase.check(ctx, files, env(host, probe));
    expect(
      k3sPhase
        .plan(ctx, files, live, env(host, probe))
        .map((c) => c.description)
        .join('\n'),
    ).not.toMatch(/generate the k3s cluster token/);
    // And the order of the operation puts the restore before k3s's first start.
    const ids = RECOVER_PHASES.map((p) => p.id);
    expect(ids.indexOf('restore')).toBeLessThan(ids.indexOf('k3s'));
    expect(ids.indexOf('restore-etcd')).toBeLessThan(ids.indexOf('k3s'));
    expect(ids.indexOf('sync')).toBeLessThan(ids.indexOf('restore-etcd'));
  });

  it('never writes again once journaled with this backup (k3s has run on those files since)', async () => {
    const b = memoryBackup();
    const ctx = recoverContext(b);
    ctx.journal = {
      version: 1,
      site: 'pop1',
      runs: [],
      phases: { restore: { inputs: inputsDigest(restoreInputs(b)), finishedAt: 'x', durationMs: 1, summary: '', runId: 'r' } },
    };
    const r = await planAndApply(restorePhase, ctx);
    expect(r.planned).toEqual([]);
    expect(r.host.calls).toEqual([]);
  });

  it('a run killed after the restore batch re-runs it (not journaled) and journals it once it finishes', async () => {
    const b = memoryBackup();
    const host = new RecordingHost();
    host.failChange = { match: /state\.db/, code: 137, stderr: 'Killed' };
    const run = () => {
      const ctx = recoverContext(b);
      return runPhases([restorePhase], ctx, host, {
        site: 'pop1',
        operation: 'restore',
        dryRun: false,
        onJournal: (j) => (ctx.journal = j),
      });
    };
    const first = await run();
    expect(first.ok).toBe(false);
    const journalPath = '/var/lib/fsm-edge/journal.json';
    const j1 = JSON.parse(host.files.get(journalPath)!.toString()) as Journal;
    expect(j1.phases.restore).toBeUndefined();
    expect(j1.runs[0]).toMatchObject({ operation: 'restore', outcome: 'failed', failedPhase: 'restore' });
    host.failChange = undefined;
    const second = await run();
    expect(second.ok).toBe(true);
    const j2 = JSON.parse(host.files.get(journalPath)!.toString()) as Journal;
    expect(j2.phases.restore?.inputs).toBe(inputsDigest(restoreInputs(b)));
    const third = await run();
    expect(third.phases[0]!.status).toBe('unchanged');
    // The journal never holds a secret.
    expect(host.files.get(journalPath)!.toString()).not.toContain(TOKEN_PASSWORD);
  });

  it('etcd: the snapshot is staged, then assembled k3s runs --cluster-reset with it before k3s starts', async () => {
    const b = memoryBackup({ datastore: 'etcd' });
    const ctx = recoverContext(b, { datastore: 'etcd' });
    const restore = await planAndApply(restorePhase, ctx);
    expect(writtenFiles(restore.host.changes).get(POP_RESTORE_SNAPSHOT)?.data.equals(b.entry('datastore/etcd-snapshot'))).toBe(true);
    const r = await planAndApply(etcdRestorePhase, ctx);
    expect(r.planned).toEqual([
      `write ${K3S_CONFIG_PATH}`,
      'write the assembly plan /var/lib/fsm-edge/assemble.plan',
      'assemble the k3s binary from the blob store',
      `k3s server --cluster-reset --cluster-reset-restore-path=${POP_RESTORE_SNAPSHOT}`,
    ]);
    expect(r.host.files.get(K3S_CONFIG_PATH)?.toString()).toContain('cluster-init: true');
    expect(r.host.changes.at(-1)).toContain(`${K3S_BINARY} server --cluster-reset --cluster-reset-restore-path=${POP_RESTORE_SNAPSHOT}`);
    // SQLite has nothing to reset.
    expect((await planAndApply(etcdRestorePhase, recoverContext(memoryBackup()))).planned).toEqual([]);
  });
});

describe('the base64/gzip write as a POP shell runs it', () => {
  it('writes the exact bytes atomically with the mode (binary, empty and compressed)', () => {
    for (const [name, data, gzip] of [
      ['bin', Buffer.from([0, 1, 2, 255, 10, 13, 39, 34]), false],
      ['empty', Buffer.alloc(0), false],
      ['db', Buffer.from('SQLite format 3\0'.repeat(5000)), true],
    ] as const) {
      const file = path.join(tmp, 'w', name);
      execFileSync('sh', ['-s'], { input: writeBytesScript(file, data, 0o600, { gzip }) });
      expect(readFileSync(file).equals(data)).toBe(true);
      expect(statSync(file).mode & 0o777).toBe(0o600);
    }
  });
});

describe('re-registration after a restore', () => {
  it('forces the Cluster to be re-applied until a registration newer than the restore is journaled', () => {
    const ctx = recoverContext(memoryBackup());
    const entry = (finishedAt: string) => ({ inputs: 'x', finishedAt, durationMs: 1, summary: '', runId: 'r' });
    ctx.journal = { version: 1, site: 'pop1', runs: [], phases: { restore: entry('2026-11-29T10:00:00Z') } };
    expect(registeredSinceRestore(ctx)).toBe(false);
    ctx.journal.phases.register = entry('2026-11-20T10:00:00Z');
    expect(registeredSinceRestore(ctx)).toBe(false);
    ctx.journal.phases.register = entry('2026-11-29T10:05:00Z');
    expect(registeredSinceRestore(ctx)).toBe(true);
  });
});
