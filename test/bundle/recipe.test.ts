import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { featureClosure } from '../../src/bundle/build.js';
import { parseImageList, parseSha256Sums, expandUrl } from '../../src/bundle/release-files.js';
import { ConfigError } from '../../src/config/errors.js';
import { loadRecipe } from '../../src/config/load.js';

// The recipe is loaded by config's loader (the only one): every problem comes with file:line:column.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'recipe-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const shipped = () => YAML.parse(fs.readFileSync('bundle/recipe.yaml', 'utf8'));
/** The diagnostics of `doc` written to a file, as `line:column path: message` lines (throws if it loads). */
const problems = (doc: unknown): string[] => {
  const file = path.join(tmp, 'test.yaml');
  fs.writeFileSync(file, YAML.stringify(doc));
  try {
    loadRecipe(file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).diagnostics.map((d) => `${d.line}:${d.column} ${d.path}: ${d.message}`);
  }
  throw new Error('expected the recipe to be refused');
};

describe('bundle/recipe.yaml', () => {
  it('is a valid Recipe pinning k3s, FSM and Pipy', () => {
    const r = loadRecipe('bundle/recipe.yaml');
    expect(r.spec.k3s.version).toBe('v1.37.1+k3s1');
    expect(r.spec.fsm).toMatchObject({ version: 'v1.5.1', pipyVersion: '1.5.12' });
    expect(Object.keys(r.spec.fsm.features).sort()).toEqual(
      ['core', 'egress', 'gateway', 'ingress', 'multicluster', 'nodeLevel', 'observability', 'podLevel'].sort(),
    );
    expect(r.spec.arches.arm).toEqual({ features: [] });
    // Every pipy-based image uses the pinned Pipy version.
    const refs = Object.values(r.spec.fsm.features).flatMap((f) => f!.images.map((i) => i.ref));
    const pipy = refs.filter((x) => /\/pipy(-repo)?:/.test(x));
    const fsm = refs.filter((x) => x.includes('/flomesh/fsm-'));
    expect(pipy.length).toBeGreaterThan(0);
    expect(fsm.length).toBeGreaterThan(0);
    for (const ref of pipy) expect(ref.endsWith(':1.5.12')).toBe(true);
    for (const ref of fsm) expect(ref.endsWith(':1.5.1')).toBe(true);
  });

  it('refuses mesh features for 32-bit arm, saying why', () => {
    const doc = shipped();
    doc.spec.arches.arm = { features: ['core'] };
    expect(problems(doc).join('\n')).toMatch(
      /^\d+:\d+ spec\.arches\.arm\.features: arm can carry k3s only: Pipy .* has no 32-bit ARM build/m,
    );
  });

  it('refuses floating latest tags and unknown features', () => {
    const doc = shipped();
    doc.spec.fsm.features.observability.images.push({ ref: 'docker.io/jaegertracing/all-in-one:latest' });
    expect(problems(doc).join('\n')).toMatch(/floating tag `latest`/);
    const d2 = shipped();
    d2.spec.arches.amd64.features.push('tracing');
    expect(problems(d2).join('\n')).toMatch(/^\d+:\d+ spec\.arches\.amd64\.features\[\d+\]: /m);
  });

  it('closes features over what they require', () => {
    const r = loadRecipe('bundle/recipe.yaml');
    expect(featureClosure(r.spec, ['multicluster'])).toEqual(['core', 'ingress', 'multicluster']);
    expect(featureClosure(r.spec, [])).toEqual([]);
  });
});

describe('release file helpers', () => {
  it('parses sha256sum files as k3s publishes them', () => {
    const hex = 'a'.repeat(64);
    const m = parseSha256Sums(`${hex}  k3s-airgap-images-arm64.tar.zst\n${'b'.repeat(64)} *k3s-arm64\n\n`);
    expect(m.get('k3s-airgap-images-arm64.tar.zst')).toBe(`sha256:${hex}`);
    expect(m.get('k3s-arm64')).toBe(`sha256:${'b'.repeat(64)}`);
  });
  it('encodes + in versions for GitHub release URLs', () => {
    expect(expandUrl('https://github.com/k3s-io/k3s/releases/download/{version}/k3s', { version: 'v1.37.1+k3s1' })).toBe(
      'https://github.com/k3s-io/k3s/releases/download/v1.37.1%2Bk3s1/k3s',
    );
  });
  it('reads k3s-images.txt', () => {
    expect(parseImageList('docker.io/rancher/mirrored-pause:3.10.2\n\n# c\n docker.io/rancher/klipper-lb:v0.4.17 \n')).toEqual([
      'docker.io/rancher/mirrored-pause:3.10.2',
      'docker.io/rancher/klipper-lb:v0.4.17',
    ]);
  });
});
