// The register phase's probe section run by a real sh against a fake `k3s kubectl`, and what its check makes of
// each answer: "the Secret is absent" and "the POP could not say" (a busy POP's kubectl past its bound) must
// never look alike — the second is asked again through the POP's API instead of registering the POP again.

import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSites } from '../../src/config/index.js';
import type { PhaseEnv } from '../../src/engine/phase.js';
import { K3S_BINARY, K3S_KUBECONFIG_PATH } from '../../src/engine/pop-layout.js';
import type { InstallContext } from '../../src/install/context.js';
import { DEFAULT_TIMEOUTS } from '../../src/install/context.js';
import { clusterFields, registerPhase, registerProbe } from '../../src/install/register.js';
import { HUB_ACCESS_NAME } from '../../src/install/render/registration.js';
import type { HubKube } from '../../src/kube/hub.js';
import type { PopKube } from '../../src/kube/pop.js';
import { RecordingHost } from '../engine/recording-host.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'fsm-edge-register-probe-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The probe section with the POP's k3s and kubeconfig paths pointed at a fake; `timeout` gives up at once on `slow`. */
function probe(answer: 'found' | 'not-found' | 'refused' | 'slow'): string {
  const dir = mkdtempSync(path.join(tmp, 'pop-'));
  mkdirSync(path.join(dir, 'bin'));
  const exe = (name: string, body: string) => {
    writeFileSync(path.join(dir, 'bin', name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(dir, 'bin', name), 0o755);
  };
  exe(
    'k3s',
    {
      found: 'echo "fsm-edge-hub   kubernetes.io/service-account-token   3   5m"',
      'not-found': 'echo \'Error from server (NotFound): secrets "fsm-edge-hub" not found\' >&2; exit 1',
      refused: "echo 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?' >&2; exit 1",
      slow: 'exit 0',
    }[answer],
  );
  exe('timeout', answer === 'slow' ? 'exit 124' : 'shift; exec "$@"');
  writeFileSync(path.join(dir, 'kubeconfig'), 'apiVersion: v1\n');
  const script = registerProbe('fsm-system')
    .replaceAll(K3S_BINARY, path.join(dir, 'bin', 'k3s'))
    .replaceAll(K3S_KUBECONFIG_PATH, path.join(dir, 'kubeconfig'));
  return execFileSync('sh', ['-c', script], { env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}` }, encoding: 'utf8' });
}

describe('register probe', () => {
  it('says access, no-access only on NotFound, and access-unknown when kubectl could not answer', () => {
    expect(probe('found')).toBe('access\n');
    expect(probe('not-found')).toBe('no-access\n');
    expect(probe('refused')).toBe('access-unknown\n');
    expect(probe('slow')).toBe('access-unknown\n');
  });
});

describe('register check', () => {
  const file = path.join(tmp, 'site.yaml');
  writeFileSync(
    file,
    `apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop1 }\nspec:\n  ssh: { host: 10.0.0.9, user: root, agent: true, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }\n  hub: { ref: hub-eu, region: eu, zone: z1, group: retail }\n`,
  );
  const site = loadSites([file]).sites[0]!;

  /** A hub whose Cluster is Managed with our fields, and a POP API whose Secret read answers `secret`. */
  async function check(probeOut: string, secret: 'found' | 'not-found' | 'down') {
    const reads: string[] = [];
    const ctx = {
      site,
      configDir: tmp,
      options: { ...DEFAULT_TIMEOUTS, dryRun: true, stateDir: tmp },
      metrics: {},
      installed: {},
      hubKube: { server: 'https://hub.example:6443' } as unknown as HubKube,
      popKube: {
        core: {
          readNamespacedSecret: async (r: { name: string; namespace: string }) => {
            reads.push(`${r.namespace}/${r.name}`);
            if (secret === 'found') return { data: { token: 'dA==' } };
            throw Object.assign(new Error(secret === 'not-found' ? 'NotFound' : 'ECONNREFUSED'), {
              code: secret === 'not-found' ? 404 : 0,
            });
          },
        },
      } as unknown as PopKube,
    } as unknown as InstallContext;
    const fields = clusterFields(ctx);
    (ctx.hubKube as unknown as { getCluster: () => Promise<unknown> }).getCluster = async () => ({
      metadata: { name: 'pop1' },
      spec: {
        region: fields.region,
        zone: fields.zone,
        group: fields.group,
        gatewayHost: fields.gatewayHost,
        gatewayPort: fields.gatewayPort,
        fsmNamespace: fields.fsmNamespace,
      },
      status: { conditions: [{ type: 'Managed', status: 'True' }] },
    });
    const host = new RecordingHost();
    const env: PhaseEnv = { host, dryRun: true, signal: new AbortController().signal, probe: probeOut };
    const live = await registerPhase.check(ctx, undefined, env);
    return { planned: registerPhase.plan(ctx, undefined, live, env).map((c) => c.description), reads };
  }

  it('a POP whose kubectl could not answer is asked through its API: access found there, nothing to change', async () => {
    const r = await check('access-unknown', 'found');
    expect(r.reads).toEqual([`fsm-system/${HUB_ACCESS_NAME}`]);
    expect(r.planned).toEqual([]);
  });

  it('registers again when the Secret is absent (said by the probe, or by the API), or nobody can say', async () => {
    for (const [out, api] of [
      ['no-access', 'found'],
      ['access-unknown', 'not-found'],
      ['access-unknown', 'down'],
    ] as const) {
      const r = await check(out, api);
      expect(r.reads).toEqual(out === 'no-access' ? [] : [`fsm-system/${HUB_ACCESS_NAME}`]);
      expect(r.planned[0]).toMatch(new RegExp(`^create ServiceAccount fsm-system/${HUB_ACCESS_NAME} `));
    }
  });

  it('a probe that said access is not asked again', async () => {
    const r = await check('access', 'down');
    expect(r.reads).toEqual([]);
    expect(r.planned).toEqual([]);
  });
});
