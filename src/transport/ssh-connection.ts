// One SSH connection to a POP, possibly through jump hosts (like OpenSSH ProxyJump): each hop is tunnelled
// through the previous one with `forwardOut` and handed to the next ssh2 Client as `sock`. Every hop checks
// its own pinned host key. ssh2 emits 'error' (e.g. "Keepalive timeout") and node crashes on an unhandled
// 'error' event — so every Client gets listeners here, and a lost link is reported to whoever waits on it.

import { formatHostPort } from '../config/formats.js';
import { readFile } from 'node:fs/promises';
import { connect as tcpConnect, type Socket } from 'node:net';
import { homedir } from 'node:os';
import ssh2, { type ConnectConfig } from 'ssh2';

const { Client, utils } = ssh2;
type Client = InstanceType<typeof Client>;
import type { Duplex } from 'node:stream';
import { checkHostKey, HostKeyError, type HopRef, type NewPin } from './host-keys.js';

export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
  /** Private key file; `~` is expanded. */
  identityFile?: string;
  /** Use the ssh-agent at `$SSH_AUTH_SOCK`. */
  agent?: boolean;
  /** Passphrase of `identityFile`, already resolved from its secret ref. */
  passphrase?: string;
  /** Pinned `SHA256:` fingerprints; any of them is accepted. */
  hostKeys: readonly string[];
}

export interface SshTarget extends SshEndpoint {
  /** Site name, for messages. */
  name: string;
  /** In order: the first is reached directly, the POP through the last. */
  jumpHosts?: readonly SshEndpoint[];
}

export interface SshConnectOptions {
  /** Accept (and report via `onNewHostKey`) keys of hops that have no pin yet. Pinned hops are always checked. */
  acceptNewHostKey?: boolean;
  /** Called when a hop's unpinned key was accepted: the caller records it (see `recordHostKeyPins`). */
  onNewHostKey?: (pin: NewPin) => void;
  /** Asked for a key passphrase when the key is encrypted and no passphrase secret was given (a TTY prompt). */
  askPassphrase?: (identityFile: string) => Promise<string>;
  /** SSH keepalive; a link is declared lost after interval × countMax without an answer. Default 5000 × 3. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Handshake timeout per hop. Default 20 s. */
  readyTimeoutMs?: number;
  /** Debug lines (never contain secrets: those only travel on stdin). */
  onLog?: (line: string) => void;
  /** Environment to read `SSH_AUTH_SOCK` from (tests). */
  env?: NodeJS.ProcessEnv;
}

/** The connection dropped (or could not be made) for a reason a retry may fix. */
export class ConnectionLostError extends Error {
  readonly retryable = true;
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'ConnectionLostError';
  }
}

/** A connection failure a retry will not fix: authentication, key files, host keys. */
export class ConnectError extends Error {
  readonly retryable = false;
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

export function endpointLabel(ep: Pick<SshEndpoint, 'user' | 'host' | 'port'>): string {
  return `${ep.user}@${formatHostPort(ep.host, ep.port)}`;
}

// ssh2's defaults already prefer ssh-ed25519 host keys (what the Site pins, as the lab and `ssh-keyscan`
// print) and AES-GCM (native OpenSSL), so no algorithm overrides.

type LostListener = (err: Error) => void;

/** A live chain of ssh2 Clients; `target` is the POP. */
export class SshLink {
  private lostErr: Error | undefined;
  private readonly listeners = new Set<LostListener>();

  /**
   * `tcp` is the first hop's socket. A link that is lost is reset, not closed: a closed socket still delivers the
   * bytes its kernel queued, so after an outage the dead session's window would cross the link again, ahead of
   * the resumed one — on a thin link, seconds of it.
   */
  constructor(
    readonly clients: Client[],
    readonly label: string,
    private readonly tcp?: Socket,
  ) {
    for (const [i, c] of clients.entries()) {
      const hop = i === clients.length - 1 ? label : `jump host ${i + 1} of ${label}`;
      c.on('error', (e: Error & { level?: string }) => this.lose(new ConnectionLostError(`${hop}: connection lost: ${e.message}`, e)));
      c.on('close', () => this.lose(new ConnectionLostError(`${hop}: connection closed`)));
      c.on('end', () => this.lose(new ConnectionLostError(`${hop}: connection ended by the server`)));
    }
  }

  get target(): Client {
    return this.clients[this.clients.length - 1]!;
  }

  get alive(): boolean {
    return this.lostErr === undefined;
  }

  get lostError(): Error | undefined {
    return this.lostErr;
  }

  /** Calls `fn` once when the link is lost (immediately if it already is). Returns an unsubscribe function. */
  onLost(fn: LostListener): () => void {
    if (this.lostErr) {
      const e = this.lostErr;
      queueMicrotask(() => fn(e));
      return () => {};
    }
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  lose(err: Error, graceful = false): void {
    if (this.lostErr) return;
    this.lostErr = err;
    if (!graceful && this.tcp && !this.tcp.destroyed) this.tcp.resetAndDestroy();
    for (const fn of [...this.listeners]) {
      try {
        fn(err);
      } catch {
        /* a listener's failure must not stop the others from being told */
      }
    }
    this.listeners.clear();
    for (const c of [...this.clients].reverse()) {
      try {
        c.end();
      } catch {
        /* already gone */
      }
      // end() waits for the peer; on a dead link that is forever — destroy the socket too.
      setTimeout(() => {
        try {
          c.destroy();
        } catch {
          /* already gone */
        }
      }, 1000).unref();
    }
  }

  close(): void {
    this.lose(new ConnectionLostError(`${this.label}: connection closed by us`), true);
  }
}

function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? homedir() + p.slice(1) : p;
}

/** Loads a key file, asking for or checking its passphrase; the passphrase is never logged. */
async function loadKey(
  ep: SshEndpoint,
  label: string,
  opts: SshConnectOptions,
  cache: Map<string, string>,
): Promise<{ key: Buffer; passphrase?: string }> {
  const file = expandHome(ep.identityFile!);
  let key: Buffer;
  try {
    key = await readFile(file);
  } catch (e) {
    throw new ConnectError(`${label}: cannot read identityFile ${file}: ${(e as Error).message}`, e);
  }
  let passphrase = ep.passphrase ?? cache.get(file);
  let parsed = utils.parseKey(key, passphrase);
  if (parsed instanceof Error && /passphrase/i.test(parsed.message) && passphrase === undefined) {
    if (!opts.askPassphrase) {
      throw new ConnectError(
        `${label}: key ${file} is encrypted and no passphrase was given: set spec.ssh.passphrase to {env: NAME} or {file: PATH}, or run at a terminal to be asked`,
      );
    }
    passphrase = await opts.askPassphrase(file);
    parsed = utils.parseKey(key, passphrase);
  }
  if (parsed instanceof Error) {
    const bad = /passphrase|decrypt|bad/i.test(parsed.message) && passphrase !== undefined;
    throw new ConnectError(bad ? `${label}: wrong passphrase for key ${file}` : `${label}: cannot use key ${file}: ${parsed.message}`);
  }
  if (passphrase !== undefined) cache.set(file, passphrase);
  return passphrase === undefined ? { key } : { key, passphrase };
}

const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTCONN',
]);

function classify(label: string, e: Error & { code?: string; level?: string }): Error {
  if (e instanceof HostKeyError || e instanceof ConnectError || e instanceof ConnectionLostError) return e;
  if (e.level === 'client-authentication') {
    return new ConnectError(
      `${label}: authentication failed (no key was accepted): add the public key to ~/.ssh/authorized_keys of the user on that host, or check spec.ssh.identityFile / agent`,
      e,
    );
  }
  if (
    e.level === 'client-timeout' ||
    /timed out|timeout/i.test(e.message) ||
    (e.code && RETRYABLE_CODES.has(e.code)) ||
    e.level === 'client-socket'
  ) {
    return new ConnectionLostError(`${label}: ${e.message}`, e);
  }
  // "Connection lost before handshake" is the network (e.g. a forwarder that cannot reach the POP): retryable
  if (/no matching|negotiat|unsupported algorithm/i.test(e.message)) {
    return new ConnectError(
      `${label}: SSH handshake failed: ${e.message} (old or minimal sshd? check its KexAlgorithms/HostKeyAlgorithms)`,
      e,
    );
  }
  return new ConnectionLostError(`${label}: ${e.message}`, e);
}

function forwardTo(via: Client, host: string, port: number, label: string): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    via.forwardOut('127.0.0.1', 0, host, port, (err, stream) => {
      if (err) reject(new ConnectionLostError(`${label}: jump host could not open a channel to ${host}:${port}: ${err.message}`, err));
      else resolve(stream);
    });
  });
}

function connectHop(
  ep: SshEndpoint,
  hop: HopRef,
  label: string,
  sock: Duplex | undefined,
  opts: SshConnectOptions,
  keyCache: Map<string, string>,
  newPins: NewPin[],
): Promise<{ client: Client; tcp: Socket | undefined }> {
  return (async () => {
    const auth: Partial<ConnectConfig> = {};
    if (ep.identityFile) {
      const k = await loadKey(ep, label, opts, keyCache);
      auth.privateKey = k.key;
      if (k.passphrase !== undefined) auth.passphrase = k.passphrase;
    }
    if (ep.agent) {
      const sockPath = (opts.env ?? process.env).SSH_AUTH_SOCK;
      if (!sockPath)
        throw new ConnectError(
          `${label}: agent: true but SSH_AUTH_SOCK is not set: start ssh-agent and ssh-add the key, or use identityFile`,
        );
      auth.agent = sockPath;
    }
    if (!ep.identityFile && !ep.agent) throw new ConnectError(`${label}: no credentials: set identityFile or agent: true`);

    return await new Promise<{ client: Client; tcp: Socket | undefined }>((resolve, reject) => {
      const c = new Client();
      // the first hop's socket is ours (ssh2 accepts one still connecting), so a lost link can be reset
      let tcp: Socket | undefined;
      let keyErr: HostKeyError | undefined;
      let settled = false;
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        try {
          c.destroy();
        } catch {
          /* not connected */
        }
        (sock ?? tcp)?.destroy();
        reject(keyErr ?? classify(label, e));
      };
      c.on('error', fail);
      c.on('close', () => fail(new ConnectionLostError(`${label}: connection closed during handshake`)));
      c.once('ready', () => {
        if (settled) return;
        settled = true;
        c.removeListener('error', fail);
        // the SshLink attaches the long-lived listeners; keep one here until it does (same tick)
        c.on('error', () => {});
        resolve({ client: c, tcp });
      });
      const cfg: ConnectConfig = {
        host: ep.host,
        port: ep.port,
        username: ep.user,
        readyTimeout: opts.readyTimeoutMs ?? 20_000,
        keepaliveInterval: opts.keepaliveIntervalMs ?? 5000,
        keepaliveCountMax: opts.keepaliveCountMax ?? 3,
        ...auth,
        hostVerifier: (key: Buffer) => {
          const v = checkHostKey({ label, hop, pins: ep.hostKeys, acceptNew: opts.acceptNewHostKey === true }, key);
          if (!v.ok) {
            keyErr = v.error;
            return false;
          }
          if (v.newPin && !newPins.some((p) => p.fingerprint === v.fingerprint && JSON.stringify(p.hop) === JSON.stringify(hop))) {
            newPins.push({ hop, label, fingerprint: v.fingerprint });
          }
          return true;
        },
      };
      try {
        // created here, in the tick that hands it to ssh2, which listens for its errors from then on
        tcp = sock ? undefined : tcpConnect({ host: ep.host, port: ep.port });
        cfg.sock = sock ?? tcp;
        c.connect(cfg);
      } catch (e) {
        fail(e as Error);
      }
    });
  })();
}

/**
 * Opens the chain jump1 → … → POP. Rejects with HostKeyError (mismatch / unpinned — nothing was run),
 * ConnectError (won't get better by retrying) or ConnectionLostError (network; retry).
 */
export async function openLink(
  target: SshTarget,
  opts: SshConnectOptions,
  keyCache: Map<string, string>,
  newPins: NewPin[],
): Promise<SshLink> {
  const hops: Array<{ ep: SshEndpoint; hop: HopRef; label: string }> = [
    ...(target.jumpHosts ?? []).map((ep, index) => ({
      ep,
      hop: { kind: 'jump', index } as HopRef,
      label: `jump host ${index + 1} (${endpointLabel(ep)}) for ${target.name}`,
    })),
    { ep: target, hop: { kind: 'target' }, label: `${target.name} (${endpointLabel(target)})` },
  ];
  const clients: Client[] = [];
  let tcp: Socket | undefined;
  try {
    for (const [i, h] of hops.entries()) {
      const sock = i === 0 ? undefined : await forwardTo(clients[i - 1]!, h.ep.host, h.ep.port, h.label);
      opts.onLog?.(`ssh: connecting ${h.label}${i ? ' through the previous hop' : ''}`);
      const hopConn = await connectHop(h.ep, h.hop, h.label, sock, opts, keyCache, newPins);
      clients.push(hopConn.client);
      if (i === 0) tcp = hopConn.tcp;
    }
  } catch (e) {
    for (const c of clients.reverse()) c.destroy();
    throw e;
  }
  const link = new SshLink(clients, hops[hops.length - 1]!.label, tcp);
  return link;
}
