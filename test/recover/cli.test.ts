// `fsm-edge recover` at the command line, before any POP is involved: what it requires, and that a backup it
// cannot open (wrong passphrase, tampered) or one of another site stops it with the reason — nothing is connected.

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeBackupArchive } from '../../src/backup/archive.js';
import { runCli } from '../cli/run-cli.js';
import { NODE_PASSWORD, tmp, TOKEN } from './fixture.js';

const site = path.join(tmp, 'cli-site.yaml');
writeFileSync(
  site,
  'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop1 }\nspec:\n  ssh: { host: 127.0.0.9, user: root, agent: true, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }\n',
);

describe('fsm-edge recover (command line)', { timeout: 120_000 }, () => {
  it('requires a trust key and a way to open the backup', () => {
    const noTrust = runCli(['recover', site, '--backup', 'x.age', '--bundle', tmp, '--passphrase-file', site]);
    expect(noTrust.code).toBe(2);
    expect(noTrust.stderr).toMatch(/no --trust-key given/);
    const noKey = runCli(['recover', site, '--backup', 'x.age', '--bundle', tmp, '--trust-key', site]);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/pass --identity FILE .* or --passphrase-file FILE/);
  });

  it('a wrong passphrase stops it before connecting, with the backup named', async () => {
    const file = path.join(tmp, 'cli.fsm-edge-backup.age');
    await writeBackupArchive(
      file,
      {
        format: 'fsm-edge-backup/v1',
        site: 'pop1',
        createdAt: '2026-11-29T10:00:00Z',
        source: 'controller',
        k3s: { version: 'v1.37.1+k3s1', datastore: 'sqlite', nodeName: 'pop1', arch: 'amd64' },
      },
      [
        { path: 'k3s/token', data: Buffer.from(`${TOKEN}\n`), mode: 0o600 },
        { path: 'k3s/node-password', data: Buffer.from(NODE_PASSWORD), mode: 0o600 },
      ],
      { recipients: [], passphrase: 'right one', scryptLogN: 10 },
    );
    const pass = path.join(tmp, 'wrong-pass.txt');
    writeFileSync(pass, 'wrong one\n');
    const r = runCli(['recover', site, '--backup', file, '--passphrase-file', pass, '--bundle', tmp, '--trust-key', site]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/backup .*cli\.fsm-edge-backup\.age: no identity\/passphrase opens it/);
    expect(r.stderr).not.toMatch(/connect/);
  });
});
