// LAB STAND-IN (never imported by src/): builds a stand-in for the FSM Helm chart archive `fsm-<version>.tgz`.
// The real chart cannot be downloaded here. This one carries the REAL Chart metadata, values.yaml and
// values.schema.json of that FSM release (copied from test/lab/reference/fsm/<version>/charts/fsm at build
// time) and no templates: the k3s stand-in's Helm controller reads values and schema from it and simulates what
// the templates would create.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fsmImagesFor, type FsmImage, type FsmValues } from './fsm-images.js';
import YAML from 'yaml';
import { deepMerge } from './helm-values.js';
import { REFERENCE_DIR } from '../reference.js';

export { fsmImagesFor, normalizeImageRef, type FsmImage } from './fsm-images.js';

export const FSM_REFERENCE_DIR = REFERENCE_DIR;

const referenceChartDir = (version: string) => path.join(FSM_REFERENCE_DIR, 'fsm', `v${version}`, 'charts', 'fsm');

/** The chart's default values (the real values.yaml of that release). */
export function fsmDefaultValues(version = '1.5.1'): FsmValues {
  return YAML.parse(fs.readFileSync(path.join(referenceChartDir(version), 'values.yaml'), 'utf8')) as FsmValues;
}

/**
 * Writes `<outDir>/fsm-<version>.tgz` (a `fsm/` directory, as `helm package` lays it out) and returns its path.
 * Deterministic: same inputs, same bytes (sorted entries, fixed mtime/owner), so bundles stay content-addressed.
 */
export function buildFsmChart(outDir: string, version = '1.5.1', opts: { valuesFrom?: string } = {}): string {
  // A chart-only release (e.g. 1.5.2 packaging the same images): Chart version `version`, values and schema of
  // the FSM release `valuesFrom` (the images and their tags stay those of that release).
  const src = referenceChartDir(opts.valuesFrom ?? version);
  for (const f of ['values.yaml', 'values.schema.json']) {
    if (!fs.existsSync(path.join(src, f)))
      throw new Error(
        `FSM chart stand-in: ${path.join(src, f)} is missing; the reference data for FSM v${opts.valuesFrom ?? version} is needed`,
      );
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fsm-chart-'));
  try {
    const dir = path.join(work, 'fsm');
    fs.mkdirSync(dir);
    const chart = {
      apiVersion: 'v2',
      name: 'fsm',
      description: 'STAND-IN for the Flomesh Service Mesh Helm chart (fsm-edge lab; real values and schema, no templates)',
      type: 'application',
      version,
      appVersion: `v${opts.valuesFrom ?? version}`,
      kubeVersion: '>= 1.19.0-0',
      annotations: { 'fsm-edge.flomesh.io/stand-in': 'true' },
    };
    fs.writeFileSync(path.join(dir, 'Chart.yaml'), YAML.stringify(chart));
    fs.copyFileSync(path.join(src, 'values.yaml'), path.join(dir, 'values.yaml'));
    fs.copyFileSync(path.join(src, 'values.schema.json'), path.join(dir, 'values.schema.json'));
    fs.writeFileSync(
      path.join(dir, 'README.md'),
      `# fsm ${version} — STAND-IN chart (fsm-edge lab)\n\n` +
        'The real FSM chart cannot be downloaded in the fsm-edge build environment. This archive holds the real\n' +
        `Chart metadata, \`values.yaml\` and \`values.schema.json\` of FSM v${version} and **no templates**. The lab's k3s\n` +
        'stand-in validates values against the schema and simulates the workloads the templates would create.\n' +
        'Never deploy it to a real cluster.\n',
    );
    fs.mkdirSync(outDir, { recursive: true });
    const out = path.join(path.resolve(outDir), `fsm-${version}.tgz`);
    const tarArgs = [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '--format=ustar',
      '--mode=u+rw,go+r,go-w',
      '-C',
      work,
      '-cf',
      '-',
      'fsm',
    ];
    const tarBytes = execFileSync('tar', tarArgs, { maxBuffer: 64 << 20 });
    fs.writeFileSync(out, execFileSync('gzip', ['-n', '-9', '-c'], { input: tarBytes, maxBuffer: 64 << 20 }));
    return out;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Images an install of this chart version pulls with the given values overrides (deep-merged over the real
 * defaults). Tests use it to synthesize exactly the archives a feature set needs.
 */
export function fsmImagesForValues(overrides: FsmValues = {}, version = '1.5.1'): FsmImage[] {
  return fsmImagesFor(deepMerge(fsmDefaultValues(version), overrides));
}
