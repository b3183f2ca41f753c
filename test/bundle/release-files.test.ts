// Release file downloads against a real HTTP server: retries on 503 and on a body cut short, final on a bad digest.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReleaseFiles } from '../../src/bundle/release-files.js';

const body = Buffer.from('k3s binary bytes '.repeat(4000));
const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
const hits: Record<string, number> = {};
let server: http.Server;
let base: string;
const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'release-files-'));

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const n = (hits[req.url!] = (hits[req.url!] ?? 0) + 1);
    if (req.url === '/busy' && n === 1) return res.writeHead(503).end();
    if (req.url === '/cut' && n === 1) {
      res.writeHead(200, { 'content-length': String(body.length) });
      return res.write(body.subarray(0, 1000), () => setTimeout(() => res.destroy(), 20));
    }
    if (req.url === '/missing') return res.writeHead(404).end();
    res.writeHead(200, { 'content-length': String(body.length) }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server?.close();
  fs.rmSync(cache, { recursive: true, force: true });
});

describe('ReleaseFiles', () => {
  const files = () => new ReleaseFiles({ cache, backoffMs: 1 });

  it('retries a 503 and a connection cut mid-body, then verifies', async () => {
    for (const p of ['/busy', '/cut']) {
      const fresh = new ReleaseFiles({ cache: fs.mkdtempSync(path.join(cache, 'c-')), backoffMs: 1 });
      const f = await fresh.get(`${base}${p}`, 'k3s', { digest, source: 'sha256sum-amd64.txt' });
      expect(f.digest).toBe(digest);
      expect(hits[p]).toBe(2);
    }
  });

  it('serves a pinned file from the cache without a request', async () => {
    await files().get(`${base}/ok`, 'k3s', { digest });
    const rf = files();
    const f = await rf.get(`${base}/never-asked`, 'k3s', { digest, size: body.length });
    expect(f.downloaded).toBe(false);
    expect(rf.stats.requests).toBe(0);
    expect(hits['/never-asked']).toBeUndefined();
  });

  it('a file pinned by a checksum only (another mirror URL, no lock entry) comes from the cache with its real size', async () => {
    await files().get(`${base}/ok`, 'k3s', { digest });
    const f = await files().get(`${base}/other-mirror`, 'k3s', { digest, source: 'sha256sum-amd64.txt' });
    expect(f.downloaded).toBe(false);
    // Was 0: the bundle then listed a 0-byte k3s and the next build stopped with "blob … missing from the cache".
    expect(f.size).toBe(body.length);
  });

  it('fails at once on 404 and on a wrong sha256, leaving nothing in the cache', async () => {
    await expect(files().get(`${base}/missing`, 'k3s-arm64')).rejects.toThrow(`k3s-arm64: download from ${base}/missing failed: HTTP 404`);
    const wrong = `sha256:${'0'.repeat(64)}`;
    await expect(files().get(`${base}/ok`, 'k3s-arm64', { digest: wrong, source: 'sha256sum-arm64.txt' })).rejects.toThrow(
      `k3s-arm64 from ${base}/ok (checked against sha256sum-arm64.txt): sha256: expected ${wrong}, got ${digest}`,
    );
    expect(hits['/ok']).toBe(2);
    expect(fs.readdirSync(path.join(cache, 'blobs', 'sha256')).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
