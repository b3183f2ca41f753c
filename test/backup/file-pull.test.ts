// The resumable, verified pull (transport/file-pull.ts) against a real shell on this machine (LocalHost runs the
// same POSIX sender an SSH POP runs). A "cut" is a host whose stream stops after N bytes and then fails, as a
// dropped link does; the next attempt must continue from the verified chunks kept, encrypted, on disk.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PullError, pullFile, pullScript } from '../../src/transport/file-pull.js';
import type { ExecOptions, Host } from '../../src/transport/host.js';
import { LocalHost } from '../../src/transport/local-host.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'file-pull-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const MARKER = Buffer.from('K10-THIS-IS-THE-SERVER-TOKEN-MARKER');
function sourceFile(size: number): { file: string; data: Buffer; sha: string } {
  const data = randomBytes(size);
  MARKER.copy(data, 10);
  MARKER.copy(data, size - 100_000);
  const file = path.join(dir, `src-${size}-${Date.now()}.tar`);
  fs.writeFileSync(file, data);
  return { file, data, sha: createHash('sha256').update(data).digest('hex') };
}

/** A host whose exec stream is cut after `cutAfter` bytes of stdout: the call then fails like a dropped link. */
function cutting(real: Host, cutAfter: number[]): Host & { calls: number } {
  const h = Object.create(real) as Host & { calls: number };
  h.calls = 0;
  h.exec = async (command: string, opts: ExecOptions = {}) => {
    const limit = cutAfter[h.calls++];
    if (limit === undefined) return real.exec(command, opts);
    let seen = 0;
    await real.exec(command, {
      ...opts,
      onStdout: (d) => {
        if (seen >= limit) return;
        const part = d.subarray(0, Math.min(d.length, limit - seen));
        seen += part.length;
        opts.onStdout?.(part);
      },
    });
    throw Object.assign(new Error('connection lost while running the pull (cut by the test)'), { name: 'ConnectionLostError' });
  };
  return h;
}

const host = new LocalHost({ name: 'pop', sudo: false });
const key = randomBytes(32);
const CHUNK = 256 * 1024;

describe('pullFile', () => {
  it('pulls a file whole, verified, and removes its partial', async () => {
    const s = sourceFile(3 * 1024 * 1024 + 12345);
    const partial = path.join(dir, 'p1', 'x.part');
    const r = await pullFile(host, {
      remotePath: s.file,
      size: s.data.length,
      sha256: s.sha,
      partialPath: partial,
      sealKey: key,
      chunkBytes: CHUNK,
    });
    expect(r.data.equals(s.data)).toBe(true);
    expect(r.report).toMatchObject({ bytes: s.data.length, resumedFrom: 0, resentBytes: 0, attempts: 1 });
    expect(fs.existsSync(partial)).toBe(false);
  });

  it('after a cut, the next attempt resumes from the kept chunks; at most one chunk is re-sent per cut', async () => {
    const s = sourceFile(3 * 1024 * 1024 + 777);
    const partial = path.join(dir, 'p2', 'x.part');
    const cut = 1024 * 1024 + 100_000; // mid-chunk
    const h = cutting(host, [cut]);
    const r = await pullFile(h, {
      remotePath: s.file,
      size: s.data.length,
      sha256: s.sha,
      partialPath: partial,
      sealKey: key,
      chunkBytes: CHUNK,
    });
    expect(r.data.equals(s.data)).toBe(true);
    expect(r.report.attempts).toBe(2);
    expect(r.report.resentBytes).toBeGreaterThan(0);
    expect(r.report.resentBytes).toBeLessThanOrEqual(CHUNK);
    expect(h.calls).toBe(2);
  });

  it('a run that gives up keeps an encrypted partial (no plaintext on disk); a later run resumes it', async () => {
    const s = sourceFile(2 * 1024 * 1024);
    const partial = path.join(dir, 'p3', 'x.part');
    const base = { remotePath: s.file, size: s.data.length, sha256: s.sha, partialPath: partial, sealKey: key, chunkBytes: CHUNK };
    const e = await pullFile(cutting(host, [CHUNK * 5 + 5 * 200, 0]), { ...base, attempts: 1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PullError);
    expect((e as PullError).keptBytes).toBe(CHUNK * 5);
    expect(fs.statSync(partial).size).toBe(CHUNK * 5);
    expect(fs.statSync(partial).mode & 0o777).toBe(0o600);
    const onDisk = fs.readFileSync(partial);
    expect(onDisk.includes(MARKER)).toBe(false);
    expect(onDisk.equals(s.data.subarray(0, CHUNK * 5))).toBe(false);
    const r = await pullFile(host, base);
    expect(r.report.resumedFrom).toBe(CHUNK * 5);
    expect(r.report.receivedBytes).toBeLessThan(s.data.length - CHUNK * 5 + 4096); // only the rest crossed
    expect(r.data.equals(s.data)).toBe(true);
  });

  it('a partial from a different key or a changed source fails the whole-file digest and is dropped', async () => {
    const s = sourceFile(600_000);
    const partial = path.join(dir, 'p4', 'x.part');
    const base = { remotePath: s.file, size: s.data.length, sha256: s.sha, partialPath: partial, chunkBytes: CHUNK };
    await pullFile(cutting(host, [CHUNK + 500, 0]), { ...base, sealKey: key, attempts: 1 }).catch(() => {});
    expect(fs.statSync(partial).size).toBe(CHUNK);
    await expect(pullFile(host, { ...base, sealKey: randomBytes(32) })).rejects.toThrow(/does not match its digest/);
    expect(fs.existsSync(partial)).toBe(false);
  });

  it('refuses a chunk that fails its digest (the sender lies) and an unsafe remote path', async () => {
    const s = sourceFile(300_000);
    const liar = Object.create(host) as Host;
    liar.exec = async (command: string, opts: ExecOptions = {}) =>
      host.exec(command, {
        ...opts,
        onStdout: (d) =>
          opts.onStdout?.(Buffer.from(d.toString('latin1').replace(/^C (\d+) (\d+) [0-9a-f]{64}/m, `C $1 $2 ${'0'.repeat(64)}`), 'latin1')),
      });
    await expect(
      pullFile(liar, {
        remotePath: s.file,
        size: s.data.length,
        sha256: s.sha,
        partialPath: path.join(dir, 'p5', 'x.part'),
        chunkBytes: CHUNK,
      }),
    ).rejects.toThrow(/failed its digest check/);
    expect(() => pullScript('/var/lib/../etc/shadow', 0, CHUNK)).toThrow(/unsafe/);
    expect(() => pullScript('/tmp/x; rm -rf /', 0, CHUNK)).toThrow(/unsafe/);
  });
});
