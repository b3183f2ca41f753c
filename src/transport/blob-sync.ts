// Resumable, verified, content-addressed blob sync over exec channels (SSH) — built for thin links that drop.
//
// Store on the POP: <storeDir>/sha256/<hex> (complete, verified), <storeDir>/partial/<hex> (bytes so far).
// 1. One round trip ("have"): stop writers left over from a dropped connection, then report which wanted blobs
//    are in the store, the size of each partial, and the free space.
// 2. One exec channel per stream; the controller sends, per blob, a header line and only the missing bytes.
//    The POP appends them to the partial in blocks with `dd` and acknowledges each block, so at most one
//    chunk (`chunkBytes`) is ever unacknowledged — that bounds what a drop can cost. At the end of each blob
//    it checks the size, runs `sha256sum`, and renames into the store (atomic) or deletes a bad blob — inside
//    the same stream, so verification adds no round trips.
// 3. On a drop: wait for the Host to reconnect, ask "have" again, resume at each partial's size.

import { open, stat } from 'node:fs/promises';
import type { BlobWant, ExecResult, SyncOptions, SyncProgress, SyncReport } from './host.js';
import { shq } from './remote-command.js';

export interface ExecStream {
  /** Returns false when the caller should wait for `waitDrain()`. */
  write(chunk: Buffer): boolean;
  waitDrain(): Promise<void>;
  end(): void;
  onStdout(fn: (d: Buffer) => void): void;
  abort(): void;
  /** Settles when the remote command exits; rejects with a ConnectionLostError on a drop. */
  result: Promise<ExecResult>;
}

export type StreamExec = (command: string, o?: { sudo?: boolean }) => Promise<ExecStream>;

export interface SyncTransport {
  name: string;
  streamExec: StreamExec;
  exec(command: string, o: { sudo?: boolean; stdin?: string | Buffer; timeoutMs?: number }): Promise<ExecResult>;
  roundTrips(): number;
  sudo: boolean;
  /** Resolves once the host is reachable again (reconnecting with backoff), rejects when it gives up. */
  waitForLink(): Promise<void>;
}

export const DEFAULT_STORE_DIR = '/var/lib/fsm-edge/store';

/** The POP ran out of disk: nothing half-written is in the store; partials are kept for a later resume. */
export class DiskFullError extends Error {
  constructor(
    readonly host: string,
    readonly storeDir: string,
    message: string,
  ) {
    super(message);
    this.name = 'DiskFullError';
  }
}

/** Blobs that failed verification twice. Every other blob was synced and verified. */
export class BlobVerifyError extends Error {
  constructor(
    readonly host: string,
    readonly failed: Array<{ digest: string; got: string }>,
  ) {
    super(
      `${host}: ${failed.length} blob(s) failed sha256 verification on the POP twice and were not stored:\n` +
        failed.map((f) => `  ${f.digest} (the POP computed sha256:${f.got})`).join('\n') +
        `\n  The bundle's copy may be corrupt (re-run \`fsm-edge bundle verify\`), or the POP's disk/RAM is faulty.`,
    );
    this.name = 'BlobVerifyError';
  }
}

export class BlobSyncError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlobSyncError';
  }
}

const HEX_RE = /^sha256:([0-9a-f]{64})$/;

interface Blob {
  digest: string;
  hex: string;
  size: number;
  sourcePath: string;
}

interface StoreState {
  have: Set<string>;
  partial: Map<string, number>;
  freeBytes: number | undefined;
}

function isLost(e: unknown): boolean {
  return (e as { retryable?: boolean })?.retryable === true;
}

/** The "have" query. Reads the wanted hex digests on stdin; output lines `h HEX`, `p HEX SIZE`, `free KB`. */
export function haveScript(storeDir: string): string {
  const s = shq(storeDir);
  return [
    `mkdir -p ${s}/sha256 ${s}/partial && cd ${s} || exit 70`,
    // writers of a dropped connection may still hold a partial open (the POP's sshd has not noticed the drop):
    // stop them before reading sizes, or they could append after a new writer starts.
    `for f in partial/.writer.*.pid; do [ -f "$f" ] || continue; read w s < "$f"; ` +
      `if [ -n "$w" ] && kill -0 "$w" 2>/dev/null; then kill -STOP "$w" 2>/dev/null; pkill -KILL -P "$w" 2>/dev/null; kill -KILL "$w" 2>/dev/null; ` +
      `[ -n "$s" ] && [ "$(cat /proc/$s/comm 2>/dev/null)" = sudo ] && kill -KILL "$s" 2>/dev/null; fi; rm -f "$f" "partial/.hash.$w" "partial/.hash.$w.sum"; done`,
    `while read h; do if [ -f "sha256/$h" ]; then echo "h $h"; elif [ -f "partial/$h" ]; then echo "p $h $(stat -c %s "partial/$h")"; fi; done`,
    `echo "free $(df -Pk . | awk 'NR==2 {print $4}')"`,
  ].join('\n');
}

export function parseHave(stdout: string): StoreState {
  const st: StoreState = { have: new Set(), partial: new Map(), freeBytes: undefined };
  for (const line of stdout.split('\n')) {
    const [tag, a, b] = line.trim().split(/\s+/);
    if (tag === 'h' && a) st.have.add(a);
    else if (tag === 'p' && a && b) st.partial.set(a, Number(b));
    else if (tag === 'free' && a && /^\d+$/.test(a)) st.freeBytes = Number(a) * 1024;
  }
  return st;
}

/**
 * The stream writer. Reads segment headers `HEX OFFSET NBYTES SIZE BLOCK` each followed by NBYTES raw bytes;
 * `end` stops. `read` consumes a pipe byte by byte (POSIX), so headers and `dd`'s raw bytes share stdin safely.
 * A blob may come in several segments (the controller adapts BLOCK to the link). While a blob's bytes land,
 * `tee` also feeds them (after the partial's existing prefix) to a background SHA-256 (`openssl dgst`, else
 * `sha256sum`), so verification
 * overlaps the transfer instead of re-reading the blob at the end. Output: `a HEX I` after block I of the current
 * segment landed; `s HEX POS` segment done; `ok HEX` verified and stored; `bad HEX GOT` deleted; `short HEX SIZE`
 * stdin ended early (partial kept). Exit 71 = write failed (stderr says why).
 */
export function writerScript(storeDir: string): string {
  const s = shq(storeDir);
  return [
    `cd ${s} || exit 70`,
    // our pid and, when it is the sudo that started us, sudo's: a stale writer is stopped with its sudo
    `echo "$$ $([ "$(cat /proc/$PPID/comm 2>/dev/null)" = sudo ] && echo $PPID)" > partial/.writer.$$.pid`,
    `F=partial/.hash.$$; trap 'rm -f partial/.writer.$$.pid "$F" "$F.sum"' EXIT; rm -f "$F"; mkfifo "$F" || exit 71`,
    // OpenSSL's SHA-256 uses the CPU's SHA extensions (4-5x coreutils' sha256sum); same digest, either is fine
    `H=sha256sum; command -v openssl >/dev/null 2>&1 && H='openssl dgst -sha256 -r'`,
    `lh=; lp=; hp=`,
    `while read h off n size B; do`,
    `  [ "$h" = end ] && exit 0`,
    `  p=partial/$h`,
    `  if [ "$h" != "$lh" ] || [ "$off" != "$lp" ]; then`,
    `    if [ "$off" = 0 ]; then : > "$p" || exit 71; else c=$(stat -c %s "$p" 2>/dev/null || echo 0); [ "$c" = "$off" ] || { echo "skew $h $c"; exit 75; }; fi`,
    `    if [ -n "$hp" ]; then exec 3>&-; wait $hp; fi`,
    `    $H < "$F" > "$F.sum" & hp=$!`,
    `    exec 3> "$F"`,
    `    cat "$p" >&3 || exit 71`,
    `  fi`,
    `  lh=$h; lp=$((off + n))`,
    // dd moves 64 KiB at a time (a block of B is K of them), so bytes stream through instead of being held
    // until a whole block is in; fullblock + exact counts never read past the segment
    `  full=$((n / B)); rem=$((n % B)); K=$((B / 65536)); i=0`,
    `  while [ $i -lt $full ]; do dd bs=65536 count=$K iflag=fullblock status=none | tee -a "$p" >&3 || exit 71; i=$((i+1)); echo "a $h $i"; done`,
    `  r=$((rem / 65536)); if [ $r -gt 0 ]; then dd bs=65536 count=$r iflag=fullblock status=none | tee -a "$p" >&3 || exit 71; fi`,
    `  r=$((rem % 65536)); if [ $r -gt 0 ]; then dd bs=$r count=1 iflag=fullblock status=none | tee -a "$p" >&3 || exit 71; fi`,
    `  if [ $lp -lt $size ]; then echo "s $h $lp"; continue; fi`,
    `  exec 3>&-; wait $hp; hp=; lh=`,
    `  c=$(stat -c %s "$p") || exit 71`,
    `  if [ "$c" != "$size" ]; then echo "short $h $c"; exit 76; fi`,
    `  read sum x < "$F.sum" || exit 71`,
    `  if [ "$sum" = "$h" ]; then mv -f "$p" "sha256/$h" || exit 72; echo "ok $h"; else rm -f "$p"; echo "bad $h $sum"; fi`,
    `done`,
  ].join('\n');
}

/** Shared pacing for `maxRate` across all streams (token bucket, ~100 ms of burst). */
class RateLimiter {
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

class Progress {
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

interface Job {
  blob: Blob;
  offset: number;
}

interface StreamOutcome {
  stored: string[];
  bad: Array<{ hex: string; got: string }>;
}

export async function syncBlobsOver(t: SyncTransport, wants: BlobWant[], opts: SyncOptions): Promise<SyncReport> {
  const t0 = Date.now();
  const rt0 = t.roundTrips();
  const storeDir = opts.storeDir;
  const fixedChunk = opts.chunkBytes ? Math.max(64 * 1024, opts.chunkBytes) : undefined;
  const maxWindow = { value: 0 };
  const streams = Math.max(1, opts.streams ?? 2);
  const limiter = opts.maxRate && opts.maxRate > 0 ? new RateLimiter(opts.maxRate) : undefined;

  // validate and de-duplicate what we are asked to send, before touching the POP
  const blobs = new Map<string, Blob>();
  for (const w of wants) {
    const m = HEX_RE.exec(w.digest);
    if (!m) throw new BlobSyncError(`blob digest ${JSON.stringify(w.digest)} is not of the form sha256:<64 hex>`);
    if (blobs.has(m[1]!)) continue;
    const st = await stat(w.sourcePath).catch((e: Error) => {
      throw new BlobSyncError(`blob ${w.digest}: cannot read its source ${w.sourcePath}: ${e.message}`);
    });
    if (st.size !== w.size) throw new BlobSyncError(`blob ${w.digest}: source ${w.sourcePath} is ${st.size} bytes, expected ${w.size} — the bundle is damaged (run \`fsm-edge bundle verify\`)`);
    blobs.set(m[1]!, { digest: w.digest, hex: m[1]!, size: w.size, sourcePath: w.sourcePath });
  }

  const report: SyncReport = { wanted: blobs.size, alreadyPresent: 0, sentBlobs: 0, sentBytes: 0, resentBytes: 0, resumedBlobs: 0, roundTrips: 0, seconds: 0 };
  const sent = new Map<string, SentRanges>();
  const badCount = new Map<string, number>();
  const failed: Array<{ digest: string; got: string }> = [];
  const pending = new Set(blobs.keys());
  let progress: Progress | undefined;
  let stalledPasses = 0;
  let first = true;
  const resumed = new Set<string>();

  while (pending.size) {
    opts.signal?.throwIfAborted();
    let state: StoreState;
    try {
      const r = await t.exec(haveScript(storeDir), { sudo: t.sudo, stdin: [...pending].join('\n') + '\n', timeoutMs: 120_000 });
      if (r.code !== 0) throw new BlobSyncError(`${t.name}: cannot prepare the blob store ${storeDir}: ${r.stderr.trim() || `exit ${r.code}`}`);
      state = parseHave(r.stdout);
    } catch (e) {
      if (!isLost(e)) throw e;
      await t.waitForLink();
      continue;
    }
    for (const hex of [...pending]) {
      if (state.have.has(hex)) {
        pending.delete(hex);
        if (first) report.alreadyPresent++;
      }
    }
    const jobs: Job[] = [];
    for (const hex of pending) {
      const blob = blobs.get(hex)!;
      let offset = state.partial.get(hex) ?? 0;
      // a partial longer than the blob is garbage: start over; one of exactly its size (dropped between write
      // and rename) is sent as a zero-byte job, which just verifies and renames it on the POP
      if (offset > blob.size) offset = 0;
      if (offset > 0) resumed.add(hex);
      jobs.push({ blob, offset });
    }
    const need = jobs.reduce((a, j) => a + (j.blob.size - j.offset), 0);
    if (first) {
      progress = new Progress(need, opts.onProgress);
      first = false;
    }
    if (!jobs.length) break;
    if (state.freeBytes !== undefined && need > state.freeBytes) {
      throw new DiskFullError(
        t.name,
        storeDir,
        `${t.name}: not enough disk for the bundle: ${mib(need)} MiB still to store in ${storeDir}, ${mib(state.freeBytes)} MiB free. ` +
          `Free space on the POP (df -h ${storeDir}) or set a storeDir on a bigger filesystem; nothing was sent.`,
      );
    }

    // largest first onto the least-loaded stream
    const lanes: Job[][] = Array.from({ length: Math.min(streams, jobs.length) }, () => []);
    const load = lanes.map(() => 0);
    for (const j of [...jobs].sort((a, b) => b.blob.size - b.offset - (a.blob.size - a.offset))) {
      const i = load.indexOf(Math.min(...load));
      lanes[i]!.push(j);
      load[i]! += j.blob.size - j.offset + 4096;
    }

    for (const r of sent.values()) {
      if (r.cur) r.prior.push(r.cur);
      r.cur = undefined;
    }
    const landedBefore = progress!.landed;
    const results = await Promise.allSettled(lanes.map((lane) => runStream(t, lane, { storeDir, fixedChunk, maxWindow, limiter, progress: progress!, sent, report, signal: opts.signal })));
    let lost = false;
    for (const r of results) {
      if (r.status === 'fulfilled') {
        for (const hex of r.value.stored) {
          pending.delete(hex);
          report.sentBlobs++;
        }
        for (const b of r.value.bad) {
          const n = (badCount.get(b.hex) ?? 0) + 1;
          badCount.set(b.hex, n);
          if (n >= 2) {
            pending.delete(b.hex);
            failed.push({ digest: blobs.get(b.hex)!.digest, got: b.got });
          }
        }
      } else if (isLost(r.reason) || r.reason instanceof SkewError) {
        lost = true;
      } else {
        throw r.reason;
      }
    }
    if (lost) {
      stalledPasses = progress!.landed > landedBefore ? 0 : stalledPasses + 1;
      if (stalledPasses >= 5) throw new BlobSyncError(`${t.name}: blob sync made no progress in 5 reconnects; giving up (partials are kept for the next run)`);
      await t.waitForLink();
    }
  }

  report.resumedBlobs = resumed.size;
  report.chunkBytes = maxWindow.value;
  report.roundTrips = t.roundTrips() - rt0;
  report.seconds = (Date.now() - t0) / 1000;
  if (failed.length) throw Object.assign(new BlobVerifyError(t.name, failed), { report });
  return report;
}

class SkewError extends Error {}

/** Byte ranges of one blob sent in earlier passes (`prior`) and in the current one (`cur`). */
interface SentRanges {
  prior: Array<[number, number]>;
  cur: [number, number] | undefined;
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1);
}

interface StreamCtx {
  storeDir: string;
  fixedChunk: number | undefined;
  maxWindow: { value: number };
  limiter: RateLimiter | undefined;
  progress: Progress;
  sent: Map<string, SentRanges>;
  report: SyncReport;
  signal: AbortSignal | undefined;
}

/**
 * How many bytes may be unacknowledged on one stream: about half a second of what the link carries, so a drop
 * costs at most that much (one "chunk") while a fast link is never starved. Fixed when `chunkBytes` is given.
 */
class Window {
  private rate = 0;
  private lastT = Date.now();
  private lastAcked = 0;
  max = 0;
  constructor(private readonly fixed: number | undefined) {}
  update(acked: number): void {
    const now = Date.now();
    if (now - this.lastT < 100) return;
    const inst = ((acked - this.lastAcked) * 1000) / (now - this.lastT);
    this.rate = this.rate === 0 ? inst : 0.6 * this.rate + 0.4 * inst;
    this.lastT = now;
    this.lastAcked = acked;
  }
  get bytes(): number {
    // before the first measurement: a middle value, so a fast link is not held to one block at a time
    const w = this.fixed ?? (this.rate === 0 ? INITIAL_WINDOW : clamp(roundTo(this.rate * 0.5, 65536), MIN_WINDOW, MAX_WINDOW));
    this.max = Math.max(this.max, w);
    return w;
  }
}

const MIN_WINDOW = 256 * 1024;
const MAX_WINDOW = 16 * 1024 * 1024;
const INITIAL_WINDOW = 1024 * 1024;
const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
const roundTo = (v: number, m: number) => Math.round(v / m) * m;

interface Segment {
  hex: string;
  /** Offset in the blob where this segment starts, and its length and dd block size. */
  off: number;
  n: number;
  block: number;
}

async function runStream(t: SyncTransport, lane: Job[], c: StreamCtx): Promise<StreamOutcome> {
  const s = await t.streamExec(writerScript(c.storeDir), { sudo: t.sudo });
  const out: StreamOutcome = { stored: [], bad: [] };
  const win = new Window(c.fixedChunk);
  let started = false;
  // stream-wide counters of payload bytes written and acknowledged; a waiter for the window to open
  let acked = 0;
  let sent = 0;
  let wake: (() => void) | undefined;
  let ended = false;
  let protoErr: Error | undefined;
  let buf = '';
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
      } else if (tag === 'skew' || tag === 'short') protoErr = new SkewError(`${tag}: partial of ${hex} is ${arg} bytes`);
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
  const onAbort = () => s.abort();
  c.signal?.addEventListener('abort', onAbort, { once: true });
  const waitWindow = async (need: number) => {
    while (sent + need > acked + win.bytes && !ended) {
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = undefined;
    }
  };
  const send = async (b: Buffer) => {
    if (!s.write(b)) await s.waitDrain();
  };

  try {
    for (const j of lane) {
      if (ended) break;
      const blob = j.blob;
      let pos = j.offset;
      const fh = blob.size > pos ? await open(blob.sourcePath, 'r') : undefined;
      try {
        do {
          // one segment: about four windows, in blocks of a quarter window
          const w = started || c.fixedChunk ? win.bytes : INITIAL_WINDOW;
          started = true;
          const block = Math.max(65536, roundTo(w / 4, 65536)); // the writer needs a multiple of 64 KiB
          const n = Math.min(blob.size - pos, block * 16);
          segs.push({ hex: blob.hex, off: pos, n, block });
          await send(Buffer.from(`${blob.hex} ${pos} ${n} ${blob.size} ${block}\n`));
          const end = pos + n;
          while (pos < end && !ended) {
            const len = Math.min(256 * 1024, block, end - pos);
            // keep at most one window unacknowledged: that is all a drop can cost
            await waitWindow(len);
            if (ended) break;
            if (c.limiter) await c.limiter.take(len);
            const b = Buffer.allocUnsafe(len);
            const { bytesRead } = await fh!.read(b, 0, len, pos);
            if (bytesRead !== len) throw new BlobSyncError(`${blob.sourcePath} shrank while sending it (read ${bytesRead} of ${len} bytes at ${pos})`);
            // bytes of this blob already sent in an earlier pass of this run count as re-sent
            const r = c.sent.get(blob.hex) ?? { prior: [], cur: undefined };
            for (const [lo, hi] of r.prior) c.report.resentBytes += Math.max(0, Math.min(hi, pos + len) - Math.max(lo, pos));
            r.cur = r.cur ? [Math.min(r.cur[0], pos), Math.max(r.cur[1], pos + len)] : [pos, pos + len];
            c.sent.set(blob.hex, r);
            c.report.sentBytes += len;
            sent += len;
            pos += len;
            await send(b);
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
    const r = await done;
    if (protoErr) throw protoErr;
    if (r.code === 71 || r.code === 72) {
      if (/No space left|Disk quota/i.test(r.stderr)) {
        throw new DiskFullError(
          t.name,
          c.storeDir,
          `${t.name}: the POP ran out of disk space in ${c.storeDir} while storing blobs: free space (df -h ${c.storeDir}) and re-run — ` +
            `verified blobs stay in the store, partial ones resume, nothing unverified was stored.`,
        );
      }
      throw new BlobSyncError(`${t.name}: writing blobs into ${c.storeDir} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    }
    if (r.code === 70) throw new BlobSyncError(`${t.name}: blob store ${c.storeDir} is not accessible: ${r.stderr.trim()}`);
    if (r.code === 76 || r.code === 75) throw new SkewError(`stream ended early (exit ${r.code})`);
    if (r.code !== 0) throw new BlobSyncError(`${t.name}: blob stream failed with exit ${r.code}: ${r.stderr.trim()}`);
    return out;
  } catch (e) {
    c.maxWindow.value = Math.max(c.maxWindow.value, win.max);
    s.abort();
    // wait for the channel to close so its error cannot surface later unobserved
    await done.catch(() => {});
    if (protoErr && !isLost(e)) throw protoErr;
    throw e;
  } finally {
    c.signal?.removeEventListener('abort', onAbort);
  }
}
