// `scripts/lab.ts` end to end: up prints PopInfo JSON and service URLs, status sees it, down removes every
// namespace, forwarder, daemon, cgroup and the binfmt entry — also what a crashed run left — and is safe twice.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PopInfo } from './types.js';
import { LAB_STATE } from './paths.js';
import { BINFMT_ENTRY } from './binfmt.js';
import { daemonPid } from './proc.js';

const REPO = path.resolve(import.meta.dirname, '../..');

function lab(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', ...args], { cwd: REPO, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const labNetns = () => (fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((n) => /^lab-(hub|pop\d+)$/.test(n)) : []);
const labCgroups = () =>
  ['systemd', 'unified'].flatMap((h) => fs.readdirSync(`/sys/fs/cgroup/${h}`).filter((d) => d.startsWith('lab-pop')));

describe('scripts/lab.ts', () => {
  it('up → status → down (also after a crash) → down again', async () => {
    const up = await lab('up', '--amd64', '1', '--arm64', '1', '--systemd');
    expect(up.stderr).toMatch(/lab: up in/);
    expect(up.code).toBe(0);
    const doc = JSON.parse(up.stdout) as { pops: PopInfo[]; registry: { url: string; labHost: string }; fileServer: { url: string } };
    expect(doc.pops.map((p) => [p.arch, p.systemd, p.user])).toEqual([
      ['amd64', true, 'pop'],
      ['arm64', true, 'pop'],
    ]);
    expect((await fetch(`${doc.registry.url}/v2/`)).status).toBe(200);
    expect(doc.registry.labHost).toMatch(/^10\.99\.0\.1:\d+$/);
    expect((await fetch(`${doc.fileServer.url}/missing`)).status).toBe(404);

    const status = JSON.parse((await lab('status')).stdout) as { pops: (PopInfo & { running: boolean })[]; binfmtArm64: boolean };
    expect(status.pops.filter((p) => doc.pops.some((d) => d.name === p.name)).map((p) => p.running)).toEqual([true, true]);
    expect(status.binfmtArm64).toBe(true);

    // a crash: the record of one POP is lost and its forwarder is gone, but its namespace and processes remain
    const victim = doc.pops[0]!;
    const forwarderPid = daemonPid(`fwd-${victim.name}`)!;
    process.kill(forwarderPid, 'SIGKILL');
    fs.rmSync(path.join(LAB_STATE, 'pops', victim.name), { recursive: true, force: true });

    const down = await lab('down');
    expect(down.stderr).toMatch(/lab: down in/);
    expect(down.code).toBe(0);
    expect(labNetns()).toEqual([]);
    expect(labCgroups()).toEqual([]);
    expect(fs.existsSync(`/proc/sys/fs/binfmt_misc/${BINFMT_ENTRY}`)).toBe(false);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(LAB_STATE);
    expect(fs.existsSync(path.join(LAB_STATE, 'procs')) ? fs.readdirSync(path.join(LAB_STATE, 'procs')) : []).toEqual([]);
    await expect(fetch(`${doc.registry.url}/v2/`)).rejects.toThrow();

    const again = await lab('down');
    expect(again.code).toBe(0);
  });

  it('rejects bad usage with exit code 2', async () => {
    const r = await lab('up', '--amd64', 'lots');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--amd64 wants a whole number/);
    expect((await lab('sideways')).code).toBe(2);
  });
});
