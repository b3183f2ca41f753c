// Newer lab bundles to upgrade the sample bundle (`lab`, built by sample-bundle.ts) to, signed by the same key,
// built after it by the same builder (so their build serials are higher): amd64 only, to keep upgrade tests fast.
//   lab-v2: k3s stand-in v1.37.2+k3s1, FSM chart 1.5.2 (same values and images as 1.5.1), and two images with a
//           changed top layer (fsm-controller, coredns) — every other blob is the same as in `lab`;
//   lab-v3: lab-v2 with a broken k3s v1.37.3+k3s1 (the stand-in's `never-ready` fault): the upgrade to it must be
//           rolled back.
// Both are rebuilt whenever the sample bundle changed (so they are always newer than it).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { readBundleDoc, type BundleDoc } from '../../../src/bundle/format.js';
import { main } from '../../../src/cli/main.js';
import { startFileServer } from '../fileserver.js';
import { startRegistry } from '../registry.js';
import { buildK3sStandIn, K3S_SYSTEM_IMAGES } from '../standins/build.js';
import { buildFsmChart } from '../standins/fsm-chart.js';
import { buildSampleBundle, type SampleBundle } from './sample-bundle.js';
import { withFileLock } from '../file-lock.js';
import { pushStandInImages } from './synthetic.js';

export interface UpgradeBundle {
  name: 'lab-v2' | 'lab-v3';
  dir: string;
  doc: BundleDoc;
  publicKeyFile: string;
}

export const UPGRADE_VERSIONS = {
  'lab-v2': { k3s: 'v1.37.2+k3s1', chart: '1.5.2' },
  'lab-v3': { k3s: 'v1.37.3+k3s1', chart: '1.5.2' },
} as const;

/** The images whose own layer differs from the sample bundle's in lab-v2 and lab-v3. */
export const CHANGED_IMAGES = ['docker.io/flomesh/fsm-controller:1.5.1', K3S_SYSTEM_IMAGES.coredns];

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Builds (or reuses) lab, lab-v2 and lab-v3; returns them in that order. */
export async function buildUpgradeBundles(
  opts: { airgapDir?: string; log?: (l: string) => void } = {},
): Promise<{ v1: SampleBundle; v2: UpgradeBundle; v3: UpgradeBundle }> {
  const log = opts.log ?? (() => {});
  const airgap = path.resolve(opts.airgapDir ?? 'airgap');
  const v1 = await buildSampleBundle({ airgapDir: airgap, log });
  // one builder at a time (test files may run at the same time); the others wait and reuse what it built
  return withFileLock(path.join(airgap, 'upgrade-bundles.lock'), () => buildUpgradesLocked(airgap, v1, log));
}

async function buildUpgradesLocked(
  airgap: string,
  v1: SampleBundle,
  log: (l: string) => void,
): Promise<{ v1: SampleBundle; v2: UpgradeBundle; v3: UpgradeBundle }> {
  const stamp = sha256(
    fs.readFileSync(path.join(v1.dir, 'bundle.json')) +
      JSON.stringify(UPGRADE_VERSIONS) +
      CHANGED_IMAGES.join(',') +
      fs.readFileSync(new URL(import.meta.url)),
  );
  const names = ['lab-v2', 'lab-v3'] as const;
  const stampFile = (n: string) => path.join(airgap, n, 'sources.sha256');
  const fresh = names.every(
    (n) =>
      fs.existsSync(path.join(airgap, 'bundles', n, 'bundle.json')) &&
      fs.existsSync(stampFile(n)) &&
      fs.readFileSync(stampFile(n), 'utf8').trim() === stamp,
  );
  if (!fresh) {
    // In order: lab-v3's serial must be above lab-v2's, which must be above lab's.
    for (const n of names) {
      await buildOne(n, airgap, v1, log);
      fs.writeFileSync(stampFile(n), `${stamp}\n`);
    }
  }
  const open = (n: (typeof names)[number]): UpgradeBundle => {
    const dir = path.join(airgap, 'bundles', n);
    return { name: n, dir, doc: readBundleDoc(dir), publicKeyFile: v1.publicKeyFile };
  };
  return { v1, v2: open('lab-v2'), v3: open('lab-v3') };
}

async function buildOne(name: 'lab-v2' | 'lab-v3', airgap: string, v1: SampleBundle, log: (l: string) => void): Promise<void> {
  const versions = UPGRADE_VERSIONS[name];
  const work = path.join(airgap, name);
  const out = path.join(airgap, 'bundles', name);
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const registry = await startRegistry();
  const files = await startFileServer();
  try {
    const recipe = YAML.parse(fs.readFileSync('bundle/recipe.yaml', 'utf8'));
    recipe.metadata.name = name;
    recipe.spec.arches = { amd64: recipe.spec.arches.amd64 };
    recipe.spec.k3s.version = versions.k3s;
    recipe.spec.mirrors = { 'docker.io': { endpoints: [registry.url], upstream: false } };
    recipe.spec.k3s.releaseUrl = `${files.url}/k3s/{version}`;
    recipe.spec.k3s.installScript = { url: `${files.url}/k3s/{version}/install.sh` };
    recipe.spec.fsm.chart = { url: `${files.url}/charts/fsm-${versions.chart}.tgz` };
    const recipePath = path.join(work, 'recipe.yaml');
    fs.writeFileSync(
      recipePath,
      `# ${name}: an upgrade of the lab sample bundle (test/lab/images/upgrade-bundles.ts)\n${YAML.stringify(recipe)}`,
    );

    const rel = path.join(files.root, 'k3s', versions.k3s);
    fs.mkdirSync(rel, { recursive: true });
    log(`${name}: building the k3s stand-in ${versions.k3s}${name === 'lab-v3' ? ' (never ready)' : ''}`);
    await buildK3sStandIn('amd64', path.join(rel, 'k3s'), {
      version: versions.k3s,
      ...(name === 'lab-v3' ? { fault: 'never-ready' as const } : {}),
    });
    fs.writeFileSync(path.join(rel, 'sha256sum-amd64.txt'), `${sha256(fs.readFileSync(path.join(rel, 'k3s')))}  k3s\n`);
    const k3sImages = Object.values(K3S_SYSTEM_IMAGES);
    fs.writeFileSync(path.join(rel, 'k3s-images.txt'), k3sImages.join('\n') + '\n');
    fs.copyFileSync(path.join('test', 'lab', 'standins', 'install.sh'), path.join(rel, 'install.sh'));
    buildFsmChart(path.join(files.root, 'charts'), versions.chart, { valuesFrom: '1.5.1' });

    const meshRefs = new Set<string>();
    for (const f of Object.values(recipe.spec.fsm.features) as Array<{ images?: Array<{ ref: string }> }>)
      for (const i of f.images ?? []) meshRefs.add(i.ref);
    const all = [...k3sImages, ...meshRefs];
    log(`${name}: pushing ${all.length} images, ${CHANGED_IMAGES.length} with a changed layer`);
    // The same bytes as the sample bundle's (a deterministic build), then the changed ones over their tags.
    await pushStandInImages(registry.url, all, ['amd64', 'arm64']);
    await pushStandInImages(registry.url, CHANGED_IMAGES, ['amd64', 'arm64'], ' (upgraded)');

    const stderr: string[] = [];
    const stdout: string[] = [];
    const code = await main(
      [
        'node',
        'fsm-edge',
        'bundle',
        'build',
        '--recipe',
        recipePath,
        '--out',
        out,
        '--cache',
        path.join(airgap, 'cache'),
        '--signing-key',
        `file:${v1.privateKeyFile}`,
        '--json',
      ],
      {
        stdout: { write: (s: string) => stdout.push(s) },
        stderr: { write: (s: string) => (stderr.push(s), log(s.trimEnd())) },
        env: process.env,
      },
    );
    if (code !== 0) throw new Error(`${name}: fsm-edge bundle build exited ${code}:\n${stdout.join('')}${stderr.join('')}`);
  } finally {
    await files.stop();
    await registry.stop();
  }
}
