// The Indexed Job `rollout --emit-job` prints, checked against the upstream batch/v1 Job schema (fixtures/README.md)
// with ajv — made as strict as the API server's field validation: an unknown field fails — and at the CLI: the
// shard index comes from JOB_COMPLETION_INDEX, and no secret is on the command line or in the manifest.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { rolloutJob } from '../../src/rollout/emit-job.js';
import { runMain } from '../cli/run-cli.js';

const SCHEMA = JSON.parse(readFileSync(new URL('./fixtures/batch-v1-job.openapi.json', import.meta.url), 'utf8')) as {
  components: { schemas: Record<string, unknown> };
};

/** Every object schema that names its properties gets additionalProperties: false (strict field validation). */
function strict(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(strict);
  if (!x || typeof x !== 'object') return x;
  const o = Object.fromEntries(
    Object.entries(x).map(([k, v]) => [
      k,
      k === 'properties' ? Object.fromEntries(Object.entries(v as object).map(([p, s]) => [p, strict(s)])) : strict(v),
    ]),
  );
  if ('properties' in o && !('additionalProperties' in o)) o.additionalProperties = false;
  return o;
}

// ajv-formats is CommonJS; its default export arrives wrapped under ESM interop (as in src/kube/crd-schema.ts).
type AddFormats = (ajv: Ajv) => Ajv;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ?? (addFormatsModule as unknown as AddFormats);

/** The parts of the Job the assertions read (the schema checks the whole). */
interface JobDoc {
  spec: {
    completionsMode?: string;
    parallelism: number | string;
    restartPolicy?: string;
    template: {
      spec: {
        restartPolicy: string;
        containers: Array<{ name?: string; args: string[]; env: unknown[] }>;
        volumes: Array<{ projected: { sources: Array<{ secret: { items: unknown[] } }> } }>;
      };
    };
  };
}

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
ajv.addFormat('double', { type: 'number', validate: () => true });
// IntOrString carries `x-kubernetes-int-or-string: true` and no type: an integer, or any string.
ajv.addFormat('int-or-string', { type: 'string', validate: () => true });
ajv.addSchema({ $id: 'k8s', ...(strict(SCHEMA) as object) });
const validateJob = ajv.compile({ $ref: 'k8s#/components/schemas/io.k8s.api.batch.v1.Job' });
const errors = () => ajv.errorsText(validateJob.errors);

const tmp = mkdtempSync(path.join(tmpdir(), 'emit-job-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const input = {
  fleet: 'edge',
  shards: 3,
  image: 'registry.example/fsm-edge:0.1.0',
  namespace: 'fsm-edge',
  fleetFile: 'fleet.yaml',
  configFiles: [{ path: 'signing.pub', source: 'signing.pub' }],
  secretFiles: [{ path: 'keys/id_ed25519', source: 'keys/id_ed25519' }],
  secretEnv: ['HUB_KUBECONFIG'],
  trustKeys: ['signing.pub'],
  bundle: 'fsm-edge-amd64',
  bundleClaim: 'bundles',
  stateClaim: 'state',
  extraArgs: [],
};

describe('the Indexed Job (upstream batch/v1 schema)', () => {
  it('validates, is Indexed with completions = parallelism = n, and each pod runs --shard $(JOB_COMPLETION_INDEX)/n', () => {
    const job = rolloutJob(input) as unknown as JobDoc;
    expect(validateJob(job), errors()).toBe(true);
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 3, parallelism: 3, backoffLimitPerIndex: 0 });
    // backoffLimitPerIndex needs restartPolicy Never (upstream JobSpec description).
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    const c = job.spec.template.spec.containers[0]!;
    expect(c.args.join(' ')).toContain('--shard $(JOB_COMPLETION_INDEX)/3');
    expect(c.args).toEqual(expect.arrayContaining(['--trust-key', '/etc/fsm-edge/config/signing.pub']));
    expect(c.env).toContainEqual({
      name: 'HUB_KUBECONFIG',
      valueFrom: { secretKeyRef: { name: 'fsm-edge-rollout-edge-secrets', key: 'HUB_KUBECONFIG' } },
    });
    const projected = job.spec.template.spec.volumes[0]!.projected;
    expect(projected.sources[1]!.secret.items).toEqual([{ key: 'keys__id_ed25519', path: 'keys/id_ed25519' }]);
  });

  it('the strict schema rejects an unknown field and a wrong type (the check can fail)', () => {
    const typo = rolloutJob(input) as unknown as JobDoc;
    typo.spec.completionsMode = 'Indexed';
    expect(validateJob(typo)).toBe(false);
    expect(errors()).toMatch(/additional properties/);
    const wrong = rolloutJob(input) as unknown as JobDoc;
    wrong.spec.parallelism = '3';
    expect(validateJob(wrong)).toBe(false);
    const noName = rolloutJob(input) as unknown as JobDoc;
    delete noName.spec.template.spec.containers[0]!.name;
    expect(validateJob(noName)).toBe(false);
  });
});

// The first in-process CLI run imports the whole CLI: slow on a loaded machine.
describe('fsm-edge rollout --emit-job', { timeout: 60_000 }, () => {
  const KEY = 'SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA';
  const dir = path.join(tmp, 'fleet');
  mkdirSync(path.join(dir, 'keys'), { recursive: true });
  writeFileSync(path.join(dir, 'keys', 'id_ed25519'), 'PRIVATE-KEY-MATERIAL\n', { mode: 0o600 });
  writeFileSync(path.join(dir, 'signing.pub'), 'untrusted comment: test\nRWQ\n');
  const fleet = path.join(dir, 'fleet.yaml');
  writeFileSync(
    fleet,
    `apiVersion: edge.flomesh.io/v1alpha1
kind: Fleet
metadata: { name: edge }
spec:
  defaults:
    ssh: { user: root, identityFile: keys/id_ed25519, hostKeys: ["${KEY}"], sudo: { password: { env: POP_SUDO } } }
  sites:
    - metadata: { name: pop1 }
      spec: { ssh: { host: 10.0.0.1 } }
    - metadata: { name: pop2 }
      spec: { ssh: { host: 10.0.0.2 } }
`,
  );

  it('prints a Job that validates, mounts the key from a Secret and the sudo password as env from it', async () => {
    const args = ['rollout', fleet, '--bundle', path.join(tmp, 'fsm-edge-amd64'), '--trust-key', path.join(dir, 'signing.pub')];
    const r = await runMain([...args, '--emit-job', '--shards', '4', '--image', 'registry.example/fsm-edge:0.1.0'], {
      env: { PATH: process.env.PATH, HOME: tmp, POP_SUDO: 'sudo-secret-value' },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^# fsm-edge rollout of fleet edge in 4 shard\(s\)/);
    expect(r.stdout).toMatch(/# {3}kubectl -n fsm-edge create secret generic fsm-edge-rollout-edge-secrets --from-file=keys__id_ed25519=/);
    expect(r.stdout).not.toContain('PRIVATE-KEY-MATERIAL');
    expect(r.stdout).not.toContain('sudo-secret-value');
    expect(r.stdout).not.toMatch(/[&*]a\d/); // no YAML anchors
    const job = parseYaml(r.stdout) as unknown as JobDoc;
    expect(validateJob(job), errors()).toBe(true);
    const c = job.spec.template.spec.containers[0]!;
    expect(c.args).toContain('$(JOB_COMPLETION_INDEX)/4');
    expect(c.args[1]).toBe('/etc/fsm-edge/config/fleet.yaml');
    expect(c.args).toContain('/var/lib/fsm-edge/bundles/fsm-edge-amd64');
    expect(c.env).toContainEqual({
      name: 'POP_SUDO',
      valueFrom: { secretKeyRef: { name: 'fsm-edge-rollout-edge-secrets', key: 'POP_SUDO' } },
    });
  });

  it('refuses a key outside the fleet directory (the Job mounts only that directory)', async () => {
    const outside = path.join(tmp, 'fleet-outside.yaml');
    writeFileSync(outside, readFileSync(fleet, 'utf8').replace('keys/id_ed25519', '/root/.ssh/id_ed25519'));
    const r = await runMain(
      ['rollout', outside, '--bundle', tmp, '--trust-key', path.join(dir, 'signing.pub'), '--emit-job', '--shards', '2', '--image', 'x'],
      { env: { PATH: process.env.PATH, HOME: tmp } },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/identityFile \/root\/.ssh\/id_ed25519 is outside the fleet file's directory/);
  });
});
