// OpenSSH client helpers for lab tests: a known_hosts file pinned to the fingerprint the lab reports, and ssh
// argv for a POP. A pin is only made when the key the POP presents has exactly PopInfo.hostKeyFingerprint.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { PopInfo } from './types.js';
import { run, type RunResult } from './proc.js';

/** Writes a known_hosts for `pop` (its ed25519 key, checked against `hostKeyFingerprint`); returns its path. */
export async function pinnedKnownHosts(pop: PopInfo, dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-kh-'))): Promise<string> {
  const { stdout } = await run('ssh-keyscan', ['-T', '10', '-t', 'ed25519', '-p', String(pop.sshPort), pop.sshHost]);
  const line = stdout.split('\n').find((l) => l.includes('ssh-ed25519'));
  if (!line) throw new Error(`lab: ${pop.name} at ${pop.sshHost} presented no ed25519 host key`);
  const file = path.join(dir, `known_hosts.${pop.name}`);
  fs.writeFileSync(file, `${line}\n`);
  const fp = (await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', file])).stdout.split(' ')[1];
  if (fp !== pop.hostKeyFingerprint)
    throw new Error(`lab: ${pop.name} presented host key ${fp}, but the lab recorded ${pop.hostKeyFingerprint}`);
  return file;
}

export function sshArgv(pop: PopInfo, knownHosts: string, opts: { user?: string } = {}): string[] {
  return [
    '-i',
    pop.identityFile,
    '-p',
    String(pop.sshPort),
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ConnectTimeout=20',
    `${opts.user ?? pop.user}@${pop.sshHost}`,
  ];
}

/** `ssh POP CMD` with OpenSSH; resolves with the exit code and output (never rejects on a non-zero exit). */
export function ssh(
  pop: PopInfo,
  knownHosts: string,
  cmd: string,
  opts: { user?: string; input?: string | Buffer } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', [...sshArgv(pop, knownHosts, opts), cmd], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 255, stdout, stderr }));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}
