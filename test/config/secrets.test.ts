// Secret files are read only when they are small regular files, and an install can say, per site, which
// secrets it reads and which host receives each (issue 11 #7: a site file could name any controller file
// as its sudo password).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsmEdgeError } from '../../src/config/errors.js';
import { loadHub, loadSite } from '../../src/config/load.js';
import { readSecretFile, resolveSecret, SECRET_FILE_MAX_BYTES } from '../../src/config/secret.js';
import { CONTROLLER_ONLY, formatSecretUse, secretsUsedBy } from '../../src/config/secrets-used.js';

const tmp = mkdtempSync(join(tmpdir(), 'fsm-edge-secrets-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string | Buffer): string {
  const p = join(tmp, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

function refusal(fn: () => unknown): FsmEdgeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FsmEdgeError);
    expect((e as FsmEdgeError).kind).toBe('config');
    return e as FsmEdgeError;
  }
  throw new Error('expected the secret file to be refused');
}

describe('secret files', () => {
  it('refuses a fifo without opening it (reading one would block the controller for ever)', () => {
    const fifo = join(tmp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(refusal(() => resolveSecret({ file: fifo })).message).toBe(`the secret file ${fifo} is a named pipe (fifo), not a regular file`);
    const link = join(tmp, 'to-fifo');
    symlinkSync(fifo, link);
    expect(refusal(() => resolveSecret({ file: link })).message).toBe(`the secret file ${link} is a named pipe (fifo), not a regular file`);
  });

  it('refuses a directory and a device', () => {
    mkdirSync(join(tmp, 'dir'));
    expect(refusal(() => resolveSecret({ file: 'dir' }, tmp)).message).toBe(
      `the secret file ${join(tmp, 'dir')} is a directory, not a regular file`,
    );
    expect(refusal(() => resolveSecret({ file: '/dev/zero' })).message).toBe('the secret file /dev/zero is a device, not a regular file');
  });

  it(`refuses a file over ${SECRET_FILE_MAX_BYTES} bytes, and reads one of exactly that size`, () => {
    const big = write('big', Buffer.alloc(SECRET_FILE_MAX_BYTES + 1, 'a'));
    const e = refusal(() => resolveSecret({ file: big }));
    expect(e.message).toBe(
      `the secret file ${big} is ${SECRET_FILE_MAX_BYTES + 1} bytes, more than the ${SECRET_FILE_MAX_BYTES} a secret may have`,
    );
    expect(e.code).toBe('secret');
    expect(readSecretFile(write('max', Buffer.alloc(SECRET_FILE_MAX_BYTES, 'b')))).toHaveLength(SECRET_FILE_MAX_BYTES);
  });

  it('follows a symlink to a regular file', () => {
    write('real', 'pw\n');
    symlinkSync(join(tmp, 'real'), join(tmp, 'link'));
    expect(resolveSecret({ file: 'link' }, tmp)).toBe('pw');
  });
});

const SITE = (sudo: string, extra = '') => `apiVersion: edge.flomesh.io/v1alpha1
kind: Site
metadata: { name: pop-1 }
spec:
  ssh:
    host: fd00::11
    port: 2222
    user: pop
    identityFile: keys/id_pop
    passphrase: { env: POP_KEY_PASSPHRASE }
    jumpHosts:
      - { host: gw.example.net, user: ops, identityFile: ~/.ssh/id_gw, passphrase: { file: gw.pass } }
    sudo: ${sudo}
${extra}`;

describe('secretsUsedBy', () => {
  it('lists every secret a site makes the controller read, and which host receives each', () => {
    const site = loadSite(write('site/site.yaml', SITE('{ password: { file: ~/.ssh/id_ed25519 } }', '  hub: { ref: hub-eu }\n')));
    const hub = loadHub(
      write(
        'site/hub.yaml',
        'apiVersion: edge.flomesh.io/v1alpha1\nkind: Hub\nmetadata: { name: hub-eu }\nspec: { kubeconfig: { file: hub.kubeconfig } }\n',
      ),
    );
    const dir = join(tmp, 'site');
    expect(secretsUsedBy(site, hub)).toEqual([
      {
        field: 'spec.ssh.jumpHosts[0].identityFile',
        ref: { file: join(homedir(), '.ssh/id_gw') },
        source: `file ${join(homedir(), '.ssh/id_gw')}`,
        sentTo: CONTROLLER_ONLY,
      },
      {
        field: 'spec.ssh.jumpHosts[0].passphrase',
        ref: { file: join(dir, 'gw.pass') },
        source: `file ${join(dir, 'gw.pass')}`,
        sentTo: CONTROLLER_ONLY,
      },
      {
        field: 'spec.ssh.identityFile',
        ref: { file: join(dir, 'keys/id_pop') },
        source: `file ${join(dir, 'keys/id_pop')}`,
        sentTo: CONTROLLER_ONLY,
      },
      { field: 'spec.ssh.passphrase', ref: { env: 'POP_KEY_PASSPHRASE' }, source: 'env POP_KEY_PASSPHRASE', sentTo: CONTROLLER_ONLY },
      // The attack of issue 11 #7: a site file names the controller's own SSH key as its sudo password. It
      // validates (the site's author chooses), but the plan shows the key going to the POP.
      {
        field: 'spec.ssh.sudo.password',
        ref: { file: join(homedir(), '.ssh/id_ed25519') },
        source: `file ${join(homedir(), '.ssh/id_ed25519')}`,
        sentTo: 'pop@[fd00::11]:2222 (through gw.example.net:22, encrypted end to end)',
      },
      {
        field: 'Hub hub-eu spec.kubeconfig',
        ref: { file: join(dir, 'hub.kubeconfig') },
        source: `file ${join(dir, 'hub.kubeconfig')}`,
        sentTo: 'the API server of Hub hub-eu (the server its kubeconfig names)',
      },
    ]);
    expect(formatSecretUse(secretsUsedBy(site)[4]!)).toBe(
      `spec.ssh.sudo.password: file ${join(homedir(), '.ssh/id_ed25519')} → pop@[fd00::11]:2222 (through gw.example.net:22, encrypted end to end)`,
    );
    expect(secretsUsedBy(site).map((u) => u.field)).not.toContain('Hub hub-eu spec.kubeconfig');
  });

  it('lists nothing sent anywhere for passwordless sudo, and no kubeconfig for a standalone site', () => {
    const site = loadSite(write('plain/site.yaml', SITE('true')));
    const hub = loadHub(
      write(
        'plain/hub.yaml',
        'apiVersion: edge.flomesh.io/v1alpha1\nkind: Hub\nmetadata: { name: hub-eu }\nspec: { kubeconfig: { env: HUB } }\n',
      ),
    );
    const uses = secretsUsedBy(site, hub);
    expect(uses.every((u) => u.sentTo === CONTROLLER_ONLY)).toBe(true);
    expect(uses.map((u) => u.field)).not.toContain('Hub hub-eu spec.kubeconfig');
  });
});
