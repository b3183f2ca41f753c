// npm run bench:fleet — a fleet rollout against one POP alone, side by side in one run, on the lab:
//   (1) bundle A: the lab's stand-ins, with incompressible layers of realistic sizes (default 160 MiB for amd64),
//       generated deterministically (AES-CTR keystream of a seed per layer), so a rebuild gives the same digests;
//   (2) bundle B: A with a few of those layers changed (an upgrade as `bundle diff` sees it);
//   (3) one POP alone with A; then N POPs at concurrency C with A; the same rollout again (a re-run); then the
//       rollout of B over the N POPs (an upgrade as the product does it today: `fsm-edge rollout` with B).
// Wire bytes and round trips come from the transport's own counters (each site's report: SSH channel payload and
// request/response exchanges); the lab link's byte counters are printed beside them as a check. The controller's
// peak RSS is its max resident set (GNU time). The last line is one JSON object with the headline figures.
//
// The bundles are built first, outside the lab (`--prepare` builds them and stops): run that without the lab
// lock, then the bench under it:  npx tsx scripts/bench-fleet.ts --prepare
//                                 flock /tmp/fsm-edge-lab.lock npm run bench:fleet
// Options: --pops N (8) --parallel C (4) --layers-mib M (160, per arch, over 6 images) --changed K (2 layers).
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import YAML from 'yaml';
import { diffBundles } from '../src/bundle/diff.js';
import { readBundleDoc } from '../src/bundle/format.js';
import { generateKeyPair } from '../src/bundle/sign.js';
import { siteDoc } from '../test/install/harness.js';
import { startFileServer } from '../test/lab/fileserver.js';
import { type SynthLayer, imageOf, layerOf, pushImage, pushStandInImages, repoPathOf } from '../test/lab/images/synthetic.js';
import { linkCounters } from '../test/lab/link.js';
import { popDown, popUp } from '../test/lab/pop.js';
import { startRegistry } from '../test/lab/registry.js';
import { buildFsmChart } from '../test/lab/standins/fsm-chart.js';
import { buildK3sStandIn, K3S_SYSTEM_IMAGES } from '../test/lab/standins/build.js';
import type { PopInfo } from '../test/lab/types.js';

const MiB = 1024 * 1024;
const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('pops', 8);
const C = arg('parallel', 4);
const LAYERS_MIB = arg('layers-mib', 160);
const CHANGED = arg('changed', 2);
const say = (s: string) => process.stdout.write(`${s}\n`);

// The images that get a big layer, with their share of LAYERS_MIB (real FSM/k3s images differ in size too).
const HEAVY: Array<[ref: string, share: number]> = [
  ['docker.io/flomesh/fsm-controller:1.5.1', 0.25],
  ['docker.io/flomesh/pipy:1.5.12', 0.2],
  ['docker.io/flomesh/pipy-repo:1.5.12', 0.15],
  ['docker.io/flomesh/fsm-injector:1.5.1', 0.15],
  [K3S_SYSTEM_IMAGES.klipperHelm, 0.15],
  [K3S_SYSTEM_IMAGES.coredns, 0.1],
];

// ---------------------------------------------------------------------------------------------------------------
// The bundles

const AIRGAP = path.join(REPO, 'airgap', 'bench-fleet');

/** sha256 over the sources a bundle is built from: a change to a stand-in rebuilds the bundles. */
function sourcesStamp(): string {
  const h = createHash('sha256').update(JSON.stringify({ LAYERS_MIB, CHANGED, HEAVY, v: 1 }));
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else h.update(`${p}\0`).update(fs.readFileSync(p));
    }
  };
  for (const d of ['test/lab/standins', 'test/lab/images', 'bundle']) walk(path.join(REPO, d));
  return h.digest('hex');
}

/**
 * A gzipped tar layer holding one file of `size` pseudo-random bytes: the AES-256-CTR keystream of sha256(seed),
 * so it is incompressible and the same on every build. Streamed to `file`, never held in memory.
 */
async function randomLayer(file: string, seed: string, size: number): Promise<SynthLayer> {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const raw = createHash('sha256');
  const gz = createHash('sha256');
  let gzSize = 0;
  const tarHeader = tarHeaderFor('payload.bin', size);
  async function* tarStream() {
    yield tarHeader;
    const zero = Buffer.alloc(MiB);
    for (let off = 0; off < size; off += MiB) yield cipher.update(zero.subarray(0, Math.min(MiB, size - off)));
    yield Buffer.alloc((512 - (size % 512)) % 512);
    yield Buffer.alloc(1024);
  }
  await pipeline(
    Readable.from(tarStream()),
    new Transform({
      transform(chunk: Buffer, _e, cb) {
        raw.update(chunk);
        cb(null, chunk);
      },
    }),
    createGzip({ level: 1 }),
    new Transform({
      transform(chunk: Buffer, _e, cb) {
        gz.update(chunk);
        gzSize += chunk.length;
        cb(null, chunk);
      },
    }),
    fs.createWriteStream(file),
  );
  return {
    digest: `sha256:${gz.digest('hex')}`,
    size: gzSize,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    file,
    diffId: `sha256:${raw.digest('hex')}`,
  };
}

/** A ustar header for one regular file (the format of synthetic.ts's tarOf). */
function tarHeaderFor(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

interface Bundles {
  a: string;
  b: string;
  publicKeyFile: string;
}

/** Bundles A and B (amd64 only), built through `fsm-edge bundle build` from the lab registry and file server. */
async function prepareBundles(): Promise<Bundles> {
  const privateKeyFile = path.join(AIRGAP, 'signing.key');
  const publicKeyFile = `${privateKeyFile}.pub`;
  const out = { a: path.join(AIRGAP, 'bundles', 'a'), b: path.join(AIRGAP, 'bundles', 'b'), publicKeyFile };
  const stampFile = path.join(AIRGAP, 'sources.sha256');
  const stamp = sourcesStamp();
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8').trim() === stamp) {
    if (fs.existsSync(path.join(out.a, 'bundle.json')) && fs.existsSync(path.join(out.b, 'bundle.json'))) return out;
  }
  fs.rmSync(AIRGAP, { recursive: true, force: true });
  fs.mkdirSync(path.join(AIRGAP, 'layers'), { recursive: true });
  generateKeyPair(privateKeyFile, publicKeyFile);
  const registry = await startRegistry();
  const files = await startFileServer();
  try {
    const recipe = YAML.parse(fs.readFileSync(path.join(REPO, 'bundle/recipe.yaml'), 'utf8'));
    const version: string = recipe.spec.k3s.version;
    // amd64 only: see the note printed by the bench on why arm64 is left out.
    recipe.spec.arches = { amd64: recipe.spec.arches.amd64 };
    recipe.spec.mirrors = { 'docker.io': { endpoints: [registry.url], upstream: false } };
    recipe.spec.k3s.releaseUrl = `${files.url}/k3s/{version}`;
    recipe.spec.k3s.installScript = { url: `${files.url}/k3s/{version}/install.sh` };
    recipe.spec.fsm.chart = { url: `${files.url}/charts/fsm-1.5.1.tgz` };
    const rel = path.join(files.root, 'k3s', version);
    fs.mkdirSync(rel, { recursive: true });
    await buildK3sStandIn('amd64', path.join(rel, 'k3s'), { version });
    const k3sSum = createHash('sha256')
      .update(fs.readFileSync(path.join(rel, 'k3s')))
      .digest('hex');
    fs.writeFileSync(path.join(rel, 'sha256sum-amd64.txt'), `${k3sSum}  k3s\n`);
    const k3sImages = Object.values(K3S_SYSTEM_IMAGES);
    fs.writeFileSync(path.join(rel, 'k3s-images.txt'), `${k3sImages.join('\n')}\n`);
    fs.copyFileSync(path.join(REPO, 'test/lab/standins/install.sh'), path.join(rel, 'install.sh'));
    buildFsmChart(path.join(files.root, 'charts'));
    const meshRefs = new Set<string>();
    for (const f of Object.values(recipe.spec.fsm.features) as Array<{ images?: Array<{ ref: string }> }>)
      for (const i of f.images ?? []) meshRefs.add(i.ref);
    await pushStandInImages(registry.url, [...k3sImages, ...meshRefs], ['amd64']);

    const base = layerOf({ 'etc/os-release': 'ID=fsm-edge-lab\nARCH=amd64\n' });
    const made = new Map<string, SynthLayer>();
    const pushHeavy = async (generation: (ref: string) => string) => {
      for (const [ref, share] of HEAVY) {
        const seed = `${ref} amd64 ${generation(ref)}`;
        const file = path.join(AIRGAP, 'layers', createHash('sha256').update(seed).digest('hex').slice(0, 16));
        const big = made.get(seed) ?? (await randomLayer(file, seed, Math.round(share * LAYERS_MIB * MiB)));
        made.set(seed, big);
        const note = layerOf({ 'standin.txt': `lab stand-in for ${ref} (amd64) ${generation(ref)}\n` });
        const { repo, tag } = repoPathOf(ref);
        await pushImage(registry.url, repo, tag, [imageOf('amd64', [base, big, note])], { index: true });
      }
    };
    const build = async (name: string, dir: string) => {
      const work = path.join(AIRGAP, name);
      fs.mkdirSync(work, { recursive: true });
      recipe.metadata.name = `bench-${name}`;
      // One recipe (and so one lock file) per bundle: B's lock must not pin A's digests.
      fs.writeFileSync(path.join(work, 'recipe.yaml'), YAML.stringify(recipe));
      await cli(
        [
          'bundle',
          'build',
          '--recipe',
          path.join(work, 'recipe.yaml'),
          '--out',
          dir,
          '--cache',
          path.join(AIRGAP, 'cache'),
          '--signing-key',
          `file:${privateKeyFile}`,
          '--json',
        ],
        { quiet: true },
      );
    };
    const changed = new Set(HEAVY.slice(0, CHANGED).map(([ref]) => ref));
    say(`building bundle A: ${LAYERS_MIB} MiB of random layers over ${HEAVY.length} images (amd64)`);
    await pushHeavy(() => 'v1');
    await build('a', out.a);
    say(`building bundle B: A with the layers of ${[...changed].join(', ')} changed`);
    await pushHeavy((ref) => (changed.has(ref) ? 'v2' : 'v1'));
    await build('b', out.b);
    fs.rmSync(path.join(AIRGAP, 'layers'), { recursive: true, force: true });
    fs.writeFileSync(stampFile, `${stamp}\n`);
    return out;
  } finally {
    await files.stop();
    await registry.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The CLI, built (bin/fsm-edge.js over dist/), under GNU time for its peak RSS

const work = fs.mkdtempSync(path.join(tmpdir(), 'fsm-edge-bench-fleet-'));
const stateDir = path.join(work, 'state');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
  maxRssKiB: number;
}

function cli(args: string[], o: { quiet?: boolean; allowFail?: boolean } = {}): Promise<CliResult> {
  const rssFile = path.join(work, `rss-${process.hrtime.bigint()}`);
  const env = {
    ...process.env,
    FSM_EDGE_STATE_DIR: stateDir,
    NO_COLOR: '1',
    FSM_EDGE_MESH_TIMEOUT: '600',
    FSM_EDGE_K3S_TIMEOUT: '600',
  };
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, process.execPath, path.join(REPO, 'bin', 'fsm-edge.js'), ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!o.quiet) process.stderr.write(d);
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const maxRssKiB = Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop());
      const r = { code: code ?? -1, stdout, stderr, seconds, maxRssKiB };
      if (r.code !== 0 && !o.allowFail)
        reject(new Error(`fsm-edge ${args.slice(0, 2).join(' ')} exited ${r.code}:\n${stderr.slice(-4000)}\n${stdout.slice(-2000)}`));
      else resolve(r);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The rollouts

interface SiteOut {
  site: string;
  status: string;
  bytesSent: number;
  roundTrips: number;
  durationMs: number;
  reason?: string;
  note?: string;
  phases: Array<{ id: string; summary: string }>;
}

function writeFleet(name: string, pops: PopInfo[], parallel: number): string {
  const sites = pops.map((p) => {
    const d = siteDoc(p, { hub: false });
    return { metadata: d.metadata, spec: d.spec };
  });
  const doc = {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Fleet',
    metadata: { name },
    spec: { sites, rollout: { parallel, maxFailures: 0 } },
  };
  const file = path.join(work, `${name}.yaml`);
  fs.writeFileSync(file, YAML.stringify(doc));
  return file;
}

interface Rollout {
  ok: boolean;
  seconds: number;
  maxRssKiB: number;
  sites: SiteOut[];
  /** Bytes that crossed the POPs' links (both ways), from the lab's counters. */
  linkBytes: number;
}

async function rollout(label: string, fleet: string, pops: PopInfo[], bundle: string, keyFile: string): Promise<Rollout> {
  say(`\n${label}`);
  const before = await Promise.all(pops.map(linkCounters));
  const r = await cli(['rollout', fleet, '--bundle', bundle, '--trust-key', keyFile, '--json'], { quiet: true, allowFail: true });
  if (!r.stdout.trim().startsWith('{'))
    throw new Error(`${label}: fsm-edge rollout exited ${r.code} without a report:\n${r.stderr.slice(-4000)}`);
  const after = await Promise.all(pops.map(linkCounters));
  const doc = JSON.parse(r.stdout) as { ok: boolean; waves: Array<{ sites: SiteOut[] }> };
  const sites = doc.waves.flatMap((w) => w.sites);
  const linkBytes = after.reduce((n, a, i) => n + a.toPop - before[i]!.toPop + a.fromPop - before[i]!.fromPop, 0);
  for (const s of sites)
    say(
      `  ${s.site.padEnd(12)} ${s.status.padEnd(6)} ${(s.durationMs / 1000).toFixed(1).padStart(6)} s  ` +
        `${mib(s.bytesSent).padStart(9)} sent  ${String(s.roundTrips).padStart(3)} round trips  ` +
        `sync: ${s.phases.find((p) => p.id === 'sync')?.summary ?? '-'}`,
    );
  say(`  wall ${r.seconds.toFixed(1)} s, controller peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB, link bytes ${mib(linkBytes)}`);
  if (!doc.ok) {
    say(`  NOT OK: the rollout did not succeed; the figures below count it as it is`);
    for (const s of sites.filter((x) => x.status !== 'ok')) say(`    ${s.site}: ${s.status} ${s.reason ?? s.note ?? ''}`);
  }
  return { ok: doc.ok, seconds: r.seconds, maxRssKiB: r.maxRssKiB, sites, linkBytes };
}

const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const r2 = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const bundles = await prepareBundles();
  const docA = readBundleDoc(bundles.a);
  const payload = docA.arches.amd64!.totals.bytes;
  const diff = diffBundles(bundles.a, bundles.b).arches.find((a) => a.arch === 'amd64')!;
  say(`bundle A: amd64 payload ${mib(payload)} in ${docA.arches.amd64!.totals.blobs} blobs`);
  say(`bundle B: bundle diff A→B sends ${mib(diff.send.bytes)} in ${diff.send.blobs} blobs (amd64)`);
  if (process.argv.includes('--prepare')) return;

  say(
    `\nbench:fleet — ${N} amd64 POPs at concurrency ${C}, one more POP alone. arm64 is left out: its POPs run under ` +
      'qemu-user (~3× slower per SSH exchange, ~2.5 min per install here), which would measure the emulator, not the ' +
      'controller. No hub: registration is a phase of its own (its round trips are not counted here).',
  );
  const pops: PopInfo[] = [];
  try {
    await Promise.all(Array.from({ length: N + 1 }, () => popUp({ arch: 'amd64', systemd: true }).then((p) => pops.push(p))));
    const [alone, ...fleetPops] = pops as [PopInfo, ...PopInfo[]];
    const aloneFleet = writeFleet('bench-alone', [alone], 1);
    const fleet = writeFleet('bench-fleet', fleetPops, C);

    const one = await rollout('one POP alone, bundle A', aloneFleet, [alone], bundles.a, bundles.publicKeyFile);
    const install = await rollout(`${N} POPs at concurrency ${C}, bundle A`, fleet, fleetPops, bundles.a, bundles.publicKeyFile);
    const rerun = await rollout(`the same rollout again (a re-run)`, fleet, fleetPops, bundles.a, bundles.publicKeyFile);
    const upgrade = await rollout(`upgrade: bundle B over the ${N} POPs`, fleet, fleetPops, bundles.b, bundles.publicKeyFile);

    const all = [one, install, rerun, upgrade];
    const summary = {
      fleetWallRatio: r2(install.seconds / (Math.ceil(N / C) * one.seconds)),
      peakRssMiB: Math.round(Math.max(...all.map((r) => r.maxRssKiB)) / 1024),
      wireBytesRatio: r2(sum(install.sites.map((s) => s.bytesSent)) / (N * payload)),
      upgradeBytesRatio: r2(sum(upgrade.sites.map((s) => s.bytesSent)) / (N * diff.send.bytes)),
      roundTripsInstall: r2(mean(install.sites.map((s) => s.roundTrips))),
      roundTripsRerun: r2(mean(rerun.sites.map((s) => s.roundTrips))),
      roundTripsUpgrade: r2(mean(upgrade.sites.map((s) => s.roundTrips))),
    };
    say('\nfigure                                   measured   goal');
    say(
      `fleet wall ÷ (ceil(${N}/${C}) × one POP alone)       ${summary.fleetWallRatio.toFixed(2).padStart(6)}   ≤ 1.1` +
        `   (${install.seconds.toFixed(1)} s ÷ ${Math.ceil(N / C)} × ${one.seconds.toFixed(1)} s)`,
    );
    say(`controller peak RSS (MiB)                 ${String(summary.peakRssMiB).padStart(6)}   ≤ 200`);
    say(
      `wire bytes ÷ (${N} × arch payload)           ${summary.wireBytesRatio.toFixed(2).padStart(6)}   ≤ 1.02` +
        `   (transport ${mib(sum(install.sites.map((s) => s.bytesSent)))}; link, both ways, ${mib(install.linkBytes)})`,
    );
    say(
      `upgrade wire bytes ÷ bundle diff          ${summary.upgradeBytesRatio.toFixed(2).padStart(6)}   ≤ 1.05` +
        `   (transport ${mib(sum(upgrade.sites.map((s) => s.bytesSent)))}; link ${mib(upgrade.linkBytes)}; ` +
        `diff ${N} × ${mib(diff.send.bytes)})`,
    );
    say(
      `SSH round trips per site: install ${summary.roundTripsInstall}, re-run ${summary.roundTripsRerun}, upgrade ${summary.roundTripsUpgrade}`,
    );
    const failed = all.filter((r) => !r.ok).length;
    if (failed) say(`${failed} of the ${all.length} rollouts did not succeed: see NOT OK above`);
    say(JSON.stringify(summary));
  } finally {
    await Promise.all(pops.map((p) => popDown(p).catch(() => {})));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
