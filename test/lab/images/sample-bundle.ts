// The lab's sample bundle: bundle/recipe.yaml pointed at the lab registry (as the docker.io mirror) and the lab file
// server (as GitHub releases and the chart repo), holding the k3s/install.sh/chart stand-ins and small synthetic
// images under the real FSM and k3s names and tags, for amd64 and arm64 — built through `fsm-edge bundle build`.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { main } from '../../../src/cli/main.js';
import { generateKeyPair } from '../../../src/bundle/sign.js';
import { BundleFormatError, readBundleDoc, type BundleDoc } from '../../../src/bundle/format.js';
import { startFileServer } from '../fileserver.js';
import { startRegistry } from '../registry.js';
import { buildK3sStandIn, K3S_SYSTEM_IMAGES } from '../standins/build.js';
import { buildFsmChart } from '../standins/fsm-chart.js';
import { pushStandInImages } from './synthetic.js';
import { createHash } from 'node:crypto';
import { withFileLock } from '../file-lock.js';

export const SAMPLE_ARCHES = ['amd64', 'arm64'] as const;

export interface SampleBundle {
  dir: string;
  doc: BundleDoc;
  /** Trust this to verify the bundle. */
  publicKeyFile: string;
  privateKeyFile: string;
  recipePath: string;
}

export interface SampleOptions {
  /** Default `airgap` in the working directory (bundle in airgap/bundles/lab, key and recipe in airgap/lab). */
  airgapDir?: string;
  /** Rebuild even when a bundle is already there. */
  force?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

const sha256 = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

/** sha256 over every file the sample bundle is built from (paths and contents, in a stable order). */
function sourcesStamp(): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else h.update(`${p}\0`).update(fs.readFileSync(p));
    }
  };
  // The k3s stand-in embeds the lab API server and the product's registration renderer its hub controller uses.
  for (const d of ['test/lab/standins', 'test/lab/apiserver', 'src/install/render', 'test/lab/reference', 'test/lab/images', 'bundle'])
    walk(d);
  return h.digest('hex');
}

/**
 * The sample bundle, built when missing or made from other sources. Test files running at the same time share it:
 * one builds, the others wait on the lock and reuse it (two builds into one directory would clash).
 */
export function buildSampleBundle(opts: SampleOptions = {}): Promise<SampleBundle> {
  const airgap = path.resolve(opts.airgapDir ?? 'airgap');
  return withFileLock(path.join(airgap, 'sample-bundle.lock'), () => buildLocked(airgap, opts));
}

async function buildLocked(airgap: string, opts: SampleOptions): Promise<SampleBundle> {
  const work = path.join(airgap, 'lab');
  const dir = path.join(airgap, 'bundles', 'lab');
  const privateKeyFile = path.join(work, 'signing.key');
  const publicKeyFile = `${privateKeyFile}.pub`;
  const recipePath = path.join(work, 'recipe.yaml');
  const log = opts.log ?? (() => {});
  fs.mkdirSync(work, { recursive: true });
  if (!fs.existsSync(privateKeyFile)) generateKeyPair(privateKeyFile, publicKeyFile);
  // What the bundle is made of: the stand-ins (k3s, its embedded CRDs, the chart, the images) and the POP-side
  // files. A bundle built from other sources would install yesterday's stand-ins: build it again.
  const stampFile = path.join(work, 'sources.sha256');
  const stamp = sourcesStamp();
  const fresh = fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8').trim() === stamp;
  if (!opts.force && fresh && fs.existsSync(path.join(dir, 'bundle.json'))) {
    try {
      return { dir, doc: readBundleDoc(dir), publicKeyFile, privateKeyFile, recipePath };
    } catch (e) {
      // Made by an older fsm-edge (no build stamp, an older assemble.sh): build it again below.
      if (!(e instanceof BundleFormatError)) throw e;
    }
  }

  const registry = await startRegistry();
  const files = await startFileServer();
  try {
    const recipe = YAML.parse(fs.readFileSync('bundle/recipe.yaml', 'utf8'));
    const version: string = recipe.spec.k3s.version;
    recipe.metadata.name = 'lab';
    delete recipe.spec.arches.arm;
    recipe.spec.mirrors = { 'docker.io': { endpoints: [registry.url], upstream: false } };
    recipe.spec.k3s.releaseUrl = `${files.url}/k3s/{version}`;
    recipe.spec.k3s.installScript = { url: `${files.url}/k3s/{version}/install.sh` };
    recipe.spec.fsm.chart = { url: `${files.url}/charts/fsm-1.5.1.tgz` };
    fs.writeFileSync(
      recipePath,
      '# Lab copy of bundle/recipe.yaml (written by scripts/sample-bundle.ts): same images and features, fetched from\n' +
        '# the lab registry and file server, which hold stand-ins. The ports change per run; the lock pins content.\n' +
        YAML.stringify(recipe),
    );

    // The "release": stand-in binaries with their sha256sum files, the image list, install.sh, the chart.
    const rel = path.join(files.root, 'k3s', version);
    fs.mkdirSync(rel, { recursive: true });
    for (const arch of SAMPLE_ARCHES) {
      const bin = arch === 'amd64' ? 'k3s' : 'k3s-arm64';
      log(`building the k3s stand-in for ${arch}`);
      await buildK3sStandIn(arch, path.join(rel, bin), { version });
      fs.writeFileSync(path.join(rel, `sha256sum-${arch}.txt`), `${sha256(path.join(rel, bin))}  ${bin}\n`);
    }
    const k3sImages = Object.values(K3S_SYSTEM_IMAGES);
    fs.writeFileSync(path.join(rel, 'k3s-images.txt'), k3sImages.join('\n') + '\n');
    fs.copyFileSync(path.join('test', 'lab', 'standins', 'install.sh'), path.join(rel, 'install.sh'));
    buildFsmChart(path.join(files.root, 'charts'));

    const meshRefs = new Set<string>();
    for (const f of Object.values(recipe.spec.fsm.features) as Array<{ images?: Array<{ ref: string }> }>)
      for (const i of f.images ?? []) meshRefs.add(i.ref);
    log(`pushing ${k3sImages.length + meshRefs.size} synthetic images (amd64 + arm64) to the lab registry`);
    await pushStandInImages(registry.url, [...k3sImages, ...meshRefs], [...SAMPLE_ARCHES]);

    const stdout: string[] = [];
    const stderr: string[] = [];
    const code = await main(
      [
        'node',
        'fsm-edge',
        'bundle',
        'build',
        '--recipe',
        recipePath,
        '--out',
        dir,
        '--cache',
        path.join(airgap, 'cache'),
        '--signing-key',
        `file:${privateKeyFile}`,
        '--json',
      ],
      {
        stdout: { write: (s: string) => stdout.push(s) },
        stderr: { write: (s: string) => (stderr.push(s), log(s.trimEnd())) },
        env: process.env,
      },
    );
    if (code !== 0) throw new Error(`sample bundle: fsm-edge bundle build exited ${code}:\n${stdout.join('')}${stderr.join('')}`);
    fs.writeFileSync(stampFile, `${stamp}\n`);
    return { dir, doc: readBundleDoc(dir), publicKeyFile, privateKeyFile, recipePath };
  } finally {
    await files.stop();
    await registry.stop();
  }
}
