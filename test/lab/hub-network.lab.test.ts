// The hub network from nothing: after `lab.ts down`, POPs and a hub started at the same time (as the install
// harness and `npm run demo` do) share one `lab-hub`; and `lab.ts down` after such a run (`demo --keep`)
// removes every process, listener and namespace it left — also the hub's forwarder on 127.0.0.3:6643.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startHub } from './hub.js';
import { labDown } from './lab.js';
import { LAB_STATE } from './paths.js';
import { popUp } from './pop.js';

const REPO = path.resolve(import.meta.dirname, '../..');

function labCli(...args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', ...args], { cwd: REPO, maxBuffer: 16 << 20 }, (err, _out, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

/** True when something accepts a TCP connection at host:port. */
function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(3000, () => (s.destroy(), resolve(false)));
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
}

const labNetns = () => (fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((n) => /^lab-(hub|pop\d+)$/.test(n)) : []);
const procRecords = () => (fs.existsSync(path.join(LAB_STATE, 'procs')) ? fs.readdirSync(path.join(LAB_STATE, 'procs')) : []);

describe('the hub network has one owner', () => {
  it('POPs and a hub brought up concurrently after `down` share lab-hub; `down` then leaves no listener, process or namespace', async () => {
    await labDown();
    expect(labNetns()).toEqual([]);
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fsm-edge-hubnet-'));
    try {
      // the harness's calls, at once: two POPs (each plugs into lab-hub) and a private hub in lab-hub
      const [pops, hub] = await Promise.all([
        Promise.all([popUp({ arch: 'amd64' }), popUp({ arch: 'amd64' })]),
        startHub({ port: 6643, forwardHost: '127.0.0.3', stateDir, fresh: true, resyncSeconds: 1 }),
      ]);
      expect(pops.map((p) => p.labAddress)).toHaveLength(2);
      expect(labNetns().sort()).toEqual(['lab-hub', ...pops.map((p) => p.netns)].sort());
      expect(hub.url).toBe('https://127.0.0.3:6643');
      expect(await listening('127.0.0.3', 6643)).toBe(true);

      // as after `demo --keep`: nothing is stopped by handle; the command line must find all of it
      const down = await labCli('down');
      expect(down.stderr).toMatch(/lab: down in/);
      expect(down.code).toBe(0);
      expect(await listening('127.0.0.3', 6643)).toBe(false);
      for (const p of pops) expect(await listening(p.sshHost, 22)).toBe(false);
      expect(labNetns()).toEqual([]);
      expect(procRecords()).toEqual([]);
    } finally {
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('concurrent creators from nothing all succeed, in one process and across processes', async () => {
    for (let round = 0; round < 3; round++) {
      await labDown();
      const script = "import('./test/lab/network.ts').then((m) => m.ensureHubNetwork()).then((c) => console.log(c))";
      const children = Array.from(
        { length: 3 },
        () =>
          new Promise<{ code: number; out: string }>((resolve) =>
            execFile(process.execPath, ['--import', 'tsx', '-e', script], { cwd: REPO }, (err, out, errOut) =>
              resolve({ code: err ? 1 : 0, out: `${out}${errOut}` }),
            ),
          ),
      );
      const { ensureHubNetwork } = await import('./network.js');
      const [results, local] = await Promise.all([Promise.all(children), Promise.all([ensureHubNetwork(), ensureHubNetwork()])]);
      for (const r of results) expect(r, r.out).toMatchObject({ code: 0 });
      // callers in one process share one creation; across processes exactly one creates it
      expect(local[0]).toBe(local[1]);
      const created = [...results.map((r) => r.out.trim() === 'true'), local[0]].filter(Boolean);
      expect(created).toHaveLength(1);
      expect(labNetns()).toEqual(['lab-hub']);
    }
    await labDown();
  });
});
