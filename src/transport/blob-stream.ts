// One blob stream: sends a lane of jobs to the POP-side writer, keeps at most one window unacknowledged, and
// watches the writer — silence while it owes an acknowledgement is treated as a lost link (StreamStallError).

import { open } from 'node:fs/promises';
import type { ExecResult, SyncProgress, SyncReport } from './host.js';
import { PopExit, popExitLabel } from './pop-exit.js';
import { writerScript } from './pop-store-script.js';
import type { Job } from './sync-plan.js';
import { BlobSyncError, DiskFullError, isRetryable, SkewError, StreamStallError } from './sync-errors.js';

export interface ExecStream {
  /**
   * Returns false when the caller should wait for `waitDrain()`. `done` runs once the transport no longer holds
   * `chunk` (it was encrypted or handed to the kernel), so the caller may reuse it; it may never run on a drop.
   */
  write(chunk: Buffer, done?: () => void): boolean;
  waitDrain(): Promise<void>;
  end(): void;
  onStdout(fn: (d: Buffer) => void): void;
  abort(): void;
  /** Settles when the remote command exits; rejects with a ConnectionLostError on a drop. */
  result: Promise<ExecResult>;
}

export type StreamExec = (command: string, o?: { sudo?: boolean }) => Promise<ExecStream>;

/** Shared pacing for `maxRate` across all streams (token bucket, ~100 ms of burst). */
export class RateLimiter {
  private tokens = 0;
  private last = Date.now();
  constructor(private readonly rate: number) {}
  async take(n: number): Promise<void> {
    for (;;) {
      const now = Date.now();
      this.tokens = Math.min(this.rate / 10 + n, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      if (this.tokens >= n) {
        this.tokens -= n;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.max(5, ((n - this.tokens) / this.rate) * 1000)));
    }
  }
}

export class Progress {
  private start = Date.now();
  private lastEmit = 0;
  private rate = 0;
  private lastT = Date.now();
  private lastB = 0;
  landed = 0;
  constructor(
    readonly total: number,
    private readonly fn?: (p: SyncProgress) => void,
  ) {}
  add(digest: string, n: number): void {
    this.landed += n;
    const now = Date.now();
    if (now - this.lastT >= 250) {
      const inst = ((this.landed - this.lastB) * 1000) / (now - this.lastT);
      this.rate = this.rate === 0 ? inst : 0.7 * this.rate + 0.3 * inst;
      this.lastT = now;
      this.lastB = this.landed;
    }
    if (this.fn && (now - this.lastEmit >= 200 || this.landed >= this.total)) {
      this.lastEmit = now;
      const r = this.rate || (this.landed * 1000) / Math.max(1, now - this.start);
      this.fn({
        digest,
        sentBytes: Math.min(this.landed, this.total),
        totalBytes: this.total,
        bytesPerSecond: Math.round(r),
        etaSeconds: r > 0 ? Math.max(0, (this.total - this.landed) / r) : Infinity,
      });
    }
  }
}

const MIN_WINDOW = 256 * 1024;
// Unacknowledged bytes cost no controller memory (they are read from the file as they go), only what a drop
// re-sends; on a fast link half a second of data is tens of MiB, and a smaller cap made the sender wait for acks.
const MAX_WINDOW = 64 * 1024 * 1024;
export const INITIAL_WINDOW = 1024 * 1024;
/** What one read from a blob's file and one write to the stream carry. */
const READ_CHUNK = 256 * 1024;
/** How long an aborted stream may take to close before the sync moves on without it. */
const ABORT_GRACE_MS = 2000;
/** Least silence tolerated from a writer that owes an acknowledgement. */
export const DEFAULT_STALL_MS = 30_000;
/** A rate no live POP disk is slower than, for bounding the final hash + fsync + rename of a blob. */
const SLOWEST_VERIFY_BYTES_PER_S = 8 * 1024 * 1024;
const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
const roundTo = (v: number, m: number) => Math.round(v / m) * m;

/**
 * How many bytes may be unacknowledged on one stream: about half a second of what the link carries, so a drop
 * costs at most that much (one "chunk") while a fast link is never starved. Fixed when `chunkBytes` is given.
 */
export class Window {
  /** Acknowledged bytes per second, smoothed; 0 before the first measurement. */
  rate = 0;
  private lastT = 0;
  private lastAcked = 0;
  private acked = 0;
  max = 0;
  constructor(private readonly fixed: number | undefined) {}
  update(acked: number): void {
    this.acked = acked;
    const now = Date.now();
    // the rate is measured from the first ack on: the writer's start-up is not the link's speed
    if (this.lastT === 0) {
      this.lastT = now;
      this.lastAcked = acked;
      return;
    }
    if (now - this.lastT < 100) return;
    const inst = ((acked - this.lastAcked) * 1000) / (now - this.lastT);
    this.rate = this.rate === 0 ? inst : 0.6 * this.rate + 0.4 * inst;
    this.lastT = now;
    this.lastAcked = acked;
  }
  get bytes(): number {
    // before the first measurement (100 ms of acks): slow start — 1 MiB, opened by four times what the POP has
    // acknowledged, so a fast link is not held to 1 MiB for its first 100 ms; a link that acks again no sooner
    // than that is slow, and stays at 1 MiB until its rate is known
    const slow = this.lastT !== 0 && Date.now() - this.lastT >= 100;
    const start = slow ? INITIAL_WINDOW : Math.min(MAX_WINDOW, roundTo(INITIAL_WINDOW + 4 * this.acked, 65536));
    const w = this.fixed ?? (this.rate === 0 ? start : clamp(roundTo(this.rate * 0.5, 65536), MIN_WINDOW, MAX_WINDOW));
    this.max = Math.max(this.max, w);
    return w;
  }
}

/** Byte ranges of one blob sent in earlier passes (`prior`) and in the current one (`cur`). */
export interface SentRanges {
  prior: Array<[number, number]>;
  cur: [number, number] | undefined;
}

export interface StreamCtx {
  name: string;
  storeDir: string;
  token: string;
  sudo: boolean;
  fixedChunk: number | undefined;
  maxWindow: { value: number };
  limiter: RateLimiter | undefined;
  progress: Progress;
  sent: Map<string, SentRanges>;
  report: SyncReport;
  signal: AbortSignal | undefined;
  stallMs: number;
}

export interface StreamOutcome {
  stored: string[];
  bad: Array<{ hex: string; got: string }>;
  /** Blobs whose lock another writer held: left for a later pass. */
  busy: string[];
}

interface Segment {
  hex: string;
  /** Offset in the blob where this segment starts, and its length and dd block size. */
  off: number;
  n: number;
  block: number;
  /** Size of the whole blob, when this segment ends it (the writer then hashes and renames). */
  finalSize: number | undefined;
}

/** Runs one lane on `opened` (a writer that already answered "have") or on a writer it starts. */
export async function runStream(streamExec: StreamExec, lane: Job[], c: StreamCtx, opened?: ExecStream): Promise<StreamOutcome> {
  const s = opened ?? (await streamExec(writerScript(c.storeDir, c.token), { sudo: c.sudo }));
  const out: StreamOutcome = { stored: [], bad: [], busy: [] };
  const win = new Window(c.fixedChunk);
  let started = false;
  // stream-wide counters of payload bytes written and acknowledged; a waiter for the window to open
  let acked = 0;
  let sent = 0;
  let wake: (() => void) | undefined;
  let ended = false;
  let protoErr: Error | undefined;
  // set when the stream is stopped from our side (a stalled writer, the caller's abort signal): every wait ends
  let haltErr: Error | undefined;
  let haltReject: ((e: Error) => void) | undefined;
  const halted = new Promise<never>((_, reject) => {
    haltReject = reject;
  });
  halted.catch(() => {});
  let buf = '';
  let heardAt = Date.now();
  const jobsByHex = new Map(lane.map((j) => [j.blob.hex, j]));
  const segs: Segment[] = [];
  let segAcked = 0; // bytes of segs[0] acknowledged
  const advance = (upto: number) => {
    const seg = segs[0];
    if (!seg || upto <= segAcked) return;
    const d = Math.min(upto, seg.n) - segAcked;
    segAcked += d;
    acked += d;
    c.progress.add(jobsByHex.get(seg.hex)!.blob.digest, d);
    win.update(acked);
  };
  const finishSeg = () => {
    const seg = segs[0];
    if (seg) advance(seg.n);
    segs.shift();
    segAcked = 0;
  };
  s.onStdout((d) => {
    heardAt = Date.now();
    buf += d.toString('latin1');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      const [tag, hex, arg] = line.split(' ');
      if (!hex) continue;
      const seg = segs[0];
      if (tag === 'a' && seg) advance(Number(arg) * seg.block);
      else if (tag === 's') finishSeg();
      else if (tag === 'ok') {
        finishSeg();
        out.stored.push(hex);
      } else if (tag === 'bad') {
        finishSeg();
        out.bad.push({ hex, got: arg ?? '?' });
      } else if (tag === 'busy') out.busy.push(hex);
      else if (tag === 'skew' || tag === 'short') protoErr = new SkewError(`${tag}: partial of ${hex} is ${arg} bytes`);
    }
    wake?.();
  });
  const done = s.result.then(
    (r) => {
      ended = true;
      wake?.();
      return r;
    },
    (e) => {
      ended = true;
      wake?.();
      throw e;
    },
  );
  done.catch(() => {});
  // On SSH, a channel to a frozen writer never closes (sshd waits for its process), so nothing here may wait on
  // the channel alone once we stopped it.
  const halt = (e: Error) => {
    if (haltErr) return;
    haltErr = e;
    ended = true;
    s.abort();
    haltReject?.(e);
    wake?.();
  };
  const onAbort = () => halt(c.signal?.reason instanceof Error ? c.signal.reason : new Error(`${c.name}: blob sync aborted`));
  c.signal?.addEventListener('abort', onAbort, { once: true });

  // The watchdog: while the writer owes something (unacknowledged bytes, or the verdict on a finished blob), its
  // silence is bounded by a few windows' worth of time at the measured rate — never less than stallMs.
  const allowedSilence = (): number | undefined => {
    const seg = segs[0];
    if (sent > acked) return Math.max(c.stallMs, win.rate > 0 ? (4 * win.bytes * 1000) / win.rate : 0);
    if (seg?.finalSize !== undefined) return c.stallMs + (seg.finalSize * 1000) / SLOWEST_VERIFY_BYTES_PER_S;
    return undefined;
  };
  const watchdog = setInterval(
    () => {
      const limit = allowedSilence();
      if (ended || limit === undefined || Date.now() - heardAt < limit) return;
      halt(
        new StreamStallError(
          `${c.name}: the POP's blob writer acknowledged nothing for ${Math.round((Date.now() - heardAt) / 1000)} s ` +
            `(${sent - acked} bytes outstanding); treating the link as lost and resuming`,
        ),
      );
    },
    Math.min(1000, Math.max(50, c.stallMs / 4)),
  );
  watchdog.unref();

  // the POP acks whole blocks: a window that shrank below the block being sent (the rate fell, or slow start
  // ended) must still let that block complete, or neither side would move until the stall watchdog fires
  const waitWindow = async (need: number) => {
    while (sent + need > acked + Math.max(win.bytes, 2 * (segs.at(-1)?.block ?? 0)) && !ended) {
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = undefined;
    }
  };
  // read buffers come back once the transport is done with them: 64 MiB through fresh 256 KiB buffers left tens of
  // MiB of garbage between collections (the controller's peak RSS), a few recycled ones leave none
  const pool: Buffer[] = [];
  const send = async (b: Buffer, buf?: Buffer) => {
    if (!s.write(b, buf ? () => pool.push(buf) : undefined)) await Promise.race([s.waitDrain(), halted]);
  };

  try {
    for (const j of lane) {
      if (ended) break;
      const blob = j.blob;
      let pos = j.offset;
      const fh = blob.size > pos ? await open(blob.sourcePath, 'r') : undefined;
      try {
        do {
          // one segment: sixteen blocks of a quarter window each (the POP acks each block: four per window)
          const w = started || c.fixedChunk ? win.bytes : INITIAL_WINDOW;
          started = true;
          const block = Math.max(65536, roundTo(w / 4, 65536)); // the writer needs a multiple of 64 KiB
          const n = Math.min(blob.size - pos, block * 16);
          if (segs.length === 0) heardAt = Date.now(); // the writer owes nothing before this header
          segs.push({ hex: blob.hex, off: pos, n, block, finalSize: pos + n >= blob.size ? blob.size : undefined });
          await send(Buffer.from(`${blob.hex} ${pos} ${n} ${blob.size} ${block}\n`));
          const end = pos + n;
          while (pos < end && !ended) {
            const len = Math.min(READ_CHUNK, block, end - pos);
            // keep at most one window unacknowledged: that is all a drop can cost
            await waitWindow(len);
            if (ended) break;
            if (c.limiter) await c.limiter.take(len);
            const buf = pool.pop() ?? Buffer.allocUnsafe(READ_CHUNK);
            const b = buf.subarray(0, len);
            const { bytesRead } = await fh!.read(b, 0, len, pos);
            if (bytesRead !== len) {
              throw new BlobSyncError(`${blob.sourcePath} shrank while sending it (read ${bytesRead} of ${len} bytes at ${pos})`);
            }
            // bytes of this blob already sent in an earlier pass of this run count as re-sent
            const r = c.sent.get(blob.hex) ?? { prior: [], cur: undefined };
            for (const [lo, hi] of r.prior) c.report.resentBytes += Math.max(0, Math.min(hi, pos + len) - Math.max(lo, pos));
            r.cur = r.cur ? [Math.min(r.cur[0], pos), Math.max(r.cur[1], pos + len)] : [pos, pos + len];
            c.sent.set(blob.hex, r);
            c.report.sentBytes += len;
            if (sent === acked) heardAt = Date.now();
            sent += len;
            pos += len;
            await send(b, buf);
          }
        } while (pos < blob.size && !ended);
      } finally {
        await fh?.close();
      }
    }
    c.maxWindow.value = Math.max(c.maxWindow.value, win.max);
    if (!ended) {
      s.write(Buffer.from('end\n'));
      s.end();
    }
    const r = await Promise.race([done, halted]);
    if (haltErr) throw haltErr;
    if (protoErr) throw protoErr;
    return writerVerdict(c, r, out);
  } catch (e) {
    c.maxWindow.value = Math.max(c.maxWindow.value, win.max);
    s.abort();
    // Give the channel a moment to close, but no more: sshd keeps a channel open until its process exits, and a
    // frozen writer never does — the next "have" stops it (it carries this run's token).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done.catch(() => {}), new Promise((r) => (timer = setTimeout(r, ABORT_GRACE_MS)))]);
    clearTimeout(timer);
    if (haltErr) throw haltErr;
    if (protoErr && !isRetryable(e)) throw protoErr;
    throw e;
  } finally {
    clearInterval(watchdog);
    c.signal?.removeEventListener('abort', onAbort);
  }
}

/** Reads the writer's exit: fine, a blob someone else holds, or a failure that says where and what next. */
function writerVerdict(c: StreamCtx, r: ExecResult, out: StreamOutcome): StreamOutcome {
  if (r.code === 0) return out;
  if (r.code === PopExit.blobBusy) return out;
  if (r.code === PopExit.writeFailed || r.code === PopExit.storeFailed) {
    if (/No space left|Disk quota/i.test(r.stderr)) {
      throw new DiskFullError(
        c.name,
        c.storeDir,
        `${c.name}: the POP ran out of disk space in ${c.storeDir} while storing blobs: free space (df -h ${c.storeDir}) and re-run — ` +
          `verified blobs stay in the store, partial ones resume, nothing unverified was stored.`,
      );
    }
    const why = r.stderr.trim() || 'no message';
    throw new BlobSyncError(`${c.name}: writing blobs into ${c.storeDir} failed (${popExitLabel(r.code)}): ${why}`);
  }
  if (r.code === PopExit.storeUnavailable) {
    throw new BlobSyncError(`${c.name}: blob store ${c.storeDir} is not accessible: ${r.stderr.trim()}`);
  }
  if (r.code === PopExit.streamShort || r.code === PopExit.partialSkew) throw new SkewError(`stream ended early (${popExitLabel(r.code)})`);
  throw new BlobSyncError(`${c.name}: blob stream failed with ${popExitLabel(r.code)}: ${r.stderr.trim()}`);
}
