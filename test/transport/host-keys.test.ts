import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, afterAll } from 'vitest';
import { parse } from 'yaml';
import {
  addPinsToYaml,
  checkHostKey,
  fingerprintSha256,
  keyType,
  normalizeFingerprint,
  recordHostKeyPins,
} from '../../src/transport/host-keys.js';

const dir = mkdtempSync(join(tmpdir(), 'fsm-edge-hostkeys-'));
function keyPair(type: 'ed25519' | 'ecdsa', name: string): { blob: Buffer; fp: string } {
  const f = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', f]);
  const blob = Buffer.from(readFileSync(`${f}.pub`, 'utf8').split(' ')[1]!, 'base64');
  const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${f}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
  return { blob, fp };
}

describe('fingerprints', () => {
  it('match what ssh-keygen -l prints, for ed25519 and ecdsa keys', () => {
    for (const t of ['ed25519', 'ecdsa'] as const) {
      const k = keyPair(t, `fp-${t}`);
      expect(fingerprintSha256(k.blob)).toBe(k.fp);
    }
    expect(keyType(keyPair('ed25519', 'kt').blob)).toBe('ssh-ed25519');
  });
  it('normalises pasted pins and rejects non-SHA256 ones', () => {
    const fp = keyPair('ed25519', 'norm').fp;
    expect(normalizeFingerprint(`  ${fp}=  `)).toBe(fp);
    expect(normalizeFingerprint('MD5:aa:bb')).toBeUndefined();
  });
});

describe('checkHostKey', () => {
  const a = keyPair('ed25519', 'a');
  const b = keyPair('ed25519', 'b');
  const base = { label: 'pop-1 (pop@10.99.0.11:22)', hop: { kind: 'target' } as const };
  it('accepts a pinned key (any of several pins)', () => {
    const v = checkHostKey({ ...base, pins: [b.fp, a.fp], acceptNew: false }, a.blob);
    expect(v).toEqual({ ok: true, fingerprint: a.fp, newPin: false });
  });
  it('refuses a mismatch even with acceptNew, naming both fingerprints and how to re-pin', () => {
    const v = checkHostKey({ ...base, pins: [b.fp], acceptNew: true }, a.blob);
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.error.message).toContain(a.fp);
    expect(v.error.message).toContain(b.fp);
    expect(v.error.message).toContain('spec.ssh.hostKeys');
    expect(v.error.message).toMatch(/hardware swap/);
    expect(v.error.message).toMatch(/nothing was run/);
  });
  it('refuses an unpinned host unless acceptNew, then reports the new pin', () => {
    const refused = checkHostKey({ ...base, pins: [], acceptNew: false }, a.blob);
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.error.message).toMatch(/--accept-new-host-key/);
    expect(checkHostKey({ ...base, pins: [], acceptNew: true }, a.blob)).toEqual({ ok: true, fingerprint: a.fp, newPin: true });
  });
  it('names the jump host pin path for jump hops', () => {
    const v = checkHostKey({ label: 'jump host 2', hop: { kind: 'jump', index: 1 }, pins: [b.fp], acceptNew: false }, a.blob);
    expect(!v.ok && v.error.message).toContain('spec.ssh.jumpHosts[1].hostKeys');
  });
});

describe('recording pins into site.yaml', () => {
  const site = `# Berlin shop POP — keep this comment
apiVersion: edge.flomesh.io/v1alpha1
kind: Site
metadata: { name: pop-berlin-1 }
spec:
  ssh:
    host: 10.99.0.11 # behind the shop router
    user: pop
    jumpHosts:
      - host: bastion.example # first hop
        user: ops
`;
  it('adds target and jump pins, keeping comments and the rest of the text', () => {
    const out = addPinsToYaml(site, [
      { hop: { kind: 'target' }, label: 't', fingerprint: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
      { hop: { kind: 'jump', index: 0 }, label: 'j', fingerprint: 'SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB' },
    ]);
    expect(out).toContain('# Berlin shop POP — keep this comment');
    expect(out).toContain('# behind the shop router');
    expect(out).toContain('# first hop');
    expect(out).toMatch(/hostKeys: \[ "SHA256:A{43}" \]/);
    expect(out).toMatch(/- host: bastion.example # first hop\n\s+user: ops\n\s+hostKeys: \[ "SHA256:B{43}" \]/);
    // idempotent: the same pin is not added twice
    const again = addPinsToYaml(out, [
      { hop: { kind: 'target' }, label: 't', fingerprint: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
    ]);
    expect(again).toBe(out);
  });
  it('picks the named Site in a multi-document file and leaves the others byte-identical', async () => {
    const other = `---\nkind: Site\nmetadata: {name: other}   # odd spacing kept\nspec:\n  ssh: {host: x, user: pop}\n`;
    const f = join(dir, 'fleet.yaml');
    writeFileSync(f, site + other);
    await recordHostKeyPins(
      f,
      [{ hop: { kind: 'target' }, label: 't', fingerprint: 'SHA256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC' }],
      'pop-berlin-1',
    );
    const text = readFileSync(f, 'utf8');
    expect(text.endsWith(other)).toBe(true);
    expect(text).toContain('SHA256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC');
    expect(() => addPinsToYaml(site, [{ hop: { kind: 'jump', index: 3 }, label: 'j', fingerprint: 'SHA256:x' }])).toThrow(
      /jumpHosts\[3\] does not exist/,
    );
    expect(() => addPinsToYaml(site, [], 'nope')).toThrow(/no Site document named nope/);
  });
  it('pins a site written inline in a Fleet (its own spec; a shared bastion from the defaults goes in the defaults)', () => {
    const fleet = `apiVersion: edge.flomesh.io/v1alpha1
kind: Fleet
metadata: { name: eu }
spec:
  defaults:
    ssh: { user: pop, agent: true, jumpHosts: [{ host: bastion, user: ops }] }
  sites:
    - metadata: { name: pop-a }
      spec: { ssh: { host: 10.0.0.1 } }
    - metadata: { name: pop-b } # keep
      spec: { ssh: { host: 10.0.0.2 } }
    - file: sites/*.yaml
`;
    const out = addPinsToYaml(
      fleet,
      [
        { hop: { kind: 'target' }, label: 't', fingerprint: 'SHA256:DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD' },
        { hop: { kind: 'jump', index: 0 }, label: 'j', fingerprint: 'SHA256:EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE' },
      ],
      'pop-b',
    );
    const doc = parse(out) as {
      spec: { defaults: { ssh: { jumpHosts: Array<{ hostKeys?: string[] }> } }; sites: Array<{ spec?: { ssh: { hostKeys?: string[] } } }> };
    };
    expect(doc.spec.sites[1]!.spec!.ssh.hostKeys).toEqual(['SHA256:DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD']);
    expect(doc.spec.sites[0]!.spec!.ssh.hostKeys).toBeUndefined();
    expect(doc.spec.defaults.ssh.jumpHosts[0]!.hostKeys).toEqual(['SHA256:EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE']);
    expect(out).toContain('# keep');
    expect(() => addPinsToYaml(fleet, [], 'pop-z')).toThrow(/no Site document named pop-z/);
  });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));
