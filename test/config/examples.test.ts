// The examples are valid, the JSON Schema an editor uses accepts them (and rejects broken ones), and the
// schema file committed next to them is what `fsm-edge config schema` prints.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { globSync } from 'tinyglobby';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REPO, runCli, runMain } from '../cli/run-cli.js';

const EXAMPLES = join(REPO, 'examples');
const exampleFiles = globSync('**/*.yaml', { cwd: EXAMPLES }).sort();
const topLevel = exampleFiles.filter((f) => !f.includes('/'));

function docsOf(file: string): Record<string, unknown>[] {
  return parseAllDocuments(readFileSync(join(EXAMPLES, file), 'utf8')).map((d) => d.toJS() as Record<string, unknown>);
}

async function schema(): Promise<Record<string, unknown>> {
  const r = await runMain(['config', 'schema']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe('examples', { timeout: 120_000 }, () => {
  it('cover every kind', () => {
    const kinds = new Set(exampleFiles.flatMap((f) => docsOf(f).map((d) => d.kind)));
    expect([...kinds].sort()).toEqual(['Fleet', 'Hub', 'Recipe', 'Site']);
  });

  it('pass `fsm-edge config validate` (real binary), fleets expanded', () => {
    const r = runCli(['config', 'validate', ...topLevel.map((f) => `examples/${f}`)]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const f of topLevel) expect(r.stdout).toContain(`✓ examples/${f}: `);
    // The fleet pulls in examples/sites/*.yaml and merges its defaults into them.
    expect(r.stdout).toMatch(/sites: .*pop-paris-1, pop-munich-1, pop-vienna-1/);
  });

  it('give one JSON document with --json', () => {
    const r = runCli(['config', 'validate', '--json', 'examples/fleet.yaml']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { ok: boolean; sites: string[]; files: Array<{ valid: boolean }> };
    expect(doc.ok).toBe(true);
    expect(doc.sites).toEqual(['pop-paris-1', 'pop-munich-1', 'pop-vienna-1']);
    expect(doc.files).toEqual([{ file: 'examples/fleet.yaml', valid: true, documents: [{ kind: 'Fleet', name: 'retail-eu', line: 4 }] }]);
  });

  it('name the schema file in their yaml-language-server modeline, and it is current', async () => {
    const committed = JSON.parse(readFileSync(join(EXAMPLES, 'fsm-edge.schema.json'), 'utf8')) as { oneOf: unknown[] };
    const current = (await schema()) as { oneOf: unknown[] };
    // The Recipe branch (index 3) follows src/config/recipe.ts, which the bundle work changes on its own
    // schedule; the document kinds of the config model must match exactly.
    const stale = 'examples/fsm-edge.schema.json is stale: run `fsm-edge config schema --out examples/fsm-edge.schema.json`';
    expect(committed.oneOf.slice(0, 3), stale).toEqual(current.oneOf.slice(0, 3));
    expect({ ...committed, oneOf: [] }, stale).toEqual({ ...current, oneOf: [] });
    for (const f of exampleFiles) {
      const first = readFileSync(join(EXAMPLES, f), 'utf8').split('\n')[0];
      expect(first, f).toBe(`# yaml-language-server: $schema=${f.includes('/') ? '../' : './'}fsm-edge.schema.json`);
    }
  });
});

describe('config schema', () => {
  it('is draft-07 with one branch per kind, each with a description', async () => {
    const s = await schema();
    expect(s.$schema).toBe('http://json-schema.org/draft-07/schema#');
    const branches = s.oneOf as Array<{ properties: { kind: { const: string } }; description?: string }>;
    expect(branches.map((b) => b.properties.kind.const)).toEqual(['Site', 'Fleet', 'Hub', 'Recipe']);
    for (const b of branches) expect(b.description).toBeTruthy();
  });

  it('accepts every example document (ajv, as yaml-language-server would)', async () => {
    const validate = new Ajv({ strict: false, allErrors: true }).compile(await schema());
    for (const f of exampleFiles) {
      for (const doc of docsOf(f)) {
        const ok = validate(doc);
        expect(ok, `${f} ${String(doc.kind)}: ${JSON.stringify(validate.errors)}`).toBe(true);
      }
    }
  });

  it('rejects documents the CLI rejects for their shape', async () => {
    const validate = new Ajv({ strict: false, allErrors: true }).compile(await schema());
    const site = docsOf('site.yaml')[0]!;
    const withSpec = (patch: (spec: Record<string, any>) => void) => {
      const d = structuredClone(site) as { spec: Record<string, any> };
      patch(d.spec);
      return d;
    };
    const bad = [
      withSpec((s) => (s.ssh.identityfile = 'x')), // unknown key
      withSpec((s) => (s.arch = 'amd46')), // enum
      withSpec((s) => (s.ssh.port = 70000)), // range
      withSpec((s) => (s.ssh.passphrase = 'hunter2')), // inline secret
      withSpec((s) => (s.ssh.hostKeys = ['SHA256:abc'])), // fingerprint pattern
      withSpec((s) => (s.ssh = '10.99.0.11')), // type
      { ...site, metadata: {} }, // required
      { ...site, kind: 'Sites' }, // kind
      { ...site, apiVersion: 'v1' }, // apiVersion
    ];
    for (const d of bad) expect(validate(d), JSON.stringify(d)).toBe(false);
  });

  it('writes to a file with --out', async () => {
    const r = await runMain(['config', 'schema', '--out', '/nonexistent-dir/x.json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot write /nonexistent-dir/x.json: ENOENT');
  });
});
