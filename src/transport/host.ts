// The one way every phase touches a POP. Two implementations: SSH (controller → POP) and Local (on the POP).
// Shaped for what comes later too: a fleet rollout holds many Hosts at once, and recovery reconnects a
// replacement machine under the same site name — so a Host is cheap to create, reconnects by itself, and
// reports the round trips and bytes it cost.

/** Bound of a remote command that names none. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 120_000;

export interface ExecOptions {
  /** Run through `sudo -n` (as root) when the login user is not root. */
  sudo?: boolean;
  /** Bytes written to the command's stdin. Secrets go here — never in argv or environment. */
  stdin?: string | Buffer;
  /**
   * Kill the remote command and reject with a CommandTimeoutError after this many ms. Every command has a bound:
   * the host's default (DEFAULT_COMMAND_TIMEOUT_MS unless the host was given another) applies when this is unset.
   */
  timeoutMs?: number;
  /** Streamed output, as it arrives. */
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** Working directory on the host. */
  cwd?: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface BlobWant {
  /** `sha256:<hex>` */
  digest: string;
  size: number;
  /** Where the bytes are on the controller (or, for Local, where to copy them from). */
  sourcePath: string;
}

export interface SyncProgress {
  digest: string;
  /** Bytes of this run that reached the host so far (all blobs). */
  sentBytes: number;
  /** Bytes this run has to send in all (missing + partial remainders). */
  totalBytes: number;
  bytesPerSecond: number;
  etaSeconds: number;
}

export interface SyncOptions {
  /** Content-addressed store on the host; blobs land at `<storeDir>/sha256/<hex>`. */
  storeDir: string;
  /** Bytes per second, across all streams. */
  maxRate?: number;
  /** Parallel streams. */
  streams?: number;
  /**
   * Most bytes one stream may have unacknowledged (what a dropped link can cost to re-send). Default: adaptive,
   * about half a second of the measured link rate (256 KiB … 16 MiB).
   */
  chunkBytes?: number;
  /** Write the store through sudo. Default: when the login user is not root. */
  sudo?: boolean;
  onProgress?: (p: SyncProgress) => void;
  signal?: AbortSignal;
  /**
   * Least silence (ms) from a stream's POP-side writer, while it owes an acknowledgement, before the stream is
   * treated as a lost link and resumed. The real limit grows with the chunk and the measured rate. Default 30 s.
   */
  stallTimeoutMs?: number;
}

export interface SyncReport {
  wanted: number;
  alreadyPresent: number;
  sentBlobs: number;
  /** Payload bytes sent this run. */
  sentBytes: number;
  /** Bytes sent again because a chunk was lost or a blob failed verification. */
  resentBytes: number;
  resumedBlobs: number;
  roundTrips: number;
  /** Largest unacknowledged window ("chunk") a stream used. */
  chunkBytes?: number;
  seconds: number;
}

export interface Tunnel {
  /** Local address (on the controller) that forwards to the host's port. */
  localHost: string;
  localPort: number;
  close(): Promise<void>;
}

export interface HostStats {
  /** Request/response exchanges with the host that the caller had to wait for. */
  roundTrips: number;
  bytesSent: number;
  bytesReceived: number;
  /** SSH connections opened (1 + reconnects); absent for Local. */
  connects?: number;
}

/** Who holds a POP's lock: shown to any other run that is refused. Written to the POP (0644): no secrets. */
export interface LockOwner {
  /** Controller host name. */
  controller: string;
  runId: string;
  /** What the run does: `install`, `register`, … */
  operation: string;
  /** ISO 8601. */
  startedAt: string;
  /** Controller process id. */
  pid?: number;
}

/** The POP-wide lock, held by a long-lived channel: released by `release()`, or when the run or its link dies. */
export interface PopLock {
  readonly owner: LockOwner;
  release(): Promise<void>;
}

/** Another run holds (or took over) the POP's lock. `holder` is what that run recorded, when readable. */
export class PopLockedError extends Error {
  constructor(
    readonly host: string,
    readonly holder: LockOwner | undefined,
    message?: string,
  ) {
    super(
      message ??
        `${host}: another run holds the POP's lock: ${describeOwner(holder)}. ` +
          `Wait for it to finish, or, if that controller is gone, the lock frees itself within a minute of its link dropping.`,
    );
    this.name = 'PopLockedError';
  }
}

export function describeOwner(o: LockOwner | undefined): string {
  if (!o) return 'holder unknown (no readable owner record)';
  const pid = o.pid !== undefined ? ` (pid ${o.pid})` : '';
  return `${o.operation} run ${o.runId} from controller ${o.controller}${pid}, started ${o.startedAt}`;
}

export interface Host {
  /** Human name for messages: `pop-berlin-1 (pop@10.99.0.11:22)`. */
  readonly name: string;
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  /** exec that rejects with a HostCommandError on a non-zero exit. */
  run(command: string, opts?: ExecOptions): Promise<string>;
  readFile(path: string, opts?: { sudo?: boolean; timeoutMs?: number }): Promise<Buffer | undefined>;
  /** Atomic write (temp file + rename) with mode; `sudo` for root-owned paths. */
  writeFile(path: string, data: string | Buffer, opts?: { sudo?: boolean; mode?: number; timeoutMs?: number }): Promise<void>;
  /**
   * Takes the POP-wide lock for a whole run, or rejects with PopLockedError naming the holder. `timeoutMs`: how
   * long to wait for a holder to let go (default 0: refuse at once). While it is held, a link drop re-takes it on
   * reconnect; if another run took it meanwhile, the next command rejects with PopLockedError.
   */
  lock(owner: LockOwner, opts?: { timeoutMs?: number }): Promise<PopLock>;
  syncBlobs(wants: BlobWant[], opts: SyncOptions): Promise<SyncReport>;
  tunnel(remotePort: number, remoteHost?: string): Promise<Tunnel>;
  stats(): HostStats;
  close(): Promise<void>;
}

/** A command that ran and failed: what, where, exit code, the last lines of stderr. */
export class HostCommandError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly code: number,
    readonly stderr: string,
  ) {
    const tail = stderr.trim().split('\n').slice(-5).join('\n');
    super(`${host}: \`${command.length > 120 ? command.slice(0, 117) + '...' : command}\` exited ${code}${tail ? `:\n${tail}` : ''}`);
    this.name = 'HostCommandError';
  }
}
