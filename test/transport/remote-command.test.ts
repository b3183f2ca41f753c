import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shq, sudoFailure, wrapCommand } from '../../src/transport/remote-command.js';

describe('wrapCommand', () => {
  it('quotes so the shell sees the exact string', () => {
    const nasty = `it's "quoted" $HOME \`x\` \\ ;|&`;
    expect(execFileSync('/bin/sh', ['-c', `printf %s ${shq(nasty)}`], { encoding: 'utf8' })).toBe(nasty);
  });
  it('puts sudo outside and the remote timeout inside, never a secret', () => {
    expect(wrapCommand('id -u', { sudo: { kind: 'nopasswd' } })).toBe(`sudo -n -- sh -c 'id -u'`);
    expect(wrapCommand('id -u', { sudo: { kind: 'password' }, timeoutMs: 1500 })).toBe(`sudo -S -k -p '' -- timeout -k 5 2 sh -c 'id -u'`);
    expect(wrapCommand('ls', { cwd: '/var/lib', sudo: { kind: 'none' } })).toBe(`cd '/var/lib' && ls`);
    expect(execFileSync('/bin/sh', ['-c', wrapCommand('pwd', { cwd: '/tmp', timeoutMs: 5000 })], { encoding: 'utf8' }).trim()).toBe('/tmp');
  });
});

describe('sudoFailure', () => {
  const nopw = { kind: 'nopasswd' } as const;
  it('explains a user without passwordless sudo, with the sudoers line to add', () => {
    const e = sudoFailure('pop3', 'pop', nopw, 1, 'sudo: a password is required\n');
    expect(e?.message).toContain('user pop may not run sudo on pop3 without a password');
    expect(e?.message).toContain('pop ALL=(ALL) NOPASSWD: ALL');
    expect(e?.message).toContain('/etc/sudoers.d/');
  });
  it('explains a user who is not in sudoers at all', () => {
    expect(sudoFailure('pop3', 'pop', nopw, 1, 'sudo: pop is not in the sudoers file.  This incident will be reported.')?.message).toMatch(
      /^user pop may not run sudo on pop3: add/,
    );
    expect(sudoFailure('pop3', 'pop', nopw, 1, 'Sorry, user pop may not run sudo on pop3.')?.message).toMatch(/may not run sudo/);
  });
  it('explains a wrong password and a missing sudo', () => {
    expect(sudoFailure('pop3', 'pop', { kind: 'password' }, 1, 'Sorry, try again.\nsudo: 1 incorrect password attempt')?.message).toMatch(
      /rejected the password/,
    );
    expect(sudoFailure('pop3', 'pop', nopw, 127, 'sh: 1: sudo: not found')?.message).toMatch(/sudo is not installed on pop3/);
  });
  it("leaves the command's own failures alone", () => {
    expect(sudoFailure('pop3', 'pop', nopw, 2, 'ls: cannot access x')).toBeUndefined();
    expect(sudoFailure('pop3', 'pop', { kind: 'none' }, 1, 'sudo: a password is required')).toBeUndefined();
  });
});
