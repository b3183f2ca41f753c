// Running commands and tracking the long-lived processes the lab starts. Every daemon gets a record
// (pid + kernel start time) under LAB_STATE/procs, so `labDown` can stop exactly what the lab started — also
// after a crash — and never a stranger that reused the pid.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { procsDir } from './paths.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class LabCommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly result: RunResult,
  ) {
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-8).join('\n');
    super(`lab: \`${argv.join(' ')}\` exited ${result.code}${tail ? `:\n${tail}` : ''}`);
  }
}

/** Runs a command; rejects with its stderr when it exits non-zero (unless `allowFail`). */
export function run(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; allowFail?: boolean; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 0, env: opts.env, cwd: opts.cwd, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        const result = { code, stdout, stderr: err && !stderr ? String(err.message) : stderr };
        if (code !== 0 && !opts.allowFail) reject(new LabCommandError([cmd, ...args], result));
        else resolve(result);
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** `sh -c SCRIPT` with positional args — for the few steps that are clearest as shell. */
export const sh = (script: string, args: string[] = [], opts: Parameters<typeof run>[2] = {}) =>
  run('/bin/sh', ['-c', script, 'sh', ...args], opts);

interface ProcRecord {
  pid: number;
  startTime: string;
  argv: string[];
}

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // field 22 (starttime), counted after the parenthesised comm which may contain spaces
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

const recordPath = (name: string) => path.join(procsDir(), `${name}.json`);

/**
 * Starts a detached daemon in its own process group (so its forked children die with it), output to `logFile`,
 * and records it under `name`. An existing record of that name is stopped first.
 */
export async function startDaemon(
  name: string,
  argv: string[],
  opts: { logFile: string; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<number> {
  await stopDaemon(name);
  fs.mkdirSync(procsDir(), { recursive: true });
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const log = fs.openSync(opts.logFile, 'a');
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', log, log], cwd: opts.cwd, env: opts.env });
  fs.closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`lab: could not start ${cmd} (${name}); is it installed?`);
  child.unref();
  const rec: ProcRecord = { pid, startTime: startTimeOf(pid) ?? '', argv };
  fs.writeFileSync(recordPath(name), JSON.stringify(rec));
  return pid;
}

/** Pid of a recorded daemon if it is still the same process. */
export function daemonPid(name: string): number | undefined {
  let rec: ProcRecord;
  try {
    rec = JSON.parse(fs.readFileSync(recordPath(name), 'utf8')) as ProcRecord;
  } catch {
    return undefined;
  }
  const st = startTimeOf(rec.pid);
  return st !== undefined && st === rec.startTime ? rec.pid : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // a zombie still answers kill(0); it is gone for our purposes
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Signals a recorded daemon's process group, waits for it to exit (SIGKILL after `graceMs`), drops the record. */
export async function stopDaemon(name: string, opts: { signal?: NodeJS.Signals; graceMs?: number } = {}): Promise<void> {
  const pid = daemonPid(name);
  if (pid !== undefined) {
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig);
      } catch {
        try {
          process.kill(pid, sig);
        } catch {
          /* already gone */
        }
      }
    };
    kill(opts.signal ?? 'SIGTERM');
    const deadline = Date.now() + (opts.graceMs ?? 3000);
    while (alive(pid) && Date.now() < deadline) await sleep(20);
    if (alive(pid)) kill('SIGKILL');
    while (alive(pid) && Date.now() < deadline + 2000) await sleep(20);
  }
  fs.rmSync(recordPath(name), { force: true });
}

/** Names of recorded daemons, optionally with a prefix. */
export function daemonNames(prefix = ''): string[] {
  try {
    return fs
      .readdirSync(procsDir())
      .filter((f) => f.endsWith('.json') && f.startsWith(prefix))
      .map((f) => f.slice(0, -5));
  } catch {
    return [];
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true; throws `what` with the last error after `timeoutMs`. */
export async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 15000, everyMs = 25) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await probe()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`lab: timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Direct children of a process (from /proc; empty when it is gone). */
export function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

export { alive as pidAlive };
