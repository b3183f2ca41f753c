// One controller at a time and nothing hangs, against a real lab POP over SSH: the POP-wide lock (refusal naming
// the holder, release when the holder's controller dies, re-take after a link cut, loss to another run), the blob
// store under two concurrent writers, and a POP-side writer that stops answering.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PopInfo } from '../lab/types.js';
import { popDown, popExec, popUp } from '../lab/pop.js';
import { cutLink, restoreLink } from '../lab/link.js';
import { PopLockedError, type BlobWant, type LockOwner } from '../../src/transport/host.js';
import { SshHost } from '../../src/transport/ssh-host.js';
import { POP_LOCK_PATH } from '../../src/transport/pop-paths.js';
import { targetOf } from './lab-helpers.js';

const STORE = '/var/lib/fsm-edge/store';
const LOCK = POP_LOCK_PATH;
const dir = mkdtempSync(join(tmpdir(), 'fsm-edge-trust-lab-'));
let pop: PopInfo;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const owner = (runId: string, controller: string): LockOwner => ({
  controller,
  runId,
  operation: 'install',
  startedAt: new Date().toISOString(),
  pid: process.pid,
});
// short keepalive so a cut is noticed quickly; reconnects keep trying through the cut
const connect = () =>
  SshHost.connect(targetOf(pop), {
    keepaliveIntervalMs: 1000,
    keepaliveCountMax: 2,
    readyTimeoutMs: 4000,
    reconnect: { giveUpAfterMs: 120_000, maxDelayMs: 2000 },
  });

/** The first connect after restoring a link can meet a forwarder that is not ready yet: a few tries. */
async function connectWhenUp(): Promise<SshHost> {
  for (let i = 0; ; i++) {
    try {
      return await connect();
    } catch (e) {
      if (i >= 10) throw e;
      await sleep(1000);
    }
  }
}

function blobFile(name: string, size: number): BlobWant & { hex: string } {
  const data = randomBytes(size);
  const sourcePath = join(dir, name);
  writeFileSync(sourcePath, data);
  return {
    digest: `sha256:${createHash('sha256').update(data).digest('hex')}`,
    size,
    sourcePath,
    hex: createHash('sha256').update(data).digest('hex'),
  };
}

async function refused(p: Promise<unknown>): Promise<PopLockedError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(PopLockedError);
  return e as PopLockedError;
}

beforeAll(async () => {
  pop = await popUp({ arch: 'amd64' });
});
afterAll(async () => {
  if (pop) await popDown(pop);
  rmSync(dir, { recursive: true, force: true });
});

describe('the POP-wide lock over SSH', () => {
  it('refuses a second controller, naming the first; the owner file is public JSON', async () => {
    const a = await connect();
    const b = await connect();
    try {
      const la = await a.lock(owner('run-a', 'controller-a'));
      const e = await refused(b.lock(owner('run-b', 'controller-b')));
      expect(e.holder).toMatchObject({ controller: 'controller-a', runId: 'run-a', operation: 'install', pid: process.pid });
      expect(e.message).toMatch(/install run run-a from controller controller-a/);
      const onPop = await popExec(pop, `stat -c '%a %U' ${LOCK}.owner ${LOCK}.holder; cat ${LOCK}.owner`);
      const [ownerMode, holderMode, json] = onPop.stdout.split('\n');
      expect([ownerMode, holderMode]).toEqual(['644 root', '600 root']);
      expect(JSON.parse(json!)).toMatchObject({ runId: 'run-a' });
      await la.release();
      const lb = await b.lock(owner('run-b', 'controller-b'));
      await lb.release();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('is freed when the controller process holding it is killed (SIGKILL)', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, 'fixtures', 'hold-lock.ts'),
        JSON.stringify({ ssh: { target: targetOf(pop) }, runId: 'child-run' }),
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
      child.on('exit', (c) => reject(new Error(`lock-holding child exited ${c}`)));
    });
    const b = await connect();
    try {
      const e = await refused(b.lock(owner('run-b', 'controller-b')));
      expect(e.holder).toMatchObject({ controller: 'child-controller', runId: 'child-run', pid: child.pid });
      child.kill('SIGKILL');
      const lb = await b.lock(owner('run-b', 'controller-b'), { timeoutMs: 30_000 });
      await lb.release();
    } finally {
      await b.close();
    }
  });

  it('after a link cut, re-takes its own lock (stopping its stale holder) before the next command', async () => {
    const a = await connect();
    const b = await connect();
    try {
      const la = await a.lock(owner('run-a', 'controller-a'));
      const staleHolder = (await popExec(pop, `cut -d' ' -f1 ${LOCK}.holder`)).stdout.trim();
      await cutLink(pop);
      await sleep(4000); // keepalive declares the link lost; the POP's sshd has not noticed
      await restoreLink(pop);
      expect(await a.run('echo after the cut')).toBe('after the cut\n');
      expect(a.stats().connects).toBeGreaterThanOrEqual(2);
      const e = await refused(b.lock(owner('run-b', 'controller-b')));
      expect(e.holder).toMatchObject({ runId: 'run-a' });
      expect(
        (await popExec(pop, `cut -d' ' -f1 ${LOCK}.holder; kill -0 ${staleHolder} 2>/dev/null && echo alive || echo gone`)).stdout,
      ).toMatch(/^\d+\ngone\n$/);
      await la.release();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('when another run took the lock during a long cut, every later command fails naming it', async () => {
    const a = await connect();
    try {
      await a.lock(owner('run-a', 'controller-a'));
      await cutLink(pop);
      // the cut-off holder gets no heartbeats: its lease runs out and the kernel drops the lock (seen from inside)
      for (let i = 0; i < 120 && (await popExec(pop, `flock -n ${LOCK} true`, { allowFail: true })).code !== 0; i++) await sleep(1000);
      await restoreLink(pop);
      const b = await connectWhenUp();
      const lb = await b.lock(owner('run-b', 'controller-b'));
      const e = await refused(a.run('echo must not run'));
      expect(e.holder).toMatchObject({ runId: 'run-b', controller: 'controller-b' });
      expect(e.message).toMatch(/lock of this run \(install run run-a\) was lost/);
      await refused(a.writeFile('/tmp/x', 'y'));
      await lb.release();
      await b.close();
    } finally {
      await restoreLink(pop);
      await a.close();
    }
  }, 240_000);
});

describe('the blob store over SSH', () => {
  it('two controllers writing the same blob at once store exactly its bytes', async () => {
    const one = blobFile('race', 8 * 1024 * 1024 + 99);
    const a = await connect();
    const b = await connect();
    try {
      const opts = { storeDir: STORE, maxRate: 8 * 1024 * 1024 };
      await Promise.all([a.syncBlobs([one], opts), b.syncBlobs([one], opts)]);
      const onPop = await popExec(pop, `sha256sum < ${STORE}/sha256/${one.hex} | cut -d' ' -f1; ls -A ${STORE}/partial`);
      expect(onPop.stdout).toBe(`${one.hex}\n`);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('an empty blob left in the store is re-sent and replaced', async () => {
    const b = blobFile('was-empty', 1024 * 1024);
    await popExec(pop, `mkdir -p ${STORE}/sha256 && : > ${STORE}/sha256/${b.hex}`);
    const h = await connect();
    try {
      const r = await h.syncBlobs([b], { storeDir: STORE });
      expect(r).toMatchObject({ alreadyPresent: 0, sentBlobs: 1, sentBytes: b.size });
      expect((await popExec(pop, `sha256sum < ${STORE}/sha256/${b.hex} | cut -d' ' -f1`)).stdout).toBe(`${b.hex}\n`);
    } finally {
      await h.close();
    }
  });

  it('a writer that stops answering (SIGSTOP of its dd) ends in a resume, not a hang', async () => {
    const b = blobFile('stalled', 6 * 1024 * 1024);
    const h = await connect();
    let stopped: Promise<unknown> | undefined;
    try {
      const r = await h.syncBlobs([b], {
        storeDir: STORE,
        maxRate: 2 * 1024 * 1024,
        stallTimeoutMs: 3000,
        onProgress: (p) => {
          if (p.sentBytes > 1024 * 1024) stopped ??= popExec(pop, `pkill -STOP -x dd; pgrep -x dd`);
        },
      });
      expect((await stopped) as { stdout: string }).toMatchObject({ stdout: expect.stringMatching(/^\d+/) });
      expect(r).toMatchObject({ sentBlobs: 1, resumedBlobs: 1 });
      expect((await popExec(pop, `sha256sum < ${STORE}/sha256/${b.hex} | cut -d' ' -f1; pgrep -x dd || true`)).stdout).toBe(`${b.hex}\n`);
    } finally {
      await h.close();
    }
  });
});
