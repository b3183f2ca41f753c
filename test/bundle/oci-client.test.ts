// The OCI client against real HTTP servers on 127.0.0.1 that speak the distribution API the way Docker Hub does:
// anonymous pulls need a Bearer token from a separate realm, scoped to the repository.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIMITS, MissingPlatformError, OciClient, mayReceiveCredentials, parseImageRef } from '../../src/bundle/oci-client.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('parseImageRef', () => {
  it('normalises like Docker', () => {
    expect(parseImageRef('busybox:1.37')).toEqual({ registry: 'docker.io', repository: 'library/busybox', tag: '1.37', digest: undefined });
    expect(parseImageRef('flomesh/pipy:1.5.12')).toMatchObject({ registry: 'docker.io', repository: 'flomesh/pipy', tag: '1.5.12' });
    expect(parseImageRef('127.0.0.1:5000/x/y:1')).toMatchObject({ registry: '127.0.0.1:5000', repository: 'x/y', tag: '1' });
    expect(parseImageRef(`ghcr.io/a/b@sha256:${'c'.repeat(64)}`)).toMatchObject({
      registry: 'ghcr.io',
      digest: `sha256:${'c'.repeat(64)}`,
    });
    expect(() => parseImageRef('flomesh/pipy')).toThrow(/no tag or digest/);
  });
});

// A registry that answers 401 + Bearer challenge, and a token realm on another port that checks service and scope.
const layer = Buffer.from('layer bytes '.repeat(1000));
const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }],
  }),
);
const index = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: sha(manifest),
        size: manifest.length,
        platform: { os: 'linux', architecture: 'amd64' },
      },
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: sha('att'),
        size: 3,
        platform: { os: 'unknown', architecture: 'unknown' },
      },
    ],
  }),
);
let registry: http.Server;
let auth: http.Server;
let empty: http.Server;
const seen = {
  tokenRequests: [] as string[],
  unauthorized: 0,
  served: [] as string[],
  ranges: [] as string[],
  busy: 0,
  cdnAuth: [] as string[],
};
let cdn: http.Server;

/**
 * Streams `total` bytes (chunked unless `declare`), respecting backpressure, and resolves with how many bytes it
 * managed to write once the client went away or everything was sent.
 */
function streamHuge(res: http.ServerResponse, total: number, declare: boolean): Promise<number> {
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  return new Promise((resolve) => {
    res.once('close', () => resolve(written));
    res.writeHead(200, {
      'content-type': 'application/vnd.oci.image.manifest.v1+json',
      ...(declare ? { 'content-length': String(total) } : {}),
    });
    const pump = () => {
      while (written < total && !res.destroyed) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      if (written >= total) res.end();
    };
    pump();
  });
}
const HUGE = 64 * 1024 * 1024;
const hugeSent: Array<Promise<number>> = [];
const url = (s: http.Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
const listen = (s: http.Server) => new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));

beforeAll(async () => {
  auth = http.createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    seen.tokenRequests.push(`${u.searchParams.get('service')} ${u.searchParams.get('scope')}`);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ token: `tok-${u.searchParams.get('scope')}` }));
  });
  await listen(auth);
  registry = http.createServer((req, res) => {
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/(.+)$/.exec(req.url!);
    const repo = m?.[1];
    if (req.headers.authorization !== `Bearer tok-repository:${repo}:pull`) {
      seen.unauthorized++;
      res.statusCode = 401;
      res.setHeader('www-authenticate', `Bearer realm="${url(auth)}/token",service="registry.lab",scope="repository:${repo}:pull"`);
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    seen.served.push(req.url!);
    const ref = m![3]!;
    if (repo === 'flomesh/flaky' && m![2] === 'blobs') {
      // First request: part of the blob, then the connection drops. Later: honour Range with 206.
      const range = req.headers.range;
      seen.ranges.push(range ?? '');
      if (!range) {
        res.writeHead(200, { 'content-length': String(layer.length) });
        // Half-close (FIN, not RST) a while after the bytes are flushed: a stream error discards chunks the client
        // has received but not yet read, so give it time to read them even on a loaded machine.
        res.write(layer.subarray(0, 5000), () => setTimeout(() => res.socket?.end(), 250));
        return;
      }
      const from = Number(/bytes=(\d+)-/.exec(range)![1]);
      res.writeHead(206, {
        'content-range': `bytes ${from}-${layer.length - 1}/${layer.length}`,
        'content-length': String(layer.length - from),
      });
      res.end(layer.subarray(from));
      return;
    }
    if ((repo === 'flomesh/huge' || repo === 'flomesh/huge-declared') && m![2] === 'manifests') {
      hugeSent.push(streamHuge(res, HUGE, repo === 'flomesh/huge-declared'));
      return;
    }
    if (repo === 'flomesh/cdn' && m![2] === 'blobs') {
      res.writeHead(307, { location: `${url(cdn)}/layer` }).end();
      return;
    }
    if (repo === 'flomesh/limited') {
      res.statusCode = 429;
      res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}');
      return;
    }
    if (repo === 'flomesh/busy' && seen.busy++ === 0) {
      res.statusCode = 503;
      res.end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
      return;
    }
    const send = (b: Buffer, type: string) => {
      res.setHeader('content-type', type);
      res.setHeader('docker-content-digest', sha(b));
      res.end(b);
    };
    if (repo === 'flomesh/pipy' && m![2] === 'manifests' && (ref === '1.5.12' || ref === sha(index)))
      return send(index, 'application/vnd.oci.image.index.v1+json');
    if (m![2] === 'manifests' && ref === sha(manifest)) return send(manifest, 'application/vnd.oci.image.manifest.v1+json');
    if (m![2] === 'blobs' && ref === sha(layer))
      return send(repo === 'flomesh/bad' ? Buffer.from('tampered') : layer, 'application/octet-stream');
    if (m![2] === 'blobs' && ref === sha(config)) return send(config, 'application/octet-stream');
    res.statusCode = 404;
    res.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
  });
  await listen(registry);
  cdn = http.createServer((req, res) => {
    seen.cdnAuth.push(req.headers.authorization ?? 'none');
    res.end(layer);
  });
  await listen(cdn);
  empty = http.createServer((_req, res) => {
    res.statusCode = 404;
    res.end();
  });
  await listen(empty);
});
afterAll(() => {
  registry?.close();
  auth?.close();
  empty?.close();
  cdn?.close();
});

describe('OciClient', () => {
  const client = () => new OciClient({ mirrors: { 'docker.io': { endpoints: [url(empty), url(registry)], upstream: false } } });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'oci-client-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('gets a scoped Bearer token on 401, falls through mirrors, and resolves the index to the platform', async () => {
    const c = client();
    const name = parseImageRef('flomesh/pipy:1.5.12');
    const r = await c.resolvePlatform(name, '1.5.12', 'amd64', async () => config);
    expect(r.resolvedDigest).toBe(sha(index));
    expect(r.manifest.digest).toBe(sha(manifest));
    expect(r.platform).toMatchObject({ os: 'linux', architecture: 'amd64' });
    expect(seen.tokenRequests).toContain('registry.lab repository:flomesh/pipy:pull');
    // The token is reused: one challenge for the repository, then straight through.
    const before = seen.unauthorized;
    await c.fetchBlob(name, sha(layer), layer.length, path.join(tmp, 'layer'));
    expect(seen.unauthorized).toBe(before);
    expect(fs.readFileSync(path.join(tmp, 'layer')).equals(layer)).toBe(true);
  });

  it('asks for a tag once per client however many arches resolve it', async () => {
    const c = client();
    const name = parseImageRef('flomesh/pipy:1.5.12');
    const before = seen.served.filter((u) => u.endsWith('/manifests/1.5.12')).length;
    await Promise.all([
      c.resolvePlatform(name, '1.5.12', 'amd64', async () => config),
      c.resolvePlatform(name, '1.5.12', 'amd64', async () => config),
    ]);
    expect(seen.served.filter((u) => u.endsWith('/manifests/1.5.12')).length - before).toBe(1);
  });

  it('never sends the upstream registry credentials to a mirror', async () => {
    const basic = http.createServer((req, res) => {
      seen.tokenRequests.push(`basic-mirror ${req.headers.authorization ?? 'none'}`);
      res.writeHead(401, { 'www-authenticate': 'Basic realm="mirror"' }).end();
    });
    await listen(basic);
    try {
      const c = new OciClient({
        mirrors: { 'docker.io': { endpoints: [url(basic)], upstream: false } },
        credentials: (host) => (host === 'docker.io' ? { username: 'hub-user', password: 'hub-secret' } : undefined),
      });
      await expect(c.getManifest(parseImageRef('flomesh/pipy:1.5.12'), '1.5.12')).rejects.toThrow(
        /wants a username and password \(Basic auth\) and none is configured/,
      );
      expect(seen.tokenRequests).toContain('basic-mirror none');
      expect(seen.tokenRequests.join(' ')).not.toContain(Buffer.from('hub-user:hub-secret').toString('base64'));
    } finally {
      basic.close();
    }
  });

  it('sends credentials only over https to the registry itself or a known pair', () => {
    expect(mayReceiveCredentials(new URL('https://ghcr.io/token'), 'ghcr.io')).toBe(true);
    expect(mayReceiveCredentials(new URL('https://auth.docker.io/token'), 'docker.io')).toBe(true);
    expect(mayReceiveCredentials(new URL('https://registry-1.docker.io/v2/'), 'docker.io')).toBe(true);
    expect(mayReceiveCredentials(new URL('http://auth.docker.io/token'), 'docker.io')).toBe(false);
    expect(mayReceiveCredentials(new URL('https://auth.docker.io.evil.example/token'), 'docker.io')).toBe(false);
    expect(mayReceiveCredentials(new URL('https://auth.docker.io/token'), 'ghcr.io')).toBe(false);
    expect(mayReceiveCredentials(new URL('https://registry.example:5000/token'), 'registry.example:5000')).toBe(true);
  });

  it('never sends credentials to a token realm on another host (or over plain http)', async () => {
    // A registry whose challenge names a realm elsewhere; the realm records every Authorization it receives.
    const got: string[] = [];
    const realm = http.createServer((req, res) => {
      got.push(req.headers.authorization ?? 'none');
      res.setHeader('content-type', 'application/json');
      res.end('{"token":"t"}');
    });
    await listen(realm);
    const port = (realm.address() as AddressInfo).port;
    const evil = http.createServer((req, res) => {
      got.push(`registry ${req.headers.authorization ?? 'none'}`);
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://localhost:${port}/token",service="x"` }).end();
    });
    await listen(evil);
    try {
      const host = new URL(url(evil)).host;
      const c = new OciClient({
        mirrors: { 'docker.io': { endpoints: [url(evil)], upstream: false } },
        credentials: (h) => (h === host ? { username: 'user', password: 'secret' } : undefined),
        retries: 0,
      });
      await expect(c.getManifest(parseImageRef('flomesh/pipy:1.5.12'), '1.5.12')).rejects.toThrow(
        new RegExp(`refusing to send the credentials for ${host} to http://localhost:${port} — they go only over https`),
      );
      expect(got.join(' ')).not.toContain('Basic');
      expect(got.some((g) => g.includes(Buffer.from('user:secret').toString('base64')))).toBe(false);
      // Without credentials the same realm gets an anonymous token request.
      const anon = new OciClient({ mirrors: { 'docker.io': { endpoints: [url(evil)], upstream: false } }, retries: 0 });
      await expect(anon.getManifest(parseImageRef('flomesh/pipy:1.5.12'), '1.5.12')).rejects.toThrow(/HTTP 401/);
      expect(got).toContain('none');
    } finally {
      realm.close();
      evil.close();
    }
  });

  for (const repo of ['flomesh/huge', 'flomesh/huge-declared'])
    it(`refuses an oversized manifest without reading it all (${repo.endsWith('declared') ? 'Content-Length' : 'chunked'})`, async () => {
      const c = new OciClient({ mirrors: { 'docker.io': { endpoints: [url(registry)], upstream: false } }, retries: 0 });
      const before = hugeSent.length;
      await expect(c.getManifest(parseImageRef(`${repo}:1`), '1')).rejects.toThrow(`larger than ${LIMITS.manifestBytes} bytes — refused`);
      expect(hugeSent.length).toBe(before + 1);
      const sent = await hugeSent[before]!;
      expect(sent).toBeLessThan(HUGE / 2);
    });

  it('drops the token when a blob download is redirected to another origin', async () => {
    const c = client();
    const dest = path.join(tmp, 'via-cdn');
    await c.fetchBlob(parseImageRef('flomesh/cdn:1'), sha(layer), layer.length, dest);
    expect(fs.readFileSync(dest).equals(layer)).toBe(true);
    expect(seen.cdnAuth).toEqual(['none']);
  });

  it('says what to do when the registry rate-limits (HTTP 429)', async () => {
    const c = new OciClient({ mirrors: { 'docker.io': { endpoints: [url(registry)], upstream: false } }, backoffMs: 1, retries: 1 });
    await expect(c.getManifest(parseImageRef('flomesh/limited:1'), '1')).rejects.toThrow(
      /HTTP 429 TOOMANYREQUESTS You have reached your pull rate limit\. \(after 2 attempts\); the registry is rate-limiting: set FSM_EDGE_REGISTRY_DOCKER_IO_USER and _PASSWORD/,
    );
  });

  it('names image and platform when the index lacks it (attestation entries are not platforms)', async () => {
    const err = await client()
      .resolvePlatform(parseImageRef('flomesh/pipy:1.5.12'), '1.5.12', 'arm64', async () => config)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingPlatformError);
    expect((err as Error).message).toMatch(
      /^image docker\.io\/flomesh\/pipy:1\.5\.12 has no linux\/arm64 manifest \(it has: linux\/amd64\)/,
    );
  });

  it('refuses a blob whose bytes do not match its digest and leaves no file', async () => {
    const dest = path.join(tmp, 'bad');
    await expect(client().fetchBlob(parseImageRef('flomesh/bad:1'), sha(layer), layer.length, dest)).rejects.toThrow(/size|sha256/);
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('bad'))).toEqual([]);
  });

  it('resumes a blob whose connection broke, with a Range request, without fetching the start again', async () => {
    const c = new OciClient({ mirrors: { 'docker.io': { endpoints: [url(registry)], upstream: false } }, backoffMs: 1 });
    const dest = path.join(tmp, 'resumed');
    await c.fetchBlob(parseImageRef('flomesh/flaky:1'), sha(layer), layer.length, dest);
    expect(fs.readFileSync(dest).equals(layer)).toBe(true);
    expect(seen.ranges[0]).toBe('');
    expect(seen.ranges[1]).toMatch(/^bytes=[1-9]\d*-$/);
    expect(c.stats.blobBytesFetched).toBe(layer.length);
  });

  it('retries a 503 on the same endpoint', async () => {
    const c = new OciClient({ mirrors: { 'docker.io': { endpoints: [url(registry)], upstream: false } }, backoffMs: 1 });
    const m = await c.getManifest(parseImageRef('flomesh/busy:1'), sha(manifest));
    expect(m.digest).toBe(sha(manifest));
    expect(seen.busy).toBe(2);
  });

  it('reports every endpoint it tried when none has the content', async () => {
    await expect(client().getManifest(parseImageRef('flomesh/none:1'), '1')).rejects.toThrow(
      new RegExp(`not available from any endpoint — ${url(empty)}: HTTP 404; ${url(registry)}: HTTP 404 MANIFEST_UNKNOWN manifest unknown`),
    );
  });
});
