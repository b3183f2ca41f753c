// The lab's registry (Debian docker-registry) takes a push over the OCI distribution API and serves it back,
// to the controller on 127.0.0.1 and to a POP on 10.99.0.1; the file server serves release files with ranges.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PopInfo } from './types.js';
import { startRegistry, type RegistryHandle } from './registry.js';
import { startFileServer, type FileServerHandle } from './fileserver.js';
import { popDown, popExec, popUp } from './pop.js';

const sha256 = (b: Buffer | string) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;

async function pushBlob(reg: string, repo: string, blob: Buffer): Promise<string> {
  const digest = sha256(blob);
  const start = await fetch(`${reg}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  expect(start.status).toBe(202);
  const loc = new URL(start.headers.get('location')!, reg);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
  expect(put.status).toBe(201);
  return digest;
}

describe('lab registry and file server', () => {
  let reg: RegistryHandle;
  let files: FileServerHandle;
  let pop: PopInfo;

  beforeAll(async () => {
    [reg, files, pop] = await Promise.all([startRegistry({ hub: true }), startFileServer({ hub: true }), popUp({ arch: 'amd64' })]);
  });
  afterAll(async () => {
    await Promise.all([reg?.stop(), files?.stop(), pop && popDown(pop)]);
  });

  it('accepts a pushed image and serves manifest and blobs back byte for byte', async () => {
    const layer = crypto.randomBytes(64 << 10);
    const config = Buffer.from(
      JSON.stringify({ architecture: 'arm64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }),
    );
    const [layerDigest, configDigest] = [await pushBlob(reg.url, 'lab/hello', layer), await pushBlob(reg.url, 'lab/hello', config)];
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
      }),
    );
    const put = await fetch(`${reg.url}/v2/lab/hello/manifests/v1`, {
      method: 'PUT',
      body: manifest,
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(put.status).toBe(201);
    expect(put.headers.get('docker-content-digest')).toBe(sha256(manifest));

    const got = await fetch(`${reg.url}/v2/lab/hello/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    expect(Buffer.from(await got.arrayBuffer()).equals(manifest)).toBe(true);
    const blob = await fetch(`${reg.url}/v2/lab/hello/blobs/${layerDigest}`);
    expect(Buffer.from(await blob.arrayBuffer()).equals(layer)).toBe(true);
    expect(await (await fetch(`${reg.url}/v2/lab/hello/tags/list`)).json()).toEqual({ name: 'lab/hello', tags: ['v1'] });
    expect((await fetch(`${reg.url}/v2/lab/hello/manifests/v2`)).status).toBe(404);

    // a POP pulls the same manifest through the hub address
    const r = await popExec(
      pop,
      `curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://${reg.labHost}/v2/lab/hello/manifests/v1 | sha256sum`,
    );
    expect(`sha256:${r.stdout.split(' ')[0]}`).toBe(sha256(manifest));
    expect(fs.readdirSync(reg.dataDir).length).toBeGreaterThan(0);
  });

  it('serves release files with HEAD, byte ranges and 404, also to POPs', async () => {
    const body = crypto.randomBytes(100_000);
    fs.mkdirSync(path.join(files.root, 'v1.31.4+k3s1'), { recursive: true });
    fs.writeFileSync(path.join(files.root, 'v1.31.4+k3s1', 'k3s-arm64'), body);
    const url = `${files.url}/v1.31.4+k3s1/k3s-arm64`;
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(body.length));
    expect(head.headers.get('accept-ranges')).toBe('bytes');
    const part = await fetch(url, { headers: { range: 'bytes=1000-' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(1000))).toBe(true);
    expect((await fetch(url, { headers: { range: `bytes=${body.length}-` } })).status).toBe(416);
    expect((await fetch(`${files.url}/nope`)).status).toBe(404);
    const r = await popExec(pop, `curl -sf ${files.labUrl}/v1.31.4+k3s1/k3s-arm64 | sha256sum`);
    expect(`sha256:${r.stdout.split(' ')[0]}`).toBe(sha256(body));
  });
});
