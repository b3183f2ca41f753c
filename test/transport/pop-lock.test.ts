// The POP-wide lock on this machine: LocalHost runs the very same holder script (flock, owner file, heartbeats)
// that SshHost runs on a POP; only the channel differs (a child process instead of an SSH exec).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PopLockedError, type LockOwner } from '../../src/transport/host.js';
import { LocalHost } from '../../src/transport/local-host.js';
import { parseOwner } from '../../src/transport/pop-lock.js';

const root = mkdtempSync(join(tmpdir(), 'fsm-edge-poplock-'));
let n = 0;
const lockPath = () => join(root, `lock-${++n}`, 'lock');
const owner = (runId: string, controller = 'ctl-a'): LockOwner => ({
  controller,
  runId,
  operation: 'install',
  startedAt: '2026-11-29T07:00:00.000Z',
  pid: 4242,
});
const host = (lp: string) => new LocalHost({ name: 'pop', sudo: false, lockPath: lp });

async function refusal(p: Promise<unknown>): Promise<PopLockedError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(PopLockedError);
  return e as PopLockedError;
}

describe('POP lock (LocalHost, real holder script)', () => {
  it('refuses a second run, naming the holder; the owner record is public and secret-free; release frees it', async () => {
    const lp = lockPath();
    const a = host(lp);
    const b = host(lp);
    const la = await a.lock(owner('run-a'));
    const e = await refusal(b.lock(owner('run-b', 'ctl-b')));
    expect(e.holder).toEqual(owner('run-a'));
    expect(e.message).toMatch(/install run run-a from controller ctl-a \(pid 4242\), started 2026-11-29T07:00:00.000Z/);
    expect(JSON.parse(readFileSync(`${lp}.owner`, 'utf8'))).toEqual(owner('run-a'));
    expect(statSync(`${lp}.owner`).mode & 0o777).toBe(0o644);
    expect(statSync(`${lp}.holder`).mode & 0o777).toBe(0o600);
    await la.release();
    const lb = await b.lock(owner('run-b', 'ctl-b'));
    await expect(a.lock(owner('run-c'))).rejects.toBeInstanceOf(PopLockedError);
    await lb.release();
  });

  it('waits for a holder when asked to', async () => {
    const lp = lockPath();
    const a = host(lp);
    const la = await a.lock(owner('run-a'));
    const waiting = host(lp).lock(owner('run-b'), { timeoutMs: 20_000 });
    setTimeout(() => void la.release(), 300);
    const lb = await waiting;
    expect(lb.owner.runId).toBe('run-b');
    await lb.release();
  });

  it('dies with the controller: SIGKILL of the process holding it frees the lock', async () => {
    const lp = lockPath();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'hold-lock.ts'), JSON.stringify({ local: { lockPath: lp } })],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
      child.on('exit', (c) => reject(new Error(`holder child exited ${c}`)));
    });
    const b = host(lp);
    const e = await refusal(b.lock(owner('run-b')));
    expect(e.holder).toMatchObject({ controller: 'child-controller', runId: 'child-run', pid: child.pid });
    child.kill('SIGKILL');
    const lb = await b.lock(owner('run-b'), { timeoutMs: 20_000 });
    expect(JSON.parse(readFileSync(`${lp}.owner`, 'utf8'))).toEqual(owner('run-b'));
    await lb.release();
  }, 60_000);

  it('re-takes its own lock when its holder died, but fails every later command once another run took it', async () => {
    const lp = lockPath();
    const a = host(lp);
    await a.lock(owner('run-a'));
    // like a link drop: the holder process is gone (and the host has seen its channel close)
    const killHolder = async () => {
      process.kill(Number(readFileSync(`${lp}.holder`, 'utf8').split(' ')[0]), 'SIGKILL');
      for (let i = 0; i < 100 && spawnSync('flock', ['-n', lp, 'true']).status !== 0; i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 200));
    };

    await killHolder(); // nobody else took the lock: the next command re-takes it
    expect(await a.run('echo still mine')).toBe('still mine\n');
    await expect(host(lp).lock(owner('run-x'))).rejects.toBeInstanceOf(PopLockedError);

    await killHolder();
    const c = host(lp);
    const lc = await c.lock(owner('run-c', 'ctl-c'));
    const e = await refusal(a.run('echo should not run'));
    expect(e.holder).toMatchObject({ runId: 'run-c', controller: 'ctl-c' });
    expect(e.message).toMatch(/lock of this run \(install run run-a\) was lost .* run run-c from controller ctl-c/);
    await expect(a.syncBlobs([], { storeDir: join(root, 'store') })).rejects.toBeInstanceOf(PopLockedError);
    await lc.release();
  }, 30_000);

  it('reads only the known fields of an owner record, as printable text', () => {
    expect(parseOwner('{"controller":"c\\u001b[31m","runId":"r","operation":"o","startedAt":"t","pid":7,"token":"x"}')).toEqual({
      controller: 'c?[31m',
      runId: 'r',
      operation: 'o',
      startedAt: 't',
      pid: 7,
    });
    expect(parseOwner('not json')).toBeUndefined();
    expect(parseOwner('{"controller":1}')).toBeUndefined();
  });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));
