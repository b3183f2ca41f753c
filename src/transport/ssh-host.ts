// Host over SSH (ssh2). One connection per Host, re-opened with backoff when the link drops. Every operation is
// raced against the link's loss and its own timeout, so a drop ends it with a ConnectionLostError — never a
// crash (ssh2 'error' events are always handled) and never a hang.

import { createServer, type Server, type Socket } from 'node:net';
import type { ClientChannel } from 'ssh2';
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
import { HostKeyError, type NewPin } from './host-keys.js';
import { ConnectionLostError, endpointLabel, openLink, type SshConnectOptions, type SshLink, type SshTarget } from './ssh-connection.js';
import {
  atomicWriteCommand,
  CommandTimeoutError,
  FILE_MISSING_EXIT,
  probeSudo,
  readFileCommand,
  sudoFailure,
  SudoError,
  TIMEOUT_EXIT,
  wrapCommand,
  type SudoMode,
} from './remote-command.js';
import { syncBlobsOver } from './blob-sync.js';
import type { ExecStream, StreamExec } from './blob-stream.js';
import { PopLockKeeper } from './pop-lock.js';
import { ReconnectBackoff } from './reconnect-backoff.js';
import { popLockPaths } from './pop-paths.js';

export interface ReconnectPolicy {
  /** Give up after this long without a connection. Default 120 s. */
  giveUpAfterMs?: number;
  /** Least time between the starts of two attempts, doubling per failure up to maxDelayMs. Defaults 500 and 8000 ms. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

export interface SshHostOptions extends SshConnectOptions {
  /** `true`: passwordless `sudo -n`; `{password}`: `sudo -S` with the password on stdin; false: never sudo. */
  sudo?: boolean | { password: string };
  reconnect?: ReconnectPolicy;
  /** Bound of every command that names none (exec, run, readFile, writeFile). Default DEFAULT_COMMAND_TIMEOUT_MS. */
  defaultTimeoutMs?: number;
  /** The POP-wide lock file (tests point it elsewhere). Default POP_LOCK_PATH. */
  lockPath?: string;
}

interface RawResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

interface RawExecOptions extends ExecOptions {
  /** Collect stdout as bytes (readFile). */
  binary?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SshHost implements Host {
  readonly name: string;
  /** Pins accepted during this Host's connects (only with `acceptNewHostKey`); record them into the site file. */
  readonly newPins: NewPin[] = [];
  private link: SshLink | undefined;
  private connecting: Promise<SshLink> | undefined;
  private closed = false;
  private readonly keyCache = new Map<string, string>();
  private readonly counters = { roundTrips: 0, bytesSent: 0, bytesReceived: 0, connects: 0 };
  private sudoMode: SudoMode | undefined;
  private readonly lockKeeper: PopLockKeeper;

  private constructor(
    readonly target: SshTarget,
    private readonly opts: SshHostOptions,
  ) {
    this.name = `${target.name} (${endpointLabel(target)})`;
    this.lockKeeper = new PopLockKeeper(this.name, popLockPaths(opts.lockPath), (script) => this.openStream(script, { sudo: true }));
  }

  private get defaultTimeoutMs(): number {
    return this.opts.defaultTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  }

  /** Connects now, so host-key and auth problems surface here rather than in the first phase. */
  static async connect(target: SshTarget, opts: SshHostOptions = {}): Promise<SshHost> {
    const h = new SshHost(target, opts);
    await h.getLink(false);
    return h;
  }

  get user(): string {
    return this.target.user;
  }

  /** Whether store writes and `sudo: true` commands go through sudo (login user is not root). */
  get usesSudo(): boolean {
    return this.target.user !== 'root' && this.opts.sudo !== false;
  }

  private log(line: string): void {
    this.opts.onLog?.(line);
  }

  private async getLink(retry = true): Promise<SshLink> {
    if (this.closed) throw new ConnectionLostError(`${this.name}: host was closed`);
    if (this.link?.alive) return this.link;
    this.connecting ??= this.reconnect(retry).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async reconnect(retry: boolean): Promise<SshLink> {
    const p = this.opts.reconnect ?? {};
    const giveUp = Date.now() + (retry ? (p.giveUpAfterMs ?? 120_000) : 0);
    const backoff = new ReconnectBackoff(p.initialDelayMs ?? 500, p.maxDelayMs ?? 8000);
    for (let attempt = 1; ; attempt++) {
      const startedAt = Date.now();
      try {
        const newPins = this.newPins.length ? [...this.newPins] : [];
        const link = await openLink(this.target, this.opts, this.keyCache, newPins);
        for (const pin of newPins.slice(this.newPins.length)) {
          this.newPins.push(pin);
          this.opts.onNewHostKey?.(pin);
        }
        // A pin accepted on the first connect must hold on every reconnect (a key change mid-run is refused).
        this.pinAccepted(newPins);
        this.counters.connects++;
        if (this.closed) {
          link.close();
          throw new ConnectionLostError(`${this.name}: host was closed`);
        }
        this.link = link;
        this.sudoMode = undefined;
        if (attempt > 1) this.log(`ssh: ${this.name}: reconnected after ${attempt - 1} failed attempt(s)`);
        return link;
      } catch (e) {
        const err = e as Error & { retryable?: boolean };
        const wait = backoff.next(startedAt, Date.now());
        if (err instanceof HostKeyError || err.retryable !== true || Date.now() + wait > giveUp || this.closed) throw err;
        this.log(`ssh: ${this.name}: ${err.message}; retrying in ${wait} ms`);
        await sleep(wait);
      }
    }
  }

  private pinAccepted(pins: NewPin[]): void {
    for (const pin of pins) {
      const eps = pin.hop.kind === 'target' ? [this.target] : [this.target.jumpHosts![pin.hop.index]!];
      for (const ep of eps) {
        if (!ep.hostKeys.includes(pin.fingerprint)) (ep as { hostKeys: readonly string[] }).hostKeys = [...ep.hostKeys, pin.fingerprint];
      }
    }
  }

  /** How `sudo: true` is carried out on this connection; a password is only used when NOPASSWD does not hold. */
  private async resolveSudo(link: SshLink): Promise<SudoMode> {
    if (!this.usesSudo) return { kind: 'none' };
    if (this.sudoMode) return this.sudoMode;
    this.sudoMode = await probeSudo((cmd) => this.rawExec(link, cmd, { timeoutMs: 30_000 }), typeof this.opts.sudo === 'object');
    return this.sudoMode;
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.execRaw(command, opts);
    return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
  }

  async run(command: string, opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) throw new HostCommandError(this.name, command, r.code, r.stderr);
    return r.stdout;
  }

  private async execRaw(command: string, opts: RawExecOptions): Promise<RawResult> {
    const link = await this.getLink();
    await this.lockKeeper.check();
    const mode = opts.sudo ? await this.resolveSudo(link) : ({ kind: 'none' } as SudoMode);
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const wrapped = wrapCommand(command, { ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}), timeoutMs, sudo: mode });
    let stdin = opts.stdin === undefined ? undefined : Buffer.from(opts.stdin);
    if (mode.kind === 'password') {
      const pw = (this.opts.sudo as { password: string }).password;
      stdin = Buffer.concat([Buffer.from(pw + '\n'), stdin ?? Buffer.alloc(0)]);
    }
    this.log(`ssh: ${this.name}: ${mode.kind === 'none' ? '' : 'sudo '}${command.length > 200 ? command.slice(0, 197) + '...' : command}`);
    const t0 = Date.now();
    const r = await this.rawExec(link, wrapped, { ...opts, timeoutMs, ...(stdin ? { stdin } : {}) }, command);
    const sudoErr = sudoFailure(this.target.name, this.target.user, mode, r.code, r.stderr);
    if (sudoErr) throw sudoErr;
    // a command may exit 124 by itself; `timeout` only does so once the bound has passed
    if (r.code === TIMEOUT_EXIT && Date.now() - t0 >= timeoutMs) throw new CommandTimeoutError(this.name, command, timeoutMs);
    return r;
  }

  /** One exec channel: the raw command as given, raced against link loss and a local backstop timer. */
  private rawExec(link: SshLink, wrapped: string, opts: RawExecOptions, display = wrapped): Promise<RawResult> {
    this.counters.roundTrips++;
    return new Promise<RawResult>((resolve, reject) => {
      const out: Buffer[] = [];
      let err = '';
      let code: number | undefined;
      let signal: string | undefined;
      let settled = false;
      let channel: ClientChannel | undefined;
      let timer: NodeJS.Timeout | undefined;
      const finish = (e: Error | undefined, r?: RawResult) => {
        if (settled) return;
        settled = true;
        offLost();
        if (timer) clearTimeout(timer);
        if (e) {
          try {
            channel?.close();
          } catch {
            /* link gone */
          }
          reject(e);
        } else resolve(r!);
      };
      const offLost = link.onLost((e) =>
        finish(new ConnectionLostError(`${this.name}: connection lost while running \`${short(display)}\`: ${e.message}`, e)),
      );
      if (opts.timeoutMs !== undefined) {
        // the POP-side `timeout` normally ends it; this catches a stuck channel
        timer = setTimeout(() => {
          try {
            channel?.signal('KILL');
          } catch {
            /* unsupported */
          }
          finish(new CommandTimeoutError(this.name, display, opts.timeoutMs!));
        }, opts.timeoutMs + 10_000);
      }
      try {
        link.target.exec(wrapped, (e, ch) => {
          if (e) return finish(new ConnectionLostError(`${this.name}: could not start \`${short(display)}\`: ${e.message}`, e));
          channel = ch;
          if (settled) return ch.close();
          ch.on('data', (d: Buffer) => {
            this.counters.bytesReceived += d.length;
            if (opts.onStdout) opts.onStdout(d);
            out.push(d);
          });
          ch.stderr.on('data', (d: Buffer) => {
            this.counters.bytesReceived += d.length;
            if (opts.onStderr) opts.onStderr(d);
            err += d.toString('utf8');
            if (err.length > 1_000_000) err = err.slice(-500_000);
          });
          ch.on('exit', (c: number | null, sig?: string) => {
            if (c !== null && c !== undefined) code = c;
            else signal = sig ?? 'unknown';
          });
          ch.on('error', (x: Error) =>
            finish(new ConnectionLostError(`${this.name}: channel error in \`${short(display)}\`: ${x.message}`, x)),
          );
          ch.on('close', () => {
            if (code === undefined && signal === undefined) {
              finish(new ConnectionLostError(`${this.name}: \`${short(display)}\` ended without an exit status (connection dropped?)`));
            } else {
              finish(undefined, {
                code: code ?? 128 + 9,
                stdout: Buffer.concat(out),
                stderr: signal ? `${err}\nkilled by signal ${signal}` : err,
              });
            }
          });
          if (opts.stdin !== undefined) {
            const b = Buffer.from(opts.stdin);
            this.counters.bytesSent += b.length;
            ch.end(b);
          } else ch.end();
        });
      } catch (e) {
        finish(new ConnectionLostError(`${this.name}: could not start \`${short(display)}\`: ${(e as Error).message}`, e));
      }
    });
  }

  /** A long-lived exec whose stdin the caller writes as it goes (blob streams). One round trip. */
  readonly streamExec: StreamExec = async (command: string, o: { sudo?: boolean } = {}): Promise<ExecStream> => {
    await this.getLink();
    await this.lockKeeper.check();
    return this.openStream(command, o);
  };

  /** streamExec without the lock check (the lock's own channel). */
  private async openStream(command: string, o: { sudo?: boolean }): Promise<ExecStream> {
    const link = await this.getLink();
    const mode = o.sudo ? await this.resolveSudo(link) : ({ kind: 'none' } as SudoMode);
    const wrapped = wrapCommand(command, { sudo: mode });
    this.counters.roundTrips++;
    const openMs = this.defaultTimeoutMs;
    const ch = await new Promise<ClientChannel>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const off = link.onLost((e) => {
        clearTimeout(timer);
        reject(new ConnectionLostError(`${this.name}: connection lost: ${e.message}`, e));
      });
      // a channel that never opens on a link that still answers keepalives: treat it as lost
      timer = setTimeout(() => {
        off();
        reject(new ConnectionLostError(`${this.name}: the POP did not open a channel within ${openMs} ms`));
      }, openMs);
      link.target.exec(wrapped, (e, c) => {
        off();
        clearTimeout(timer);
        if (e) reject(new ConnectionLostError(`${this.name}: could not open a stream: ${e.message}`, e));
        else resolve(c);
      });
    });
    if (mode.kind === 'password') ch.write((this.opts.sudo as { password: string }).password + '\n');
    const counters = this.counters;
    const name = this.name;
    let onOut: ((d: Buffer) => void) | undefined;
    let err = '';
    const result = new Promise<ExecResult>((resolve, reject) => {
      let code: number | undefined;
      let settled = false;
      const finish = (e?: Error) => {
        if (settled) return;
        settled = true;
        off();
        if (e) {
          try {
            ch.close();
          } catch {
            /* gone */
          }
          return reject(e);
        }
        const se = sudoFailure(this.target.name, this.target.user, mode, code ?? 1, err);
        if (se) return reject(se);
        resolve({ code: code ?? 137, stdout: '', stderr: err });
      };
      const off = link.onLost((e) => finish(new ConnectionLostError(`${name}: connection lost during a blob stream: ${e.message}`, e)));
      ch.on('data', (d: Buffer) => {
        counters.bytesReceived += d.length;
        onOut?.(d);
      });
      ch.stderr.on('data', (d: Buffer) => {
        err += d.toString('utf8');
      });
      ch.on('exit', (c: number | null) => {
        code = c ?? 137;
      });
      ch.on('error', (x: Error) => finish(new ConnectionLostError(`${name}: blob stream error: ${x.message}`, x)));
      ch.on('close', () =>
        code === undefined
          ? finish(new ConnectionLostError(`${name}: blob stream ended without an exit status (connection dropped?)`))
          : finish(),
      );
    });
    result.catch(() => {});
    return {
      write(chunk: Buffer, done?: () => void): boolean {
        counters.bytesSent += chunk.length;
        return ch.write(chunk, done);
      },
      waitDrain(): Promise<void> {
        return new Promise((r) => {
          ch.once('drain', r);
          result.then(
            () => r(),
            () => r(),
          );
        });
      },
      end(): void {
        ch.end();
      },
      onStdout(fn) {
        onOut = fn;
      },
      abort(): void {
        try {
          ch.close();
        } catch {
          /* gone */
        }
      },
      result,
    };
  }

  async lock(owner: LockOwner, opts: { timeoutMs?: number } = {}): Promise<PopLock> {
    await this.getLink();
    return this.lockKeeper.lock(owner, opts);
  }

  async readFile(path: string, opts: { sudo?: boolean; timeoutMs?: number } = {}): Promise<Buffer | undefined> {
    const cmd = readFileCommand(path);
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.execRaw(cmd, {
          binary: true,
          ...(opts.sudo ? { sudo: true } : {}),
          ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
        });
        if (r.code === FILE_MISSING_EXIT) return undefined;
        if (r.code !== 0) throw new HostCommandError(this.name, `read ${path}`, r.code, r.stderr);
        return r.stdout;
      } catch (e) {
        // reading is idempotent: one retry after a drop
        if (e instanceof ConnectionLostError && attempt === 0) continue;
        throw e;
      }
    }
  }

  async writeFile(path: string, data: string | Buffer, opts: { sudo?: boolean; mode?: number; timeoutMs?: number } = {}): Promise<void> {
    const r = await this.execRaw(atomicWriteCommand(path, opts.mode), {
      stdin: data,
      ...(opts.sudo ? { sudo: true } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
    if (r.code !== 0) throw new HostCommandError(this.name, `write ${path}`, r.code, r.stderr);
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
        waitForLink: async () => {
          await this.getLink();
        },
      },
      wants,
      opts,
    );
  }

  async tunnel(remotePort: number, remoteHost = '127.0.0.1'): Promise<Tunnel> {
    await this.getLink();
    const sockets = new Set<Socket>();
    const server: Server = createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => sock.destroy());
      sock.pause();
      this.getLink()
        .then((link) => {
          link.target.forwardOut('127.0.0.1', sock.remotePort ?? 0, remoteHost, remotePort, (err, stream) => {
            if (err) {
              this.log(`ssh: ${this.name}: tunnel to ${remoteHost}:${remotePort} refused: ${err.message}`);
              sock.destroy();
              return;
            }
            const off = link.onLost(() => {
              stream.destroy();
              sock.destroy();
            });
            stream.on('error', () => sock.destroy());
            stream.on('close', () => {
              off();
              sock.destroy();
            });
            sock.on('close', () => stream.destroy());
            sock.pipe(stream).pipe(sock);
            sock.resume();
          });
        })
        .catch((e: Error) => {
          this.log(`ssh: ${this.name}: tunnel connection failed: ${e.message}`);
          sock.destroy();
        });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    server.on('error', (e) => this.log(`ssh: ${this.name}: tunnel listener error: ${e.message}`));
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    return {
      localHost: '127.0.0.1',
      localPort: port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }

  stats(): HostStats {
    return { ...this.counters };
  }

  /** Drops the current connection as a link failure would (tests, and `--reconnect` diagnostics). */
  dropConnection(): void {
    this.link?.lose(new ConnectionLostError(`${this.name}: connection dropped on request`));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.link?.close();
    this.link = undefined;
  }
}

function short(s: string): string {
  const one = s.replace(/\s+/g, ' ');
  return one.length > 100 ? one.slice(0, 97) + '...' : one;
}

export { SudoError, CommandTimeoutError };
