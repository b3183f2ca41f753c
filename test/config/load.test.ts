// The loader API other parts call: defaults, path resolution, fleet expansion and merge rules, source
// positions, secret references resolved at use time and never echoed.

import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../src/cli/output.js';
import { ConfigError, FsmEdgeError } from '../../src/config/errors.js';
import {
  fieldLocation,
  loadConfigFile,
  loadFleet,
  loadHub,
  loadSite,
  loadSites,
  mergeDefaults,
  parseSecretRefArg,
  resolveSecret,
  sourceOf,
} from '../../src/config/index.js';
import { REPO, runMain } from '../cli/run-cli.js';

const EX = join(REPO, 'examples');
const tmp = mkdtempSync(join(tmpdir(), 'fsm-edge-load-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const p = join(tmp, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadSite / loadHub / loadConfigFile', () => {
  it('applies defaults and makes paths absolute', () => {
    const site = loadSite(join(EX, 'site.yaml'));
    expect(site.metadata.name).toBe('pop-berlin-1');
    expect(site.spec.ssh.port).toBe(22);
    expect(site.spec.ssh.identityFile).toBe(join(homedir(), '.ssh/id_ed25519'));
    expect(site.spec.ssh.passphrase).toEqual({ env: 'POP_KEY_PASSPHRASE' });
    expect(site.spec.ssh.jumpHosts[0]).toMatchObject({ host: 'gw.berlin.example.net', port: 22, user: 'ops', agent: true });
    expect(site.spec.k3s).toMatchObject({ datastore: 'sqlite', clusterCidr: '10.42.0.0/16', serviceCidr: '10.43.0.0/16' });
    expect(site.spec.mesh).toEqual({ interception: 'auto', ingress: true, multicluster: true, profile: 'edge-small' });
    expect(sourceOf(site)).toEqual({ file: join(EX, 'site.yaml'), line: 3, column: 1, document: 0 });
  });

  it('fills every default for a minimal site', () => {
    const p = write(
      'min.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: m }\nspec: { ssh: { host: h, agent: true } }\n',
    );
    const site = loadSite(p);
    expect(site.spec).toEqual({
      arch: 'auto',
      ssh: { host: 'h', port: 22, user: 'root', agent: true, hostKeys: [], jumpHosts: [], sudo: true },
      k3s: {
        tlsSans: [],
        nodeLabels: {},
        disable: ['traefik'],
        datastore: 'sqlite',
        clusterCidr: '10.42.0.0/16',
        serviceCidr: '10.43.0.0/16',
      },
      mesh: { interception: 'auto', ingress: true, multicluster: true, profile: 'edge-small' },
    });
  });

  it('reads several documents from one file, relative paths from that file', () => {
    const docs = loadConfigFile(join(EX, 'standalone.yaml'));
    expect(docs.map((d) => [d.kind, d.source.line, d.source.document])).toEqual([
      ['Hub', 4, 0],
      ['Site', 10, 1],
    ]);
    const site = loadSite(join(EX, 'standalone.yaml'));
    expect(site.spec.ssh.identityFile).toBe(join(REPO, '.lab/ssh/id_ed25519'));
    expect(site.spec.ssh.sudo).toBe(false);
    expect(site.spec.hub).toEqual({ ref: 'hub-lab', region: 'default', zone: 'lab', group: 'default' });
    expect(loadHub(join(EX, 'standalone.yaml')).spec).toEqual({
      kubeconfig: { env: 'FSM_EDGE_HUB_KUBECONFIG' },
      fsmNamespace: 'fsm-system',
    });
  });

  it('follows YAML anchors and merge keys', () => {
    const p = write(
      'merge.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Fleet\nmetadata: { name: m }\nspec:\n  sites:\n    - metadata: { name: a }\n      spec: { ssh: &ssh { host: 10.99.0.1, user: pop, agent: true } }\n    - metadata: { name: b }\n      spec:\n        ssh:\n          <<: *ssh\n          host: 10.99.0.2\n',
    );
    const { sites } = loadFleet(p);
    expect(sites.map((s) => [s.spec.ssh.host, s.spec.ssh.user, s.spec.ssh.agent])).toEqual([
      ['10.99.0.1', 'pop', true],
      ['10.99.0.2', 'pop', true],
    ]);
  });

  it('makes a Hub kubeconfig file absolute', () => {
    const hub = loadHub(join(EX, 'hub.yaml'));
    expect(hub.spec.kubeconfig).toEqual({ file: join(homedir(), '.kube/hub-eu.yaml') });
  });

  it('refuses a file with two Sites, or none', () => {
    const two = write(
      'two.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: a }\nspec: { ssh: { host: a, agent: true } }\n---\napiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: b }\nspec: { ssh: { host: b, agent: true } }\n',
    );
    const e = configError(() => loadSite(two));
    expect(e.kind).toBe('config');
    expect(exitCodeFor(e.kind)).toBe(2);
    expect(e.diagnostics).toEqual([
      { file: two, line: 6, column: 1, path: '', message: 'expected one Site document, found 2; list several sites in a Fleet' },
    ]);
    expect(configError(() => loadSite(join(EX, 'hub.yaml'))).diagnostics[0]!.message).toBe('expected a Site document, found Hub');
  });

  it('throws every problem of an invalid file at once', () => {
    const p = write(
      'bad.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: a }\nspec:\n  arch: x86\n  ssh: { host: "a b", agent: true, port: -1 }\n',
    );
    const e = configError(() => loadSite(p));
    expect(e.diagnostics.map((d) => `${d.line}:${d.column} ${d.path}`)).toEqual([
      '5:9 spec.arch',
      '6:16 spec.ssh.host',
      '6:42 spec.ssh.port',
    ]);
    expect(e.message).toBe(`invalid configuration ${p}: 3 problems in ${p}`);
  });
});

describe('loadFleet', () => {
  const { fleet, sites } = loadFleet(join(EX, 'fleet.yaml'));
  const byName = Object.fromEntries(sites.map((s) => [s.metadata.name, s]));

  it('lists inline and glob-matched sites in fleet order', () => {
    expect(fleet.metadata.name).toBe('retail-eu');
    expect(fleet.spec.rollout).toEqual({ parallel: 8, maxFailures: 1 });
    expect(sites.map((s) => s.metadata.name)).toEqual(['pop-paris-1', 'pop-munich-1', 'pop-vienna-1']);
    expect(sourceOf(byName['pop-munich-1']!)).toMatchObject({ file: join(EX, 'sites/pop-munich-1.yaml'), line: 3 });
    expect(sourceOf(byName['pop-paris-1']!)).toMatchObject({ file: join(EX, 'fleet.yaml'), line: 18, column: 7 });
  });

  it('merges defaults under each site: mappings key by key, own values win, lists replaced', () => {
    const munich = byName['pop-munich-1']!;
    expect(munich.spec.ssh).toMatchObject({ host: '10.99.0.31', user: 'pop', identityFile: join(homedir(), '.ssh/id_ed25519') });
    expect(munich.spec.ssh.jumpHosts).toHaveLength(1);
    expect(munich.spec.hub).toEqual({ ref: 'hub-eu', region: 'eu', group: 'retail', zone: 'munich' });
    expect(munich.spec.k3s.nodeLabels).toEqual({ 'edge.flomesh.io/store': '0417' });
    expect(byName['pop-paris-1']!.spec.ssh.hostKeys).toEqual(['SHA256:lAkd1koh/+lCFLxtF97rQ4c6XPLwpxtLXKqaXIG2ln0']);
    const vienna = byName['pop-vienna-1']!;
    expect(vienna.spec.arch).toBe('arm'); // allowed here; preflight flags arm + mesh
    expect(vienna.spec.mesh.ingress).toBe(true);
    expect(vienna.spec.ssh).toMatchObject({ host: 'fd00:99::41', port: 2222 });
  });

  it('fieldLocation points at where a value is written, in the site file or in the fleet defaults', () => {
    const munich = byName['pop-munich-1']!;
    expect(fieldLocation(munich, ['spec', 'ssh', 'host'])).toMatchObject({
      file: join(EX, 'sites/pop-munich-1.yaml'),
      line: 8,
      column: 16,
      path: 'spec.ssh.host',
    });
    expect(fieldLocation(munich, ['spec', 'ssh', 'user'])).toMatchObject({
      file: join(EX, 'fleet.yaml'),
      line: 11,
      column: 13,
      path: 'spec.defaults.ssh.user',
    });
    expect(fieldLocation(byName['pop-paris-1']!, ['spec', 'hub', 'zone'])).toMatchObject({
      file: join(EX, 'fleet.yaml'),
      line: 22,
      path: 'spec.sites[0].spec.hub.zone',
    });
    expect(fieldLocation({}, ['spec'])).toBeUndefined();
  });

  it('mergeDefaults keeps secret references whole', () => {
    expect(mergeDefaults({ ssh: { passphrase: { env: 'A' }, user: 'x' } }, { ssh: { passphrase: { file: 'b' } } })).toEqual({
      ssh: { passphrase: { file: 'b' }, user: 'x' },
    });
    expect(mergeDefaults({ k3s: { disable: ['traefik', 'servicelb'] } }, { k3s: { disable: [] } })).toEqual({ k3s: { disable: [] } });
    expect(mergeDefaults({ a: { b: 1 } }, undefined)).toEqual({ a: { b: 1 } });
  });

  it('resolves file globs and relative key paths from the fleet file’s directory', () => {
    write(
      'f/fleet.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Fleet\nmetadata: { name: f }\nspec:\n  defaults: { ssh: { identityFile: keys/id } }\n  sites: [{ file: "pops/*.yaml" }]\n',
    );
    write(
      'f/pops/a.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: a }\nspec: { ssh: { host: 10.99.0.5, passphrase: { file: ../pass } } }\n',
    );
    const loaded = loadFleet(join(tmp, 'f/fleet.yaml'));
    expect(loaded.sites[0]!.spec.ssh.identityFile).toBe(join(tmp, 'f/keys/id'));
    expect(loaded.sites[0]!.spec.ssh.passphrase).toEqual({ file: join(tmp, 'f/pass') });
  });
});

describe('loadSites', () => {
  it('takes a mix of fleet, site and hub files', () => {
    const cfg = loadSites([join(EX, 'fleet.yaml'), join(EX, 'site.yaml'), join(EX, 'hub.yaml')]);
    expect(cfg.sites.map((s) => s.metadata.name)).toEqual(['pop-paris-1', 'pop-munich-1', 'pop-vienna-1', 'pop-berlin-1']);
    expect(cfg.hubs.map((h) => h.metadata.name)).toEqual(['hub-eu']);
    expect(cfg.fleets).toHaveLength(1);
  });

  it('refuses the same site name in two files', () => {
    const copy = write(
      'copy.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop-berlin-1 }\nspec: { ssh: { host: 10.99.0.77, agent: true } }\n',
    );
    const e = configError(() => loadSites([join(EX, 'site.yaml'), copy]));
    expect(e.diagnostics).toEqual([
      {
        file: copy,
        line: 3,
        column: 19,
        path: 'metadata.name',
        document: 0,
        message: `duplicate site name \`pop-berlin-1\`; first defined at ${join(EX, 'site.yaml')}:6:9`,
      },
    ]);
  });
});

describe('secrets', () => {
  it('resolveSecret reads env and files at use time', () => {
    expect(resolveSecret({ env: 'POP_PASS' }, tmp, { POP_PASS: 's3' })).toBe('s3');
    write('pass', 'from-file\n');
    expect(resolveSecret({ file: 'pass' }, tmp)).toBe('from-file');
    expect(resolveSecret({ file: join(tmp, 'pass') })).toBe('from-file');
  });

  it('says which variable or file is missing, with exit 2', () => {
    const missing = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(FsmEdgeError);
        expect(exitCodeFor((err as FsmEdgeError).kind)).toBe(2);
        return (err as FsmEdgeError).message;
      }
      throw new Error('expected an error');
    };
    expect(missing(() => resolveSecret({ env: 'NOPE' }, tmp, {}))).toBe('the secret environment variable NOPE is not set');
    expect(missing(() => resolveSecret({ file: 'none' }, tmp))).toBe(`cannot read the secret file ${join(tmp, 'none')}: no such file`);
    write('empty', '\n');
    expect(missing(() => resolveSecret({ file: 'empty' }, tmp))).toBe(`the secret file ${join(tmp, 'empty')} is empty`);
  });

  it('an inline secret is refused without repeating it', async () => {
    const p = write(
      'inline.yaml',
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: a }\nspec:\n  ssh: { host: a, identityFile: k, passphrase: hunter2-topsecret }\n',
    );
    for (const args of [
      ['config', 'validate', p],
      ['config', 'validate', '--json', p],
    ]) {
      const r = await runMain(args);
      expect(r.code).toBe(2);
      expect(r.stdout + r.stderr).toContain('secrets are never written inline');
      expect(r.stdout + r.stderr).not.toContain('hunter2');
    }
  });

  it('parseSecretRefArg takes env:NAME or file:PATH, and never echoes a raw value', () => {
    expect(parseSecretRefArg('env:FSM_EDGE_SIGNING_KEY', '--signing-key')).toEqual({ env: 'FSM_EDGE_SIGNING_KEY' });
    expect(parseSecretRefArg('file:/keys/sign.key', '--signing-key')).toEqual({ file: '/keys/sign.key' });
    try {
      parseSecretRefArg('MC4CAQAwBQYDK2VwBCIEIFakeKeyMaterial', '--signing-key');
      throw new Error('expected an error');
    } catch (err) {
      expect((err as FsmEdgeError).kind).toBe('usage');
      expect(exitCodeFor((err as FsmEdgeError).kind)).toBe(2);
      expect((err as FsmEdgeError).message).toBe('--signing-key takes env:NAME or file:PATH, not the secret itself');
      expect(JSON.stringify(err) + String((err as FsmEdgeError).fix)).not.toContain('FakeKeyMaterial');
    }
  });
});
