// Host for running on the POP itself (a technician with the bundle on a USB stick, no controller). Commands run
// through `sh -c` with the same sudo/timeout wrapping as SSH; blob sync uses the very same writer script, so a
// locally copied store has the same partial/verify/rename semantics as one filled over SSH.

import { spawn } from 'node:child_process';
import { userInfo } from 'node:os';
import {
  HostCommandError,
  type BlobWant,
  type ExecOptions,
  type ExecResult,
  type Host,
  type HostStats,
  type SyncOptions,
  type SyncReport,
  type Tunnel,
} from './host.js';
import { atomicWriteCommand, CommandTimeoutError, FILE_MISSING_EXIT, readFileCommand, sudoFailure, TIMEOUT_EXIT, wrapCommand, type SudoMode } from './remote-command.js';
import { syncBlobsOver, type ExecStream } from './blob-sync.js';

export interface LocalHostOptions {
  name?: string;
  /** `true` (default when not root): `sudo -n`; `{password}`: `sudo -S` with the password on stdin. */
  sudo?: boolean | { password: string };
}

export class LocalHost implements Host {
  readonly name: string;
  private readonly counters = { roundTrips: 0, bytesSent: 0, bytesReceived: 0 };
  private readonly user = userInfo().username;

  constructor(private readonly opts: LocalHostOptions = {}) {
    this.name = opts.name ? `${opts.name} (local)` : 'localhost (local)';
  }

  get usesSudo(): boolean {
    return process.getuid?.() !== 0 && this.opts.sudo !== false;
  }

  private sudoMode(sudo: boolean | undefined): SudoMode {
    if (!sudo || !this.usesSudo) return { kind: 'none' };
    return typeof this.opts.sudo === 'object' ? { kind: 'password' } : { kind: 'nopasswd' };
  }

  private spawnWrapped(command: string, mode: SudoMode, opts: { cwd?: string; timeoutMs?: number }) {
    const wrapped = wrapCommand(command, { ...opts, sudo: mode });
    this.counters.roundTrips++;
    const child = spawn('/bin/sh', ['-c', wrapped], { stdio: ['pipe', 'pipe', 'pipe'] });
    if (mode.kind === 'password') child.stdin.write((this.opts.sudo as { password: string }).password + '\n');
    return child;
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.execBuf(command, opts);
    return { code: r.code, stdout: r.out.toString('utf8'), stderr: r.stderr };
  }

  private async execBuf(command: string, opts: ExecOptions): Promise<{ code: number; out: Buffer; stderr: string }> {
    const mode = this.sudoMode(opts.sudo);
    const child = this.spawnWrapped(command, mode, {
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
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
    });
    const se = sudoFailure(this.name, this.user, mode, code, err);
    if (se) throw se;
    if (opts.timeoutMs !== undefined && code === TIMEOUT_EXIT) throw new CommandTimeoutError(this.name, command, opts.timeoutMs);
    return { code, out: Buffer.concat(out), stderr: err };
  }

  async run(command: string, opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) throw new HostCommandError(this.name, command, r.code, r.stderr);
    return r.stdout;
  }

  async readFile(path: string, opts: { sudo?: boolean } = {}): Promise<Buffer | undefined> {
    const r = await this.execBuf(readFileCommand(path), opts.sudo ? { sudo: true } : {});
    if (r.code === FILE_MISSING_EXIT) return undefined;
    if (r.code !== 0) throw new HostCommandError(this.name, `read ${path}`, r.code, r.stderr);
    return r.out;
  }

  async writeFile(path: string, data: string | Buffer, opts: { sudo?: boolean; mode?: number } = {}): Promise<void> {
    const r = await this.exec(atomicWriteCommand(path, opts.mode), { stdin: data, ...(opts.sudo ? { sudo: true } : {}) });
    if (r.code !== 0) throw new HostCommandError(this.name, `write ${path}`, r.code, r.stderr);
  }

  /** A writer process whose stdin is fed incrementally (the same protocol as over SSH). */
  readonly streamExec = async (command: string, o: { sudo?: boolean } = {}): Promise<ExecStream> => {
    const mode = this.sudoMode(o.sudo);
    const child = this.spawnWrapped(command, mode, {});
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
      write: (b: Buffer) => {
        counters.bytesSent += b.length;
        return child.stdin.write(b);
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
      abort: () => child.kill('SIGKILL'),
      result,
    };
  };

  syncBlobs(wants: BlobWant[], opts: SyncOptions): Promise<SyncReport> {
    return syncBlobsOver(
      {
        name: this.name,
        streamExec: this.streamExec,
        exec: (cmd, o) => this.exec(cmd, o),
        roundTrips: () => this.counters.roundTrips,
        sudo: opts.sudo ?? this.usesSudo,
        waitForLink: async () => {
          throw new Error(`${this.name}: a local blob writer died unexpectedly`);
        },
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
