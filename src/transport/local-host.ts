// Host for running on the POP itself (a technician with the bundle on a USB stick, no controller). Commands run
// through `sh -c` with the same sudo/timeout wrapping as SSH; blob sync uses the very same writer script, so a
// locally copied store has the same partial/verify/rename semantics as one filled over SSH.

import { spawn } from 'node:child_process';
import { userInfo } from 'node:os';
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  HostCommandError,
  type BlobWant,
  type LockOwner,
  type PopLock,
  type ExecOptions,
  type ExecResult,
  type Host,
  type HostStats,
  type SyncOptions,
  type SyncReport,
  type Tunnel,
} from './host.js';
import {
  atomicWriteCommand,
  CommandTimeoutError,
  FILE_MISSING_EXIT,
  probeSudo,
  readFileCommand,
  sudoFailure,
  TIMEOUT_EXIT,
  wrapCommand,
  type SudoMode,
} from './remote-command.js';
import { syncBlobsOver } from './blob-sync.js';
import type { ExecStream } from './blob-stream.js';
import { PopLockKeeper } from './pop-lock.js';
import { popLockPaths } from './pop-paths.js';

export interface LocalHostOptions {
  name?: string;
  /**
   * `true` (default when not root): `sudo -n`; `{password}`: `sudo -n` when that works, else `sudo -S` with the
   * password on stdin (the same probe as SshHost).
   */
  sudo?: boolean | { password: string };
  /** Bound of every command that names none. Default DEFAULT_COMMAND_TIMEOUT_MS. */
  defaultTimeoutMs?: number;
  /** The POP-wide lock file (tests point it elsewhere). Default POP_LOCK_PATH. */
  lockPath?: string;
}

export class LocalHost implements Host {
  readonly name: string;
  private readonly counters = { roundTrips: 0, bytesSent: 0, bytesReceived: 0 };
  private readonly user = userInfo().username;
  private sudoProbe: Promise<SudoMode> | undefined;
  private readonly lockKeeper: PopLockKeeper;

  constructor(private readonly opts: LocalHostOptions = {}) {
    this.name = opts.name ? `${opts.name} (local)` : 'localhost (local)';
    this.lockKeeper = new PopLockKeeper(this.name, popLockPaths(opts.lockPath), (script) => this.openStream(script, { sudo: true }));
  }

  private get defaultTimeoutMs(): number {
    return this.opts.defaultTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  }

  get usesSudo(): boolean {
    return process.getuid?.() !== 0 && this.opts.sudo !== false;
  }

  private async sudoMode(sudo: boolean | undefined): Promise<SudoMode> {
    if (!sudo || !this.usesSudo) return { kind: 'none' };
    this.sudoProbe ??= probeSudo((cmd) => this.spawnProbe(cmd), typeof this.opts.sudo === 'object');
    return this.sudoProbe;
  }

  private spawnProbe(command: string): Promise<{ code: number }> {
    this.counters.roundTrips++;
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'ignore', 'ignore'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    return new Promise((resolve) => {
      child.on('error', () => resolve({ code: 127 }));
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c ?? 1 });
      });
    });
  }

  /** `group`: the command gets its own process group, so an abort stops its children too (a frozen `dd`). */
  private spawnWrapped(command: string, mode: SudoMode, opts: { cwd?: string; timeoutMs?: number; group?: boolean }) {
    const { group, ...wrap } = opts;
    const wrapped = wrapCommand(command, { ...wrap, sudo: mode });
    this.counters.roundTrips++;
    const child = spawn('/bin/sh', ['-c', wrapped], { stdio: ['pipe', 'pipe', 'pipe'], detached: group === true });
    if (mode.kind === 'password') child.stdin.write((this.opts.sudo as { password: string }).password + '\n');
    return child;
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.execBuf(command, opts);
    return { code: r.code, stdout: r.out.toString('utf8'), stderr: r.stderr };
  }

  private async execBuf(command: string, opts: ExecOptions): Promise<{ code: number; out: Buffer; stderr: string }> {
    await this.lockKeeper.check();
    const mode = await this.sudoMode(opts.sudo);
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const t0 = Date.now();
    const child = this.spawnWrapped(command, mode, { ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}), timeoutMs });
    // `timeout` inside the command normally ends it; this catches a child that ignores it
    const backstop = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 10_000);
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      this.counters.bytesReceived += d.length;
      opts.onStdout?.(d);
      out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      opts.onStderr?.(d);
      err += d.toString('utf8');
    });
    child.stdin.on('error', () => {});
    if (opts.stdin !== undefined) child.stdin.end(opts.stdin);
    else child.stdin.end();
    const code = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, sig) => resolve(c ?? (sig ? 128 + 9 : 1)));
    }).finally(() => clearTimeout(backstop));
    const se = sudoFailure(this.name, this.user, mode, code, err);
    if (se) throw se;
    // a command may exit 124 by itself; `timeout` (or the backstop's SIGKILL) only once the bound has passed
    if ((code === TIMEOUT_EXIT || code === 128 + 9) && Date.now() - t0 >= timeoutMs) {
      throw new CommandTimeoutError(this.name, command, timeoutMs);
    }
    return { code, out: Buffer.concat(out), stderr: err };
  }

  async run(command: string, opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) throw new HostCommandError(this.name, command, r.code, r.stderr);
    return r.stdout;
  }

  async readFile(path: string, opts: { sudo?: boolean; timeoutMs?: number } = {}): Promise<Buffer | undefined> {
    const r = await this.execBuf(readFileCommand(path), {
      ...(opts.sudo ? { sudo: true } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
    if (r.code === FILE_MISSING_EXIT) return undefined;
    if (r.code !== 0) throw new HostCommandError(this.name, `read ${path}`, r.code, r.stderr);
    return r.out;
  }

  async writeFile(path: string, data: string | Buffer, opts: { sudo?: boolean; mode?: number; timeoutMs?: number } = {}): Promise<void> {
    const r = await this.exec(atomicWriteCommand(path, opts.mode), {
      stdin: data,
      ...(opts.sudo ? { sudo: true } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
    if (r.code !== 0) throw new HostCommandError(this.name, `write ${path}`, r.code, r.stderr);
  }

  /** A writer process whose stdin is fed incrementally (the same protocol as over SSH). */
  readonly streamExec = async (command: string, o: { sudo?: boolean } = {}): Promise<ExecStream> => {
    await this.lockKeeper.check();
    return this.openStream(command, o);
  };

  async lock(owner: LockOwner, opts: { timeoutMs?: number } = {}): Promise<PopLock> {
    return this.lockKeeper.lock(owner, opts);
  }

  /** streamExec without the lock check (the lock's own process). */
  private async openStream(command: string, o: { sudo?: boolean }): Promise<ExecStream> {
    const mode = await this.sudoMode(o.sudo);
    const child = this.spawnWrapped(command, mode, { group: true });
    let err = '';
    let onOut: ((d: Buffer) => void) | undefined;
    child.stdout.on('data', (d: Buffer) => onOut?.(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    child.stdin.on('error', () => {});
    const result = new Promise<ExecResult>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c) => {
        const se = sudoFailure(this.name, this.user, mode, c ?? 1, err);
        if (se) reject(se);
        else resolve({ code: c ?? 137, stdout: '', stderr: err });
      });
    });
    result.catch(() => {});
    const counters = this.counters;
    return {
      write: (b: Buffer, done?: () => void) => {
        counters.bytesSent += b.length;
        return child.stdin.write(b, done);
      },
      waitDrain: () =>
        Promise.race([
          new Promise<void>((r) => child.stdin.once('drain', r)),
          result.then(
            () => {},
            () => {},
          ),
        ]),
      end: () => child.stdin.end(),
      onStdout: (fn) => {
        onOut = fn;
      },
      abort: () => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          child.kill('SIGKILL'); // a sudo'd group we may not signal: at least our own child
        }
      },
      result,
    };
  }

  async syncBlobs(wants: BlobWant[], opts: SyncOptions): Promise<SyncReport> {
    await this.lockKeeper.check();
    return syncBlobsOver(
      {
        name: this.name,
        streamExec: this.streamExec,
        exec: (cmd, o) => this.exec(cmd, o),
        roundTrips: () => this.counters.roundTrips,
        sudo: opts.sudo ?? this.usesSudo,
        // nothing to reconnect: a writer that died or stalled is simply started again (bounded by the sync's
        // no-progress limit)
        waitForLink: async () => {},
      },
      wants,
      opts,
    );
  }

  /** On the POP itself the port is reachable directly. */
  async tunnel(remotePort: number, remoteHost = '127.0.0.1'): Promise<Tunnel> {
    return { localHost: remoteHost, localPort: remotePort, close: async () => {} };
  }

  stats(): HostStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {}
}
