// Value checks the config relies on, against real-world inputs (ssh-keygen output, k8s names, CIDRs).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkCidr,
  checkFingerprint,
  checkHost,
  checkK8sName,
  checkLabelKey,
  checkNodeLabelKey,
  checkSan,
  cidrsOverlap,
  closest,
  parseCidr,
} from '../../src/config/formats.js';

describe('checkFingerprint', () => {
  it('accepts what ssh-keygen -lf prints for ed25519, ecdsa and rsa keys', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fsm-edge-fp-'));
    try {
      for (const [type, bits] of [
        ['ed25519', []],
        ['ecdsa', ['-b', '256']],
        ['rsa', ['-b', '2048']],
      ] as const) {
        const key = join(dir, type);
        execFileSync('ssh-keygen', ['-q', '-t', type, ...bits, '-N', '', '-f', key]);
        const fp = execFileSync('ssh-keygen', ['-lf', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
        expect(fp).toMatch(/^SHA256:/);
        expect(checkFingerprint(fp), fp).toBeUndefined();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['SHA256:abc', 'has 3 base64 characters, not 43'],
    ['sha256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA', 'upper case'],
    ['SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdB', 'last character cannot end a SHA-256 digest'],
    ['SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihb-A', 'not base64'],
    ['16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48', 'MD5 fingerprint'],
    ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI', 'not an OpenSSH fingerprint'],
  ])('%s → %s', (value, message) => {
    expect(checkFingerprint(value)).toContain(message);
  });
});

describe('checkHost', () => {
  it.each(['10.99.0.11', 'fd00:99::1', '::1', 'pop-1.example.net', 'localhost', 'pop.example.net.', 'a', 'pop_1.corp'])(
    'accepts %s',
    (h) => {
      expect(checkHost(h)).toBeUndefined();
    },
  );
  it.each([
    ['10.99.0.256', 'not a valid IPv4'],
    ['[fd00::1]', 'without brackets'],
    ['pop@10.0.0.1', 'contains a user'],
    ['host:22', 'contains a port'],
    ['ssh://host', 'is a URL'],
    ['-pop.example', 'not a valid host name'],
    ['a'.repeat(64) + '.example', 'not a valid host name'],
    ['', 'must not be empty'],
  ])('refuses %s', (h, message) => {
    expect(checkHost(h)).toContain(message);
  });
});

describe('CIDRs', () => {
  it.each(['10.42.0.0/16', '0.0.0.0/0', '192.168.1.7/32', 'fd00:42::/56', '2001:db8::/32'])('accepts %s', (c) => {
    expect(checkCidr(c)).toBeUndefined();
  });
  it('suggests the network for host bits set, IPv4 and IPv6', () => {
    expect(checkCidr('10.42.3.4/16')).toContain('did you mean `10.42.0.0/16`?');
    expect(checkCidr('fd00:42::1/64')).toContain('did you mean `fd00:42::/64`?');
  });
  it('detects overlap', () => {
    const a = parseCidr('10.42.0.0/16')!;
    expect(cidrsOverlap(a, parseCidr('10.42.128.0/17')!)).toBe(true);
    expect(cidrsOverlap(a, parseCidr('10.43.0.0/16')!)).toBe(false);
    expect(cidrsOverlap(a, parseCidr('fd00::/8')!)).toBe(false);
  });
  it('a SAN is an address or a DNS name, wildcards allowed', () => {
    expect(checkSan('*.pops.example.net')).toBeUndefined();
    expect(checkSan('10.0.0.1')).toBeUndefined();
    expect(checkSan('10.0.0.0/8')).toContain('is a network');
  });
});

describe('names and labels', () => {
  it('k8s names', () => {
    expect(checkK8sName('pop-berlin-1')).toBeUndefined();
    expect(checkK8sName('POP Berlin 1')).toContain('did you mean `pop-berlin-1`?');
    expect(checkK8sName('a'.repeat(64))).toContain('at most 63');
  });
  it('label keys and node labels', () => {
    expect(checkLabelKey('edge.flomesh.io/site')).toBeUndefined();
    expect(checkLabelKey('Example.com/x')).toContain('lower-case DNS name');
    expect(checkNodeLabelKey('topology.kubernetes.io/zone')).toBeUndefined();
    expect(checkNodeLabelKey('node-role.kubernetes.io/worker')).toContain('kubelet refuses');
  });
  it('closest names for typos, nothing for unrelated words', () => {
    expect(closest('identityfile', ['host', 'identityFile', 'agent'])).toBe('identityFile');
    expect(closest('hostkeys', ['hostKeys', 'host'])).toBe('hostKeys');
    expect(closest('ebfp', ['auto', 'ebpf', 'iptables'])).toBe('ebpf');
    expect(closest('banana', ['auto', 'ebpf', 'iptables'])).toBeUndefined();
  });
});
