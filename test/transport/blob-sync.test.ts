// The blob-sync protocol end to end on this machine: LocalHost runs the very same POP-side writer script (sh, dd,
// stat, sha256sum) that SshHost runs over SSH; only the transport differs.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, afterAll } from 'vitest';
import type { BlobWant, SyncProgress } from '../../src/transport/host.js';
import { LocalHost } from '../../src/transport/local-host.js';
import {
  BlobSyncError,
  BlobVerifyError,
  parseHave,
  parseStoredBlobs,
  storedBlobsScript,
  writerScript,
} from '../../src/transport/blob-sync.js';

const root = mkdtempSync(join(tmpdir(), 'fsm-edge-blobsync-'));
function blob(name: string, data: Buffer): BlobWant & { hex: string; data: Buffer } {
  const path = join(root, name);
  writeFileSync(path, data);
  const hex = createHash('sha256').update(data).digest('hex');
  return { digest: `sha256:${hex}`, size: data.length, sourcePath: path, hex, data };
}
const freshStore = (n: string) => join(root, `store-${n}`);
const stored = (store: string, hex: string) => readFileSync(join(store, 'sha256', hex));
const host = new LocalHost({ name: 'unit', sudo: false });
const execOk = (cmd: string) => spawnSync('/bin/sh', ['-c', cmd]).status === 0;
async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
  expect(cond()).toBe(true);
}

describe('blob sync (LocalHost, real POP-side script)', () => {
  const big = blob('big', randomBytes(9 * 1024 * 1024 + 12345));
  const mid = blob('mid', randomBytes(5 * 1024 * 1024 + 321));
  const small = blob('small', Buffer.from('{"config":true}\n'));
  const empty = blob('empty', Buffer.alloc(0));

  it('stores every blob verified, then a re-sync is one round trip that sends nothing', async () => {
    const store = freshStore('a');
    const events: SyncProgress[] = [];
    const all = big.size + mid.size + small.size;
    const r = await host.syncBlobs([big, mid, small, empty, small], { storeDir: store, streams: 2, onProgress: (p) => events.push(p) });
    expect(r).toMatchObject({ wanted: 4, alreadyPresent: 0, sentBlobs: 4, sentBytes: all, resentBytes: 0 });
    for (const b of [big, mid, small, empty]) expect(stored(store, b.hex).equals(b.data)).toBe(true);
    // no partial and no writer record left behind
    expect(readdirSync(join(store, 'partial'))).toEqual([]);
    expect(events.at(-1)).toMatchObject({ sentBytes: all, totalBytes: all });

    const again = await host.syncBlobs([big, mid, small, empty], { storeDir: store });
    expect(again).toMatchObject({ wanted: 4, alreadyPresent: 4, sentBlobs: 0, sentBytes: 0, roundTrips: 1 });
  });

  it('resumes at the size of an existing partial and sends only the missing bytes', async () => {
    const store = freshStore('b');
    mkdirSync(join(store, 'partial'), { recursive: true });
    const have = 3 * 1024 * 1024 + 7;
    writeFileSync(join(store, 'partial', big.hex), big.data.subarray(0, have));
    const r = await host.syncBlobs([big], { storeDir: store });
    expect(r).toMatchObject({ sentBlobs: 1, resumedBlobs: 1, sentBytes: big.size - have, resentBytes: 0 });
    expect(stored(store, big.hex).equals(big.data)).toBe(true);
  });

  it('detects a corrupted partial, deletes it and sends the blob again from zero', async () => {
    const store = freshStore('c');
    mkdirSync(join(store, 'partial'), { recursive: true });
    const junk = Buffer.from(big.data.subarray(0, 1024 * 1024));
    junk[4242] = junk[4242]! ^ 0xff;
    writeFileSync(join(store, 'partial', big.hex), junk);
    const r = await host.syncBlobs([big], { storeDir: store });
    expect(r.sentBlobs).toBe(1);
    expect(r.sentBytes).toBe(big.size - junk.length + big.size);
    expect(r.resentBytes).toBe(big.size - junk.length);
    expect(stored(store, big.hex).equals(big.data)).toBe(true);
  });

  it('a partial longer than the blob is discarded, one of exactly its size is verified in place', async () => {
    const store = freshStore('d');
    mkdirSync(join(store, 'partial'), { recursive: true });
    writeFileSync(join(store, 'partial', small.hex), Buffer.concat([small.data, Buffer.from('tail')]));
    writeFileSync(join(store, 'partial', big.hex), big.data);
    const r = await host.syncBlobs([big, small], { storeDir: store });
    expect(r).toMatchObject({ sentBlobs: 2, sentBytes: small.size });
    expect(stored(store, big.hex).equals(big.data)).toBe(true);
    expect(stored(store, small.hex).equals(small.data)).toBe(true);
  });

  it('reports a blob whose bytes never match its digest after one re-send, and stores the others', async () => {
    const store = freshStore('e');
    const liar = { ...blob('liar', randomBytes(70_000)) };
    const claimed = createHash('sha256').update('something else').digest('hex');
    const err = await host
      .syncBlobs([{ digest: `sha256:${claimed}`, size: liar.size, sourcePath: liar.sourcePath }, small], { storeDir: store })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobVerifyError);
    expect((err as BlobVerifyError).failed).toEqual([{ digest: `sha256:${claimed}`, got: liar.hex }]);
    expect(existsSync(join(store, 'sha256', claimed))).toBe(false);
    expect(existsSync(join(store, 'partial', claimed))).toBe(false);
    expect(stored(store, small.hex).equals(small.data)).toBe(true);
  });

  it('a large blob under a wrong digest is refused with the digest of the bytes in the file', async () => {
    const store = freshStore('e-large');
    const liar = blob('liar-large', randomBytes(9 * 1024 * 1024 + 70_001));
    const claimed = createHash('sha256').update('yet something else').digest('hex');
    const err = await host
      .syncBlobs([{ digest: `sha256:${claimed}`, size: liar.size, sourcePath: liar.sourcePath }], { storeDir: store })
      .catch((e: unknown) => e);
    expect((err as BlobVerifyError).failed).toEqual([{ digest: `sha256:${claimed}`, got: liar.hex }]);
    expect(readdirSync(join(store, 'partial'))).toEqual([]);
    expect(existsSync(join(store, 'sha256', claimed))).toBe(false);
  });

  it("never touches another run's writer: its partial is left alone while its lock is held", async () => {
    const store = freshStore('f');
    mkdirSync(join(store, 'partial'), { recursive: true });
    mkdirSync(join(store, 'lock'), { recursive: true });
    // a live writer of another run: holds the blob's lock, recorded with another run's token
    const other = blob('other', randomBytes(300_000));
    writeFileSync(join(store, 'partial', other.hex), other.data.subarray(0, 1000));
    const holder = spawn('/bin/sh', ['-c', 'exec 9>>"$0"; flock 9; exec sleep 300', join(store, 'lock', other.hex)], { stdio: 'ignore' });
    await waitFor(() => execOk(`flock -n ${join(store, 'lock', other.hex)} true`) === false);
    writeFileSync(join(store, 'partial', `.writer.${holder.pid}`), `${holder.pid} 0123456789abcdef\n`);
    const sync = host.syncBlobs([small, other], { storeDir: store });
    // while it waits on the held blob, the other writer is still alive and its partial untouched
    await waitFor(() => existsSync(join(store, 'sha256', small.hex)));
    expect(holder.exitCode).toBeNull();
    expect(readFileSync(join(store, 'partial', other.hex)).length).toBe(1000);
    holder.kill('SIGTERM'); // that writer dies: its lock is free, the partial resumes
    const r = await sync;
    expect(r).toMatchObject({ sentBlobs: 2, resumedBlobs: 1, sentBytes: small.size + other.size - 1000 });
    expect(stored(store, other.hex).equals(other.data)).toBe(true);
  }, 30_000);

  it('two concurrent writers of one blob never store bytes other than its digest', async () => {
    const store = freshStore('race');
    const one = blob('race', randomBytes(3 * 1024 * 1024 + 4321));
    const a = new LocalHost({ name: 'a', sudo: false });
    const b = new LocalHost({ name: 'b', sudo: false });
    const opts = { storeDir: store, maxRate: 4 * 1024 * 1024, chunkBytes: 256 * 1024 };
    const [ra, rb] = await Promise.all([a.syncBlobs([one], opts), b.syncBlobs([one], opts)]);
    expect(ra.sentBlobs + rb.sentBlobs).toBeGreaterThanOrEqual(1);
    expect(createHash('sha256').update(stored(store, one.hex)).digest('hex')).toBe(one.hex);
    expect(readdirSync(join(store, 'partial'))).toEqual([]);
  });

  it('re-sends and replaces an empty or short blob already in the store', async () => {
    const store = freshStore('short');
    mkdirSync(join(store, 'sha256'), { recursive: true });
    writeFileSync(join(store, 'sha256', big.hex), Buffer.alloc(0)); // a power cut after rename, before the data
    writeFileSync(join(store, 'sha256', small.hex), small.data.subarray(0, 3));
    const r = await host.syncBlobs([big, small], { storeDir: store });
    expect(r).toMatchObject({ alreadyPresent: 0, sentBlobs: 2, sentBytes: big.size + small.size });
    expect(stored(store, big.hex).equals(big.data)).toBe(true);
    expect(stored(store, small.hex).equals(small.data)).toBe(true);
  });

  it('a writer that stops answering is treated as a lost link: the sync resumes instead of hanging', async () => {
    const store = freshStore('stall');
    const slow = blob('slow', randomBytes(2 * 1024 * 1024));
    let stopped: number | undefined;
    const r = await host.syncBlobs([slow], {
      storeDir: store,
      maxRate: 2 * 1024 * 1024,
      chunkBytes: 256 * 1024,
      stallTimeoutMs: 500,
      onProgress: (p) => {
        if (stopped !== undefined || p.sentBytes < 512 * 1024) return;
        const rec = readdirSync(join(store, 'partial')).find((f) => f.startsWith('.writer.'));
        if (!rec) return;
        const writer = readFileSync(join(store, 'partial', rec), 'utf8').split(' ')[0]!;
        const dd = spawnSync('pgrep', ['-P', writer, '-x', 'dd'], { encoding: 'utf8' }).stdout.trim();
        if (!dd) return;
        stopped = Number(dd);
        process.kill(stopped, 'SIGSTOP'); // the POP-side dd freezes (holding the blob's lock), the "link" stays up
      },
    });
    expect(stopped).toBeGreaterThan(0);
    expect(r.sentBlobs).toBe(1);
    expect(r.resumedBlobs).toBe(1);
    expect(stored(store, slow.hex).equals(slow.data)).toBe(true);
    // the frozen dd was stopped for good (gone, or a zombie its new parent has not reaped yet)
    const state = existsSync(`/proc/${stopped}/stat`) ? readFileSync(`/proc/${stopped}/stat`, 'utf8').split(') ')[1]?.[0] : 'gone';
    expect(['gone', 'Z']).toContain(state);
  });

  it('caps the rate across streams', async () => {
    const store = freshStore('g');
    const two = blob('two', randomBytes(2 * 1024 * 1024));
    const r = await host.syncBlobs([two], { storeDir: store, maxRate: 4 * 1024 * 1024 });
    // 2 MiB at 4 MiB/s cannot finish in less than ~0.5 s minus one burst (0.1 s worth)
    expect(r.seconds).toBeGreaterThanOrEqual(0.35);
  });

  it('refuses bad input before touching the store', async () => {
    const store = freshStore('h');
    await expect(host.syncBlobs([{ digest: 'md5:abc', size: 1, sourcePath: small.sourcePath }], { storeDir: store })).rejects.toThrow(
      /sha256:<64 hex>/,
    );
    await expect(host.syncBlobs([{ ...small, size: 99 }], { storeDir: store })).rejects.toThrow(BlobSyncError);
    await expect(host.syncBlobs([{ ...small, sourcePath: join(root, 'missing') }], { storeDir: store })).rejects.toThrow(
      /cannot read its source/,
    );
    expect(existsSync(store)).toBe(false);
  });
});

describe('parseHave', () => {
  it('reads stored sizes, partial sizes, busy partials and free space; ignores anything malformed', () => {
    const [a, b, c] = ['a', 'b', 'c'].map((x) => x.repeat(64));
    const st = parseHave(`h ${a} 0\np ${b} 1234\nbusy ${c} 77\nfree 2048\nh ../../etc 5\np ${a} -1\nh ${b} 1 extra\n`);
    expect([...st.have]).toEqual([[a, 0]]);
    expect([...st.partial]).toEqual([[b, 1234]]);
    expect([...st.busy]).toEqual([[c, 77]]);
    expect(st.freeBytes).toBe(2048 * 1024);
  });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('writerScript', () => {
  it('a writer whose controller went silent stops by itself and frees its blob lock, keeping the partial', async () => {
    const store = join(root, 'store-idle');
    mkdirSync(join(store, 'partial'), { recursive: true });
    mkdirSync(join(store, 'lock'), { recursive: true });
    const hex = 'ab'.repeat(32);
    const w = spawn('/bin/sh', ['-c', writerScript(store, '00112233aabbccdd', 1)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => w.on('exit', (c, sig) => r(c ?? (sig ? -1 : null))));
    // a header for 128 KiB, then only 64 KiB and silence — stdin stays open, as on a connection that died quietly
    w.stdin.write(`${hex} 0 131072 131072 65536\n`);
    w.stdin.write(randomBytes(65536));
    const acked = new Promise<void>((r) => w.stdout.on('data', (d: Buffer) => d.toString().includes(`a ${hex} 1`) && r()));
    await acked;
    expect(execOk(`flock -n ${join(store, 'lock', hex)} true`)).toBe(false); // held while it writes
    await exited;
    expect(execOk(`flock -n ${join(store, 'lock', hex)} true`)).toBe(true);
    expect(readFileSync(join(store, 'partial', hex)).length).toBe(65536);
    w.stdin.destroy();
  }, 30_000);
});

describe("writerScript's watchdog", () => {
  it('keeps no process in the store: its filesystem can be unmounted while the writer idles', async () => {
    const store = join(root, 'store-watchdog');
    mkdirSync(join(store, 'partial'), { recursive: true });
    const w = spawn('/bin/sh', ['-c', writerScript(store, '00112233aabbccdd', 60)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const kids = () =>
      spawnSync('pgrep', ['-P', String(w.pid)], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean);
    await waitFor(() => kids().length > 0);
    // the watchdog subshell and its sleep: every descendant of the writer but the writer itself
    const descendants = kids().flatMap((k) => [
      k,
      ...spawnSync('pgrep', ['-P', k], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean),
    ]);
    await waitFor(() =>
      descendants.every(
        (pid) =>
          !existsSync(`/proc/${pid}`) ||
          spawnSync('readlink', [`/proc/${pid}/cwd`])
            .stdout.toString()
            .trim() === '/',
      ),
    );
    for (const pid of descendants)
      expect(
        spawnSync('readlink', [`/proc/${pid}/cwd`])
          .stdout.toString()
          .trim(),
      ).not.toContain(store);
    w.stdin.end('end\n');
    expect(await new Promise((r) => w.on('exit', r))).toBe(0);
  }, 30_000);
});

describe('writerScript with have first', () => {
  it("answers have, stops its run's older writer but not itself nor another run's, then stores what follows", async () => {
    const store = join(root, 'store-have-first');
    const token = '00112233aabbccdd';
    const spawnWriter = (t: string, have: boolean) =>
      spawn('/bin/sh', ['-c', writerScript(store, t, 60, { have })], { stdio: ['pipe', 'pipe', 'inherit'] });
    mkdirSync(join(store, 'partial'), { recursive: true });
    mkdirSync(join(store, 'lock'), { recursive: true });
    const older = spawnWriter(token, false); // this run's writer from before a drop: idle, stdin open
    const others = spawnWriter('ffeeddccbbaa0099', false); // another run's
    const olderExit = new Promise((r) => older.on('exit', r));
    await waitFor(() => readdirSync(join(store, 'partial')).filter((f) => f.startsWith('.writer.')).length === 2);
    const one = blob('have-first', randomBytes(200_000));
    writeFileSync(join(store, 'partial', one.hex), one.data.subarray(0, 1000));
    const w = spawnWriter(token, true);
    let out = '';
    w.stdout.on('data', (d: Buffer) => (out += d.toString()));
    w.stdin.write(`${one.hex}\n${'e'.repeat(64)}\n../x\n\n`);
    await waitFor(() => out.endsWith('\n.\n'));
    const answer = parseHave(out);
    expect([...answer.partial]).toEqual([[one.hex, 1000]]);
    expect(answer.have.size + answer.busy.size).toBe(0);
    expect(answer.freeBytes).toBeGreaterThan(0);
    await olderExit;
    expect(others.exitCode).toBeNull();
    expect(w.exitCode).toBeNull();
    // the same channel now takes bytes: the rest of the blob, resumed at the partial's size
    const rest = one.size - 1000;
    w.stdin.write(`${one.hex} 1000 ${rest} ${one.size} 65536\n`);
    w.stdin.write(one.data.subarray(1000));
    await waitFor(() => out.includes(`ok ${one.hex}`));
    w.stdin.end('end\n');
    expect(await new Promise((r) => w.on('exit', r))).toBe(0);
    expect(stored(store, one.hex).equals(one.data)).toBe(true);
    others.kill('SIGKILL');
  }, 30_000);
});

describe('storedBlobsScript', () => {
  it('reports stored blobs with their sizes and changes nothing', () => {
    const store = join(root, 'store-ro');
    mkdirSync(join(store, 'sha256'), { recursive: true });
    const [a, b] = ['a', 'b'].map((x) => x.repeat(64));
    writeFileSync(join(store, 'sha256', a!), 'four');
    const out = spawnSync('/bin/sh', ['-c', storedBlobsScript(store)], { input: `${a}\n${b}\n../../x\n`, encoding: 'utf8' });
    expect([...parseStoredBlobs(out.stdout)]).toEqual([[a, 4]]);
    expect(readdirSync(store)).toEqual(['sha256']);
  });
});
