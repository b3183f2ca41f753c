// Peak memory of a build stays flat with a 256 MiB layer: blobs stream registry → cache → bundle, hashed on the
// way, never buffered. Each build runs in a child process whose peak RSS the child reports itself.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bigBlobLayer, imageOf, layerOf, pushImage, repoPathOf } from '../lab/images/synthetic.js';
import { publishRelease, startLabSource, writeRecipe, type LabSource } from './fixture.js';

const MiB = 1024 * 1024;
let src: LabSource;

function buildInChild(name: string, ref: string): { maxRssKiB: number; bytes: number; downloaded: number } {
  const recipe = writeRecipe(src, path.join(src.tmp, name, 'recipe.yaml'), {
    name,
    arches: { amd64: ['core'] },
    features: { core: [ref] },
  });
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', 'test/bundle/rss-child.ts', recipe, path.join(src.tmp, name, 'cache'), path.join(src.tmp, name, 'bundle')],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  return JSON.parse(out.trim().split('\n').pop()!);
}

beforeAll(async () => {
  src = await startLabSource();
  publishRelease(src.files, { arches: ['amd64'], k3sImages: [] });
  const small = repoPathOf('docker.io/flomesh/fsm-controller:1.5.1');
  await pushImage(src.registry.url, small.repo, small.tag, [imageOf('amd64', [layerOf({ a: 'small' })])]);
  const big = repoPathOf('docker.io/flomesh/pipy:1.5.12');
  await pushImage(src.registry.url, big.repo, big.tag, [imageOf('amd64', [bigBlobLayer(path.join(src.tmp, 'big.layer'), 256 * MiB)])]);
});
afterAll(async () => {
  await src?.stop();
});

it('peak RSS of a build with a 256 MiB layer stays within 64 MiB of a build with a tiny one', () => {
  const small = buildInChild('small', 'docker.io/flomesh/fsm-controller:1.5.1');
  const big = buildInChild('big', 'docker.io/flomesh/pipy:1.5.12');
  expect(big.downloaded).toBeGreaterThan(256 * MiB);
  expect(big.bytes).toBeGreaterThan(256 * MiB);
  const delta = (big.maxRssKiB - small.maxRssKiB) / 1024;
  console.log(
    `peak RSS: tiny-layer build ${(small.maxRssKiB / 1024).toFixed(0)} MiB, 256 MiB-layer build ${(big.maxRssKiB / 1024).toFixed(0)} MiB (+${delta.toFixed(0)} MiB)`,
  );
  expect(delta).toBeLessThan(64);
  // A layer held in memory would put the peak above 125 + 256 MiB.
  expect(big.maxRssKiB / 1024).toBeLessThan(200);
});
