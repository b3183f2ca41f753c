// The POP-wide lock: `flock` on the lock file, held by one long-lived shell on the POP for the whole run.
//
// The holder shell reads the owner record (one JSON line) on stdin, takes the lock, writes the owner file, says
// `locked`, then waits on heartbeats: one byte every HEARTBEAT_MS. Stdin's end (release, the channel closing, the
// controller process dying) or LEASE_S without a heartbeat (a link that died silently, so sshd never noticed)
// ends the shell and the kernel drops the lock. Nothing else ever kills a holder — except the same run re-taking
// its own lock after a link drop (its earlier holder may still be waiting on the dead connection), which it
// proves with the nonce only it knows.
//
// Reconnects: SshHost re-takes the lock after a reconnect with the same owner, before the next command runs. If
// another run took it in between, that command (and every later one) rejects with PopLockedError: the run must
// stop, because what it did before the drop may since have been changed under it.

import { randomBytes } from 'node:crypto';
import { PopLockedError, type LockOwner, type PopLock } from './host.js';
import type { ExecStream } from './blob-stream.js';
import { PopExit, popExitLabel } from './pop-exit.js';
import type { PopLockPaths } from './pop-paths.js';
import { CommandTimeoutError, shq } from './remote-command.js';

export const LOCK_HEARTBEAT_MS = 10_000;
/** The holder gives up after this long without a heartbeat (several missed beats, more than SSH keepalive's verdict). */
export const LOCK_LEASE_S = 45;
/** How long taking the lock may take beyond any wait for a holder (sudo, a slow POP). */
const ACQUIRE_SLACK_MS = 30_000;
const NONCE = /^[0-9a-f]{32}$/;

/**
 * The holder script. `waitS`: seconds to wait for another holder (0: refuse at once). `reclaim`: the nonce of this
 * run's previous holder — if that one still holds the lock (a dropped link it has not noticed), stop it.
 */
export function lockScript(paths: PopLockPaths, nonce: string, waitS: number, reclaim?: string): string {
  if (!NONCE.test(nonce) || (reclaim !== undefined && !NONCE.test(reclaim))) throw new Error('lock nonce must be 32 lowercase hex');
  const L = shq(paths.lock);
  const O = shq(paths.owner);
  const K = shq(paths.holder);
  const wait = Math.max(0, Math.ceil(waitS));
  const take = wait > 0 ? `flock -w ${wait} 9` : 'flock -n 9';
  return [
    `umask 022`,
    `command -v flock >/dev/null 2>&1 ||`,
    `  { echo "flock(1) is not installed on the POP: install util-linux" >&2; exit ${PopExit.lockUnavailable}; }`,
    `mkdir -p "$(dirname -- ${L})" && exec 9>>${L} || exit ${PopExit.lockUnavailable}`,
    `IFS= read -r owner || exit ${PopExit.lockUnavailable}`,
    `if ! flock -n 9; then`,
    ...(reclaim
      ? [
          `  p=; n=; read p n < ${K} 2>/dev/null`,
          // still held by this run's earlier holder (waiting on a dead connection): stop it; anyone else's: refuse
          `  if [ "$n" = ${reclaim} ]; then`,
          `    case "$p" in ''|*[!0-9]*) ;; *) pkill -KILL -P "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null;; esac; w=10`,
          `  else w=${wait}; fi`,
          `  if [ "$w" -gt 0 ]; then flock -w "$w" 9; else flock -n 9; fi || { head -c 4096 ${O} 2>/dev/null; exit ${PopExit.popLocked}; }`,
        ]
      : [`  ${take} || { head -c 4096 ${O} 2>/dev/null; exit ${PopExit.popLocked}; }`]),
    `fi`,
    `printf '%s\\n' "$owner" > ${O}.new && chmod 644 ${O}.new && mv -f ${O}.new ${O} || exit ${PopExit.lockUnavailable}`,
    `(umask 077; echo "$$ ${nonce}" > ${K}.new) && mv -f ${K}.new ${K} || exit ${PopExit.lockUnavailable}`,
    `echo locked`,
    // heartbeats: each read is its own process without fd 9, so only this shell ever holds the lock
    `B=${K}.beat.$$`,
    `while :; do rm -f "$B"; timeout ${LOCK_LEASE_S} dd bs=1 count=1 of="$B" status=none 9>&- 2>/dev/null; [ -s "$B" ] || break; done`,
    `rm -f "$B" ${O} ${K}`,
  ].join('\n');
}

/** Reads an owner record another run wrote: only the known fields, only printable text. */
export function parseOwner(text: string): LockOwner | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text.trim().split('\n')[0] ?? '');
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  const str = (x: unknown) => (typeof x === 'string' ? x.replace(/[^\x20-\x7e]/g, '?').slice(0, 200) : undefined);
  const controller = str(o.controller);
  const runId = str(o.runId);
  const operation = str(o.operation);
  const startedAt = str(o.startedAt);
  if (controller === undefined || runId === undefined || operation === undefined || startedAt === undefined) return undefined;
  const owner: LockOwner = { controller, runId, operation, startedAt };
  if (typeof o.pid === 'number' && Number.isInteger(o.pid)) owner.pid = o.pid;
  return owner;
}

export function ownerRecord(owner: LockOwner): string {
  const rec: LockOwner = { controller: owner.controller, runId: owner.runId, operation: owner.operation, startedAt: owner.startedAt };
  if (owner.pid !== undefined) rec.pid = owner.pid;
  return JSON.stringify(rec);
}

interface Holding {
  owner: LockOwner;
  nonce: string;
  stream: ExecStream | undefined;
  heartbeat: NodeJS.Timeout | undefined;
  releasing: boolean;
}

/** Opens a POP-side shell running `script` (as root), stdin and stdout attached. */
export type OpenLockChannel = (script: string) => Promise<ExecStream>;

/**
 * Keeps a Host's POP lock: takes it, heartbeats it, re-takes it after its channel died (a reconnect), and fails
 * every later command with PopLockedError once another run has it.
 */
export class PopLockKeeper {
  private held: Holding | undefined;
  private lost: PopLockedError | undefined;
  private retaking: Promise<void> | undefined;

  constructor(
    private readonly host: string,
    private readonly paths: PopLockPaths,
    private readonly open: OpenLockChannel,
  ) {}

  async lock(owner: LockOwner, opts: { timeoutMs?: number } = {}): Promise<PopLock> {
    if (this.held) throw new Error(`${this.host}: this host already holds the POP lock (run ${this.held.owner.runId}); release it first`);
    const holding: Holding = { owner, nonce: randomBytes(16).toString('hex'), stream: undefined, heartbeat: undefined, releasing: false };
    await this.take(holding, (opts.timeoutMs ?? 0) / 1000, undefined);
    this.held = holding;
    this.lost = undefined;
    return { owner, release: () => this.release(holding) };
  }

  /** Before every command: the lock must still be ours (re-taken after a reconnect if its channel died). */
  async check(): Promise<void> {
    if (this.lost) throw this.lost;
    const h = this.held;
    if (!h || h.stream || h.releasing) return;
    this.retaking ??= (async () => {
      try {
        const prev = h.nonce;
        h.nonce = randomBytes(16).toString('hex');
        await this.take(h, 0, prev);
      } catch (e) {
        if (e instanceof PopLockedError) {
          this.lost = new PopLockedError(
            this.host,
            e.holder,
            `${this.host}: the POP lock of this run (${h.owner.operation} run ${h.owner.runId}) was lost while the link was down, and ` +
              `another run holds it now: ${e.message.replace(/^[^:]*: /, '')}. This run stops here; re-run it when the other one is done.`,
          );
          this.held = undefined;
          throw this.lost;
        }
        throw e;
      } finally {
        this.retaking = undefined;
      }
    })();
    await this.retaking;
  }

  private async take(h: Holding, waitS: number, reclaim: string | undefined): Promise<void> {
    const s = await this.open(lockScript(this.paths, h.nonce, waitS, reclaim));
    let out = '';
    const answered = new Promise<'locked' | 'exited'>((resolve) => {
      s.onStdout((d) => {
        out += d.toString('utf8');
        if (out.length > 8192) out = out.slice(0, 8192);
        if (/^locked$/m.test(out)) resolve('locked');
      });
      s.result.then(
        () => resolve('exited'),
        () => resolve('exited'),
      );
    });
    s.write(Buffer.from(ownerRecord(h.owner) + '\n'));
    const limitMs = waitS * 1000 + ACQUIRE_SLACK_MS;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), limitMs);
    });
    const how = await Promise.race([answered, timedOut]);
    clearTimeout(timer);
    if (how === 'timeout') {
      s.abort();
      throw new CommandTimeoutError(this.host, `take the POP lock ${this.paths.lock}`, limitMs);
    }
    if (how === 'exited') {
      const r = await s.result; // rejects with ConnectionLostError on a drop: the caller's retry decides
      if (r.code === PopExit.popLocked) throw new PopLockedError(this.host, parseOwner(out));
      const why = r.stderr.trim() || 'no message';
      throw new Error(`${this.host}: cannot take the POP lock ${this.paths.lock} (${popExitLabel(r.code)}): ${why}`);
    }
    h.stream = s;
    h.heartbeat = setInterval(() => {
      try {
        s.write(Buffer.from('.'));
      } catch {
        /* the channel is gone; `result` below notices */
      }
    }, LOCK_HEARTBEAT_MS);
    h.heartbeat.unref();
    const ended = () => {
      clearInterval(h.heartbeat);
      if (h.stream === s) h.stream = undefined;
    };
    s.result.then(ended, ended);
  }

  private async release(h: Holding): Promise<void> {
    if (this.held !== h) return;
    h.releasing = true;
    await this.retaking?.catch(() => {});
    clearInterval(h.heartbeat);
    const s = h.stream;
    this.held = undefined;
    if (!s) return;
    s.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([s.result.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ACQUIRE_SLACK_MS)))]);
    clearTimeout(timer);
    s.abort();
  }
}
