// The blob-sync protocol end to end on this machine: LocalHost runs the very same POP-side writer script (sh, dd,
// stat, sha256sum) that SshHost runs over SSH; only the transport differs.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, afterAll } from 'vitest';
import type { BlobWant, SyncProgress } from '../../src/transport/host.js';
import { LocalHost } from '../../src/transport/local-host.js';
import { BlobSyncError, BlobVerifyError, parseHave } from '../../src/transport/blob-sync.js';

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

describe('blob sync (LocalHost, real POP-side script)', () => {
  const big = blob('big', randomBytes(5 * 1024 * 1024 + 12345));
  const small = blob('small', Buffer.from('{"config":true}\n'));
  const empty = blob('empty', Buffer.alloc(0));

  it('stores every blob verified, then a re-sync is one round trip that sends nothing', async () => {
    const store = freshStore('a');
    const events: SyncProgress[] = [];
    const r = await host.syncBlobs([big, small, empty, small], { storeDir: store, streams: 2, onProgress: (p) => events.push(p) });
    expect(r).toMatchObject({ wanted: 3, alreadyPresent: 0, sentBlobs: 3, sentBytes: big.size + small.size, resentBytes: 0 });
    for (const b of [big, small, empty]) expect(stored(store, b.hex).equals(b.data)).toBe(true);
    expect(readdirSync(join(store, 'partial'))).toEqual([]);
    expect(events.at(-1)).toMatchObject({ sentBytes: big.size + small.size, totalBytes: big.size + small.size });

    const again = await host.syncBlobs([big, small, empty], { storeDir: store });
    expect(again).toMatchObject({ wanted: 3, alreadyPresent: 3, sentBlobs: 0, sentBytes: 0, roundTrips: 1 });
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

  it('stops a writer left over from a dropped connection before reading partial sizes', async () => {
    const store = freshStore('f');
    mkdirSync(join(store, 'partial'), { recursive: true });
    // a stand-in for the stale writer: a shell with a child, recorded the way the writer records itself
    const stale = spawn('/bin/sh', ['-c', 'sleep 300 & wait'], { stdio: 'ignore' });
    writeFileSync(join(store, 'partial', `.writer.${stale.pid}.pid`), `${stale.pid}\n`);
    const exited = new Promise((r) => stale.on('exit', (_c, sig) => r(sig)));
    await host.syncBlobs([small], { storeDir: store });
    expect(await exited).toBe('SIGKILL');
    expect(readdirSync(join(store, 'partial'))).toEqual([]);
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
    await expect(host.syncBlobs([{ digest: 'md5:abc', size: 1, sourcePath: small.sourcePath }], { storeDir: store })).rejects.toThrow(/sha256:<64 hex>/);
    await expect(host.syncBlobs([{ ...small, size: 99 }], { storeDir: store })).rejects.toThrow(BlobSyncError);
    await expect(host.syncBlobs([{ ...small, sourcePath: join(root, 'missing') }], { storeDir: store })).rejects.toThrow(/cannot read its source/);
    expect(existsSync(store)).toBe(false);
  });
});

describe('parseHave', () => {
  it('reads present blobs, partial sizes and free space', () => {
    const st = parseHave(`h ${'a'.repeat(64)}\np ${'b'.repeat(64)} 1234\nfree 2048\n`);
    expect([...st.have]).toEqual(['a'.repeat(64)]);
    expect(st.partial.get('b'.repeat(64))).toBe(1234);
    expect(st.freeBytes).toBe(2048 * 1024);
  });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));
