// Usage and configuration errors of install/register/status, before any connection is made.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRate } from '../../src/cli/site-runs.js';
import { renderStatusTable, type SiteStatus } from '../../src/cli/commands/status.js';
import { runMain } from '../cli/run-cli.js';

const site = (hubRef?: string) => `apiVersion: edge.flomesh.io/v1alpha1
kind: Site
metadata: { name: pop-a }
spec:
  ssh: { host: 10.99.0.250, user: pop, identityFile: /nonexistent/key, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }
${hubRef ? `  hub: { ref: ${hubRef} }\n` : ''}`;

function file(text: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fsm-edge-cli-'));
  const f = path.join(d, 'site.yaml');
  fs.writeFileSync(f, text);
  return f;
}

describe('install/register/status usage', () => {
  it('parses --max-rate in bytes per second', () => {
    expect(parseRate('512k')).toBe(512_000);
    expect(parseRate('2M')).toBe(2_000_000);
    expect(parseRate('1.5m')).toBe(1_500_000);
    expect(parseRate('100000')).toBe(100_000);
    expect(() => parseRate('fast')).toThrow(/--max-rate fast/);
  });

  it('install without --trust-key is a usage error (exit 2): a bundle is never installed unverified', async () => {
    const r = await runMain(['install', file(site()), '--bundle', '/nonexistent']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--trust-key/);
  });

  it('a Site naming a hub that no Hub document defines is a configuration error (exit 2)', async () => {
    const r = await runMain(['install', file(site('hub-eu')), '--bundle', '/nonexistent', '--trust-key', '/nonexistent.pub', '--json']);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc.error.message).toMatch(/hub "hub-eu", but no Hub document/);
    expect(doc.error.hint).toMatch(/--hub/);
  });

  it('install --dry-run lists which secrets each site makes it read and which host receives each, even when refused', async () => {
    const f = file(site().replace('hostKeys:', 'sudo: { password: { file: ~/.ssh/id_ed25519 } }, hostKeys:'));
    const r = await runMain(['install', f, '--bundle', '/nonexistent', '--trust-key', '/nonexistent.pub', '--dry-run', '--json']);
    const doc = JSON.parse(r.stdout);
    expect(doc.sites[0].secrets).toEqual([
      { field: 'spec.ssh.identityFile', source: 'file /nonexistent/key', sentTo: expect.stringMatching(/controller only/) },
      {
        field: 'spec.ssh.sudo.password',
        source: `file ${path.join(os.homedir(), '.ssh/id_ed25519')}`,
        sentTo: expect.stringContaining('pop@10.99.0.250:22'),
      },
    ]);
    const human = await runMain(['install', f, '--bundle', '/nonexistent', '--trust-key', '/nonexistent.pub', '--dry-run']);
    expect(human.stderr).toMatch(/secrets this install reads:\n\s+- spec.ssh.identityFile: file \/nonexistent\/key/);
    expect(human.stderr).toMatch(/- spec.ssh.sudo.password: file \S+id_ed25519 → pop@10.99.0.250:22/);
    // The bundle could not be verified: refused before any connection, with the reason.
    expect(human.code).toBe(1);
    expect(human.stderr).toMatch(/✗ verify/);
  });

  it('register refuses a standalone Site (no spec.hub)', async () => {
    const r = await runMain(['register', file(site())]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/names no hub/);
  });

  it('status of a site never installed from this controller says so, without connecting', async () => {
    const state = fs.mkdtempSync(path.join(os.tmpdir(), 'fsm-edge-state-'));
    const r = await runMain(['status', file(site()), '--json'], { env: { FSM_EDGE_STATE_DIR: state } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).sites[0]).toMatchObject({ name: 'pop-a', installed: false, registration: { state: 'unknown' } });
  });

  it('renders the status table with a column per fact', () => {
    const row: SiteStatus = {
      name: 'pop-a',
      arch: 'arm64',
      installed: true,
      versions: { k3s: 'v1.37.1+k3s1', fsm: 'v1.5.1', pipy: '1.5.12' },
      interception: 'NodeLevel',
      bundle: 'lab sha256:0123',
      registration: { state: 'pending', reason: 'hub down' },
      lastRun: { ok: true, operation: 'install', at: '2026-11-25T23:00:00.000Z' },
      host: 'pop@h:22',
    };
    const t = renderStatusTable([row]).split('\n');
    expect(t[0]).toMatch(/^SITE\s+ARCH\s+K3S\s+FSM\s+INTERCEPTION\s+REGISTRATION\s+LAST RUN$/);
    expect(t[1]).toMatch(/pop-a\s+arm64\s+v1\.37\.1\+k3s1\s+v1\.5\.1\s+NodeLevel\s+pending \(hub down\)\s+install ok 2026-11-25 23:00:00/);
  });
});
