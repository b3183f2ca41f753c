// Every malformed input exits 2 and says where (file:line:column), which field, and what was expected.
// All cases run through the CLI's main(); the ones marked `bin` also through the real bin/fsm-edge.js.

import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, runMain } from '../cli/run-cli.js';

const HEAD = 'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop-a }\nspec:\n'; // lines 1-4
const SSH = '  ssh:\n    host: 10.99.0.11\n    user: pop\n    agent: true\n'; // lines 5-8
/** A valid site whose spec continues at line 9 with `extra`. */
const site = (extra = '') => HEAD + SSH + extra;
/** A site whose ssh block (from line 6 on) is `sshBody`, indented by 4. */
const siteSsh = (sshBody: string, extra = '') => HEAD + '  ssh:\n' + sshBody + extra;
const FLEET_HEAD = 'apiVersion: edge.flomesh.io/v1alpha1\nkind: Fleet\nmetadata: { name: fleet-a }\nspec:\n'; // 1-4

interface Expected {
  /** `file:line:column` relative to the case directory. */
  at: string;
  /** Field path as printed (empty for whole-file and YAML syntax problems). */
  path: string;
  text: string | RegExp;
}

interface Case {
  name: string;
  files: Record<string, string | Buffer>;
  /** Files to validate; default: the first file. */
  args?: string[];
  expect: Expected[];
  bin?: boolean;
}

const cases: Case[] = [
  // --- the file itself -------------------------------------------------------------------------------------
  {
    name: 'YAML syntax error: unclosed flow mapping',
    files: { 'site.yaml': 'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: a\nspec: {}\n' },
    expect: [{ at: 'site.yaml:4:1', path: '', text: /YAML syntax: .*end with a \}/ }],
    bin: true,
  },
  {
    name: 'YAML syntax error: bad indentation',
    files: { 'site.yaml': HEAD + '  ssh:\n    host: a\n   user: pop\n' },
    expect: [{ at: 'site.yaml:7:1', path: '', text: /YAML syntax: All mapping items must start at the same column/ }],
  },
  {
    name: 'YAML syntax error: a key written twice',
    files: { 'site.yaml': site('  arch: amd64\n  arch: arm64\n') },
    expect: [{ at: 'site.yaml:10:3', path: '', text: /YAML syntax: Map keys must be unique/ }],
  },
  {
    name: 'YAML: unknown tag',
    files: { 'site.yaml': site('  arch: !fancy amd64\n') },
    expect: [{ at: 'site.yaml:9:9', path: '', text: /YAML syntax: .*tag/i }],
  },
  {
    name: 'empty file',
    files: { 'site.yaml': '' },
    expect: [{ at: 'site.yaml:1:1', path: '', text: 'empty file: expected a YAML document with `apiVersion: edge.flomesh.io/v1alpha1`' }],
    bin: true,
  },
  {
    name: 'only comments and document markers',
    files: { 'site.yaml': '# nothing here yet\n---\n---\n' },
    expect: [{ at: 'site.yaml:1:1', path: '', text: 'empty file' }],
  },
  {
    name: 'binary garbage',
    files: { 'site.yaml': Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0xff, 0xfe]) },
    expect: [{ at: 'site.yaml:1:3', path: '', text: 'not a YAML text file: binary byte 0x03 at offset 2' }],
    bin: true,
  },
  {
    name: 'invalid UTF-8 on line 3',
    files: {
      'site.yaml': Buffer.concat([
        Buffer.from('apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: '),
        Buffer.from([0xc3, 0x28]),
        Buffer.from(' }\n'),
      ]),
    },
    expect: [{ at: 'site.yaml:3:19', path: '', text: 'binary byte 0xc3 at offset 66' }],
  },
  {
    name: 'file does not exist',
    files: {},
    args: ['missing.yaml'],
    expect: [{ at: 'missing.yaml:1:1', path: '', text: 'cannot read the file: no such file' }],
  },
  {
    name: 'a directory instead of a file',
    files: { 'dir/x.txt': 'x' },
    args: ['dir'],
    expect: [{ at: 'dir:1:1', path: '', text: 'is a directory' }],
  },
  {
    name: 'top level is a list',
    files: { 'site.yaml': '- apiVersion: edge.flomesh.io/v1alpha1\n  kind: Site\n' },
    expect: [{ at: 'site.yaml:1:1', path: '', text: 'expected a mapping with apiVersion, kind, metadata and spec; got a list' }],
  },
  {
    name: 'YAML alias bomb',
    files: {
      'site.yaml':
        HEAD +
        'x:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n' +
        ['b', 'c', 'd', 'e', 'f', 'g']
          .map(
            (k, i) =>
              `  ${k}: &${k} [${Array(10)
                .fill('*' + 'abcdefg'[i])
                .join(', ')}]\n`,
          )
          .join(''),
    },
    expect: [{ at: 'site.yaml:1:1', path: '', text: 'YAML: Excessive alias count indicates a resource exhaustion attack' }],
  },
  {
    name: 'unknown key next to a YAML merge key',
    files: { 'site.yaml': site('  k3s: &k { datastore: etcd }\n  mesh:\n    <<: *k\n') },
    expect: [{ at: 'site.yaml:9:13', path: 'spec.mesh.datastore', text: 'unknown key `datastore`; valid keys here: interception' }],
  },
  // --- apiVersion and kind ---------------------------------------------------------------------------------
  {
    name: 'missing apiVersion',
    files: { 'site.yaml': 'kind: Site\nmetadata: { name: a }\n' },
    expect: [{ at: 'site.yaml:1:1', path: 'apiVersion', text: 'required field missing: add `apiVersion: edge.flomesh.io/v1alpha1`' }],
  },
  {
    name: 'wrong apiVersion',
    files: { 'site.yaml': site().replace('edge.flomesh.io/v1alpha1', 'v1') },
    expect: [{ at: 'site.yaml:1:13', path: 'apiVersion', text: 'unsupported apiVersion string `v1`: expected `edge.flomesh.io/v1alpha1`' }],
    bin: true,
  },
  {
    name: 'a future apiVersion of ours',
    files: { 'site.yaml': site().replace('v1alpha1', 'v1beta1') },
    expect: [{ at: 'site.yaml:1:13', path: 'apiVersion', text: 'this fsm-edge reads only that version' }],
  },
  {
    name: 'missing kind',
    files: { 'site.yaml': 'apiVersion: edge.flomesh.io/v1alpha1\nmetadata: { name: a }\n' },
    expect: [{ at: 'site.yaml:1:1', path: 'kind', text: 'required field missing: add `kind:` (one of Site, Fleet, Hub, Recipe)' }],
  },
  {
    name: 'unknown kind with a typo',
    files: { 'site.yaml': site().replace('kind: Site', 'kind: Sites') },
    expect: [
      {
        at: 'site.yaml:2:7',
        path: 'kind',
        text: 'unknown kind string `Sites`: expected one of Site, Fleet, Hub, Recipe (did you mean `Site`?)',
      },
    ],
    bin: true,
  },
  // --- required fields and types ---------------------------------------------------------------------------
  {
    name: 'missing metadata.name',
    files: { 'site.yaml': site().replace('{ name: pop-a }', '{ labels: {} }') },
    expect: [{ at: 'site.yaml:3:1', path: 'metadata.name', text: 'required field missing (expected a string)' }],
  },
  {
    name: 'missing spec.ssh',
    files: { 'site.yaml': HEAD + '  arch: amd64\n' },
    expect: [{ at: 'site.yaml:4:1', path: 'spec.ssh', text: 'required field missing (expected a mapping)' }],
    bin: true,
  },
  {
    name: 'missing ssh.host',
    files: { 'site.yaml': siteSsh('    user: pop\n    agent: true\n') },
    expect: [{ at: 'site.yaml:5:3', path: 'spec.ssh.host', text: 'required field missing (expected a string)' }],
  },
  {
    name: 'port written as a quoted string',
    files: { 'site.yaml': site('').replace('    agent: true\n', '    agent: true\n    port: "22"\n') },
    expect: [{ at: 'site.yaml:9:11', path: 'spec.ssh.port', text: 'expected a number, got string `22` (remove the quotes)' }],
  },
  {
    name: 'YAML 1.1 boolean',
    files: { 'site.yaml': site().replace('agent: true', 'agent: yes') },
    expect: [{ at: 'site.yaml:8:12', path: 'spec.ssh.agent', text: 'expected a boolean, got string `yes` (write true or false' }],
  },
  {
    name: 'a list written as a string',
    files: { 'site.yaml': site('  k3s:\n    disable: traefik\n') },
    expect: [{ at: 'site.yaml:10:14', path: 'spec.k3s.disable', text: 'expected a list, got string `traefik` (write a list: [traefik])' }],
  },
  // --- unknown keys and enum values ------------------------------------------------------------------------
  {
    name: 'unknown key: identityfile',
    files: { 'site.yaml': site().replace('    agent: true\n', '    identityfile: ~/.ssh/id_ed25519\n') },
    expect: [{ at: 'site.yaml:8:5', path: 'spec.ssh.identityfile', text: 'unknown key `identityfile` (did you mean `identityFile`?)' }],
    bin: true,
  },
  {
    name: 'unknown top-level key',
    files: { 'site.yaml': site('metdata: {}\n') },
    expect: [{ at: 'site.yaml:9:1', path: 'metdata', text: 'unknown key `metdata` (did you mean `metadata`?)' }],
  },
  {
    name: 'enum typo: arch',
    files: { 'site.yaml': site('  arch: amd46\n') },
    expect: [
      {
        at: 'site.yaml:9:9',
        path: 'spec.arch',
        text: 'expected one of `auto`, `amd64`, `arm64`, `arm`, got string `amd46` (did you mean `amd64`?)',
      },
    ],
  },
  {
    name: 'enum typo: interception',
    files: { 'site.yaml': site('  mesh: { interception: ebfp }\n') },
    expect: [{ at: 'site.yaml:9:25', path: 'spec.mesh.interception', text: '(did you mean `ebpf`?)' }],
  },
  {
    name: 'enum: unsupported datastore',
    files: { 'site.yaml': site('  k3s:\n    datastore: mysql\n') },
    expect: [{ at: 'site.yaml:10:16', path: 'spec.k3s.datastore', text: 'expected one of `sqlite`, `etcd`, got string `mysql`' }],
  },
  // --- value formats ---------------------------------------------------------------------------------------
  {
    name: 'metadata.name not a Kubernetes name',
    files: { 'site.yaml': site().replace('pop-a', 'Pop_Berlin') },
    expect: [
      {
        at: 'site.yaml:3:19',
        path: 'metadata.name',
        text: "is not a valid name: lower-case letters, digits and '-', starting and ending with a letter or digit (did you mean `pop-berlin`?)",
      },
    ],
  },
  {
    name: 'bad IPv4 address',
    files: { 'site.yaml': site().replace('10.99.0.11', '10.99.0.300') },
    expect: [{ at: 'site.yaml:6:11', path: 'spec.ssh.host', text: '`10.99.0.300` is not a valid IPv4 address' }],
    bin: true,
  },
  {
    name: 'host with a port in it',
    files: { 'site.yaml': site().replace('10.99.0.11', 'pop-a.example.net:2222') },
    expect: [{ at: 'site.yaml:6:11', path: 'spec.ssh.host', text: 'contains a port; put the port in `port:`' }],
  },
  {
    name: 'bad IPv6 address',
    files: { 'site.yaml': site().replace('10.99.0.11', '"fd00::99::1"') },
    expect: [{ at: 'site.yaml:6:11', path: 'spec.ssh.host', text: 'is not a valid IPv6 address' }],
  },
  {
    name: 'port out of range',
    files: { 'site.yaml': site().replace('    agent: true\n', '    agent: true\n    port: 70000\n') },
    expect: [{ at: 'site.yaml:9:11', path: 'spec.ssh.port', text: 'expected a number ≤ 65535, got number `70000`' }],
  },
  {
    name: 'port zero on a jump host',
    files: {
      'site.yaml': site('').replace(
        '    agent: true\n',
        '    agent: true\n    jumpHosts:\n      - { host: gw.example.net, port: 0, agent: true }\n',
      ),
    },
    expect: [{ at: 'site.yaml:10:39', path: 'spec.ssh.jumpHosts[0].port', text: 'expected a number ≥ 1, got number `0`' }],
  },
  {
    name: 'CIDR without a prefix length',
    files: { 'site.yaml': site('  k3s:\n    clusterCidr: 10.42.0.0\n') },
    expect: [{ at: 'site.yaml:10:18', path: 'spec.k3s.clusterCidr', text: 'has no prefix length' }],
  },
  {
    name: 'CIDR with host bits set',
    files: { 'site.yaml': site('  k3s:\n    serviceCidr: 10.43.7.1/16\n') },
    expect: [{ at: 'site.yaml:10:18', path: 'spec.k3s.serviceCidr', text: 'has host bits set (did you mean `10.43.0.0/16`?)' }],
  },
  {
    name: 'CIDR prefix too long',
    files: { 'site.yaml': site('  k3s:\n    clusterCidr: 10.42.0.0/33\n') },
    expect: [{ at: 'site.yaml:10:18', path: 'spec.k3s.clusterCidr', text: 'is not a CIDR network' }],
  },
  {
    name: 'pod and service networks overlap',
    files: { 'site.yaml': site('  k3s:\n    serviceCidr: 10.42.128.0/17\n') },
    expect: [{ at: 'site.yaml:10:18', path: 'spec.k3s.serviceCidr', text: 'overlaps clusterCidr 10.42.0.0/16' }],
  },
  {
    name: 'a network as a TLS SAN',
    files: { 'site.yaml': site('  k3s:\n    tlsSans: [pop-a.example.net, 10.0.0.0/8]\n') },
    expect: [{ at: 'site.yaml:10:34', path: 'spec.k3s.tlsSans[1]', text: 'is a network, not an address' }],
  },
  {
    name: 'MD5 host key fingerprint',
    files: {
      'site.yaml': site().replace(
        '    agent: true\n',
        '    agent: true\n    hostKeys: ["MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"]\n',
      ),
    },
    expect: [
      {
        at: 'site.yaml:9:16',
        path: 'spec.ssh.hostKeys[0]',
        text: 'is an MD5 fingerprint; expected `SHA256:` followed by 43 base64 characters',
      },
    ],
  },
  {
    name: 'fingerprint with base64 padding',
    files: {
      'site.yaml': site().replace(
        '    agent: true\n',
        '    agent: true\n    hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA="]\n',
      ),
    },
    expect: [{ at: 'site.yaml:9:16', path: 'spec.ssh.hostKeys[0]', text: 'remove the trailing `=` padding' }],
  },
  {
    name: 'truncated fingerprint',
    files: {
      'site.yaml': site().replace(
        '    agent: true\n',
        '    agent: true\n    hostKeys:\n      - SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbd\n',
      ),
    },
    expect: [{ at: 'site.yaml:10:9', path: 'spec.ssh.hostKeys[0]', text: 'has 42 base64 characters, not 43' }],
  },
  {
    name: 'node label in a namespace the kubelet refuses',
    files: { 'site.yaml': site('  k3s:\n    nodeLabels:\n      node-role.kubernetes.io/edge: "true"\n') },
    expect: [
      {
        at: 'site.yaml:11:7',
        path: 'spec.k3s.nodeLabels["node-role.kubernetes.io/edge"]',
        text: 'in a namespace the kubelet refuses to set on itself',
      },
    ],
  },
  {
    name: 'label with invalid characters',
    files: { 'site.yaml': site().replace('{ name: pop-a }', '{ name: pop-a, labels: { "store id": "7" } }') },
    expect: [{ at: 'site.yaml:3:36', path: 'metadata.labels["store id"]', text: 'label key `store id`' }],
  },
  {
    name: 'hub API endpoint over http',
    files: { 'site.yaml': site('  hub: { ref: hub-eu, apiEndpoint: "http://10.99.0.11:6443" }\n') },
    expect: [{ at: 'site.yaml:9:36', path: 'spec.hub.apiEndpoint', text: 'must use https' }],
  },
  {
    name: 'gateway on a loopback address',
    files: { 'site.yaml': site('  hub:\n    ref: hub-eu\n    gateway: { host: 127.0.0.1 }\n') },
    expect: [{ at: 'site.yaml:11:22', path: 'spec.hub.gateway.host', text: 'is a loopback/unspecified address' }],
  },
  // --- secrets ---------------------------------------------------------------------------------------------
  {
    name: 'secret written inline',
    files: { 'site.yaml': site().replace('    agent: true\n', '    identityFile: ~/.ssh/id_ed25519\n    passphrase: hunter2\n') },
    expect: [{ at: 'site.yaml:9:17', path: 'spec.ssh.passphrase', text: 'secrets are never written inline: use `{env: NAME}`' }],
    bin: true,
  },
  {
    name: 'sudo password written inline',
    files: { 'site.yaml': site().replace('    agent: true\n', '    agent: true\n    sudo: { password: "s3cret" }\n') },
    expect: [{ at: 'site.yaml:9:23', path: 'spec.ssh.sudo.password', text: 'secrets are never written inline' }],
  },
  {
    name: 'hub kubeconfig written inline',
    files: {
      'hub.yaml':
        'apiVersion: edge.flomesh.io/v1alpha1\nkind: Hub\nmetadata: { name: hub-eu }\nspec:\n  kubeconfig: "apiVersion: v1\\nkind: Config"\n',
    },
    expect: [{ at: 'hub.yaml:5:15', path: 'spec.kubeconfig', text: 'secrets are never written inline' }],
  },
  {
    name: 'secret reference with both env and file',
    files: { 'site.yaml': site().replace('    agent: true\n', '    identityFile: id\n    passphrase: { env: A, file: b }\n') },
    expect: [{ at: 'site.yaml:9:17', path: 'spec.ssh.passphrase', text: 'give either `env` or `file`, not both' }],
  },
  {
    name: 'secret env name that is not a variable name',
    files: { 'site.yaml': site().replace('    agent: true\n', '    identityFile: id\n    passphrase: { env: POP-KEY }\n') },
    expect: [{ at: 'site.yaml:9:24', path: 'spec.ssh.passphrase.env', text: 'is not an environment variable name' }],
  },
  // --- SSH semantics ---------------------------------------------------------------------------------------
  {
    name: 'no way to log in',
    files: { 'site.yaml': siteSsh('    host: 10.99.0.11\n    user: pop\n') },
    expect: [{ at: 'site.yaml:6:5', path: 'spec.ssh', text: 'say how to log in: give `identityFile: PATH` or `agent: true`' }],
  },
  {
    name: 'passphrase without a key file',
    files: { 'site.yaml': site().replace('    agent: true\n', '    agent: true\n    passphrase: { env: KEY_PASS }\n') },
    expect: [{ at: 'site.yaml:9:17', path: 'spec.ssh.passphrase', text: 'a passphrase needs an `identityFile`' }],
  },
  {
    name: 'circular jump host: the POP is its own jump host',
    files: {
      'site.yaml': site().replace(
        '    agent: true\n',
        '    agent: true\n    jumpHosts:\n      - { host: gw.example.net, agent: true }\n      - { host: 10.99.0.11, agent: true }\n',
      ),
    },
    expect: [{ at: 'site.yaml:6:11', path: 'spec.ssh.host', text: 'circular jump hosts: jumpHosts[1] is the POP itself (10.99.0.11:22)' }],
    bin: true,
  },
  {
    name: 'circular jump host: a jump host visited twice',
    files: {
      'site.yaml': site().replace(
        '    agent: true\n',
        '    agent: true\n    jumpHosts:\n      - { host: gw.example.net, agent: true }\n      - { host: gw2.example.net, agent: true }\n      - { host: GW.example.net, agent: true }\n',
      ),
    },
    expect: [{ at: 'site.yaml:12:17', path: 'spec.ssh.jumpHosts[2].host', text: 'jumpHosts[2] (gw.example.net:22) repeats jumpHosts[0]' }],
  },
  {
    name: 'hub reference that names no Hub among the files',
    files: {
      'site.yaml': site('  hub: { ref: hub-ue }\n'),
      'hub.yaml':
        'apiVersion: edge.flomesh.io/v1alpha1\nkind: Hub\nmetadata: { name: hub-eu }\nspec: { kubeconfig: { env: HUB_KUBECONFIG } }\n',
    },
    args: ['site.yaml', 'hub.yaml'],
    expect: [
      {
        at: 'site.yaml:9:15',
        path: 'spec.hub.ref',
        text: 'no Hub named `hub-ue` among the files given (Hubs: hub-eu) (did you mean `hub-eu`?)',
      },
    ],
  },
  // --- several documents -----------------------------------------------------------------------------------
  {
    name: 'error in the second document of a file',
    files: {
      'both.yaml':
        'apiVersion: edge.flomesh.io/v1alpha1\nkind: Hub\nmetadata: { name: hub-eu }\nspec: { kubeconfig: { file: hub.kubeconfig } }\n---\n' +
        site().replace('10.99.0.11', 'bad..host'),
    },
    expect: [{ at: 'both.yaml:11:11', path: 'spec.ssh.host', text: '`bad..host` is not a valid host name' }],
  },
  // --- fleets ----------------------------------------------------------------------------------------------
  {
    name: 'fleet: duplicate site names',
    files: {
      'fleet.yaml':
        FLEET_HEAD +
        '  defaults: { ssh: { user: pop, agent: true } }\n  sites:\n    - metadata: { name: pop-a }\n      spec: { ssh: { host: 10.99.0.1 } }\n    - metadata: { name: pop-a }\n      spec: { ssh: { host: 10.99.0.2 } }\n',
    },
    expect: [{ at: 'fleet.yaml:9:25', path: 'spec.sites[1].metadata.name', text: 'duplicate site name `pop-a`; first defined at ' }],
    bin: true,
  },
  {
    name: 'fleet: duplicate names across a glob-matched file',
    files: {
      'fleet.yaml':
        FLEET_HEAD +
        '  defaults: { ssh: { agent: true } }\n  sites:\n    - metadata: { name: pop-a }\n      spec: { ssh: { host: 10.99.0.1 } }\n    - file: sites/*.yaml\n',
      'sites/a.yaml': 'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop-a }\nspec: { ssh: { host: 10.99.0.9 } }\n',
    },
    expect: [{ at: 'sites/a.yaml:3:19', path: 'metadata.name', text: 'duplicate site name `pop-a`' }],
  },
  {
    name: 'fleet: glob that matches nothing',
    files: { 'fleet.yaml': FLEET_HEAD + '  sites:\n    - file: sites/*.yaml\n' },
    expect: [{ at: 'fleet.yaml:6:13', path: 'spec.sites[0].file', text: '`sites/*.yaml` matches no files (looked in ' }],
    bin: true,
  },
  {
    name: 'fleet: glob matches a file that is not a Site',
    files: {
      'fleet.yaml': FLEET_HEAD + '  sites:\n    - file: "*.hub.yaml"\n',
      'eu.hub.yaml': 'apiVersion: edge.flomesh.io/v1alpha1\nkind: Hub\nmetadata: { name: hub-eu }\nspec: { kubeconfig: { env: HUB } }\n',
    },
    expect: [{ at: 'eu.hub.yaml:2:7', path: 'kind', text: 'expected a Site document (matched by `*.hub.yaml` in ' }],
  },
  {
    name: 'fleet: unknown key in defaults',
    files: {
      'fleet.yaml':
        FLEET_HEAD +
        '  defaults:\n    ssh: { usr: pop, agent: true }\n  sites:\n    - metadata: { name: pop-a }\n      spec: { ssh: { host: 10.99.0.1 } }\n',
    },
    expect: [{ at: 'fleet.yaml:6:12', path: 'spec.defaults.ssh.usr', text: 'unknown key `usr` (did you mean `user`?)' }],
  },
  {
    name: 'fleet: an inline site misses what the defaults do not give',
    files: {
      'fleet.yaml':
        FLEET_HEAD +
        '  defaults: { ssh: { user: pop } }\n  sites:\n    - metadata: { name: pop-a }\n      spec: { ssh: { host: 10.99.0.1, agent: true } }\n    - metadata: { name: pop-b }\n      spec:\n        arch: arm64\n',
    },
    expect: [{ at: 'fleet.yaml:10:7', path: 'spec.sites[1].spec.ssh.host', text: 'required field missing (expected a string)' }],
  },
  {
    name: 'fleet: a bad default is reported once, at the default',
    files: {
      'fleet.yaml':
        FLEET_HEAD +
        '  defaults: { mesh: { profile: tiny }, ssh: { agent: true } }\n  sites:\n    - metadata: { name: pop-a }\n      spec: { ssh: { host: 10.99.0.1 } }\n    - metadata: { name: pop-b }\n      spec: { ssh: { host: 10.99.0.2 } }\n',
    },
    expect: [
      {
        at: 'fleet.yaml:5:32',
        path: 'spec.defaults.mesh.profile',
        text: 'expected one of `edge-small`, `edge-medium`, `upstream`, got string `tiny`',
      },
    ],
  },
  {
    name: 'fleet: no sites',
    files: { 'fleet.yaml': FLEET_HEAD + '  sites: []\n' },
    expect: [{ at: 'fleet.yaml:5:10', path: 'spec.sites', text: 'a fleet needs at least one site' }],
  },
  {
    name: 'fleet: two sites with the same SSH endpoint',
    files: {
      'fleet.yaml':
        FLEET_HEAD +
        '  defaults: { ssh: { agent: true } }\n  sites:\n    - metadata: { name: pop-a }\n      spec: { ssh: { host: 10.99.0.1 } }\n    - metadata: { name: pop-b }\n      spec: { ssh: { host: 10.99.0.1, port: 22 } }\n',
    },
    expect: [
      {
        at: 'fleet.yaml:10:28',
        path: 'spec.sites[1].spec.ssh.host',
        text: 'site `pop-b` has the same SSH endpoint (10.99.0.1:22) as site `pop-a`',
      },
    ],
  },
  {
    name: 'Recipe: unknown key in a nested source (typo of installScript)',
    files: {
      'recipe.yaml':
        'apiVersion: edge.flomesh.io/v1alpha1\nkind: Recipe\nmetadata: { name: r }\nspec:\n  arches: { arm: { features: [] } }\n' +
        '  k3s:\n    version: v1.37.1+k3s1\n    installScrpt: { url: "https://example.invalid/install.sh" }\n' +
        '  fsm: { version: v1.5.1, pipyVersion: 1.5.12, chart: { url: "https://example.invalid/fsm.tgz" }, features: {} }\n',
    },
    expect: [
      { at: 'recipe.yaml:8:5', path: 'spec.k3s.installScrpt', text: /unknown key `installScrpt` \(did you mean `installScript`\?\)/ },
    ],
  },
];

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function materialise(c: Case): string {
  const dir = mkdtempSync(join(tmpdir(), 'fsm-edge-cfg-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(c.files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

function expectDiagnostics(stderr: string, prefix: string, expected: Expected[]): void {
  const lines = stderr.split('\n');
  for (const e of expected) {
    const head = `${prefix}${e.at}: ${e.path ? `${e.path}: ` : ''}`;
    const line = lines.find((l) => l.startsWith(head));
    expect(line, `no diagnostic starting with "${head}" in:\n${stderr}`).toBeDefined();
    const rest = line!.slice(head.length);
    if (typeof e.text === 'string') expect(rest).toContain(e.text);
    else expect(rest).toMatch(e.text);
  }
  expect(stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m); // no stack trace
}

describe('config validate rejects malformed input with a location', () => {
  it('has at least 30 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const dir = materialise(c);
    const args = (c.args ?? [Object.keys(c.files)[0]!]).map((f) => join(dir, f));
    const human = await runMain(['config', 'validate', ...args]);
    expect(human.code).toBe(2);
    expectDiagnostics(human.stderr, `${dir}/`, c.expect);
    expect(human.stdout).not.toContain('✓ ' + args[0]);

    const json = await runMain(['config', 'validate', '--json', ...args]);
    expect(json.code).toBe(2);
    const doc = JSON.parse(json.stdout) as {
      ok: boolean;
      diagnostics: Array<{ file: string; line: number; column: number; path: string; message: string }>;
    };
    expect(doc.ok).toBe(false);
    for (const e of c.expect) {
      const [file, line, column] = e.at.split(':');
      const found = doc.diagnostics.find(
        (d) => d.file === join(dir, file!) && d.line === Number(line) && d.column === Number(column) && d.path === e.path,
      );
      expect(found, `${e.at} ${e.path} in ${json.stdout}`).toBeDefined();
    }
  });

  // Spawning node is slow on a loaded 2-core machine; these are correctness checks, not timings.
  it.each(cases.filter((c) => c.bin).map((c) => [c.name, c] as const))('real binary: %s', { timeout: 120_000 }, (_name, c) => {
    const dir = materialise(c);
    const args = c.args ?? [Object.keys(c.files)[0]!];
    const r = runCli(['config', 'validate', ...args], { cwd: dir });
    expect(r.code).toBe(2);
    expectDiagnostics(r.stderr, '', c.expect);
    expect(r.stderr).toMatch(/^error: \d+ problems? in \d+ files?$/m);
  });
});
