// Resumable, verified, content-addressed blob sync over exec channels (SSH) — built for thin links that drop.
//
// Store on the POP: see pop-store-script.ts (the shell) and pop-paths.ts (the layout).
// 1. "have", answered by the first stream of a pass before it takes bytes (one channel, one sudo): stop this
//    run's own writers left over from a dropped connection, then report which wanted blobs are stored (with their
//    sizes: a short one counts as missing), the size of each partial, which partials another writer holds, and
//    the free space.
// 2. One exec channel per stream (blob-stream.ts); the controller sends, per blob, a header line and only the
//    missing bytes. The POP appends them to the partial under the blob's lock and acknowledges each block, so at
//    most one chunk is ever unacknowledged. At the end of each blob it hashes the file, fsyncs, renames into the
//    store — inside the same stream, so verification adds no round trips.
// 3. On a drop or a stalled writer: wait for the Host to reconnect, ask "have" again, resume at each partial's size.

import { randomBytes } from 'node:crypto';
import type { BlobWant, ExecResult, SyncOptions, SyncReport } from './host.js';
import { popExitLabel } from './pop-exit.js';
import { POP_STORE_DIR } from './pop-paths.js';
import { HAVE_END, parseHave, WRITER_IDLE_S, writerScript, type StoreState } from './pop-store-script.js';
import {
  DEFAULT_STALL_MS,
  Progress,
  RateLimiter,
  runStream,
  type ExecStream,
  type SentRanges,
  type StreamCtx,
  type StreamExec,
} from './blob-stream.js';
import { isStored, planJobs, readWants, spreadOverStreams } from './sync-plan.js';
import { BlobSyncError, BlobVerifyError, DiskFullError, isRetryable } from './sync-errors.js';

export { BlobSyncError, BlobVerifyError, DiskFullError } from './sync-errors.js';
export { haveScript, parseHave, parseStoredBlobs, storedBlobsScript, writerScript } from './pop-store-script.js';
export type { ExecStream, StreamExec } from './blob-stream.js';

export interface SyncTransport {
  name: string;
  streamExec: StreamExec;
  exec(command: string, o: { sudo?: boolean; stdin?: string | Buffer; timeoutMs?: number }): Promise<ExecResult>;
  roundTrips(): number;
  sudo: boolean;
  /** Resolves once the host is reachable again (reconnecting with backoff), rejects when it gives up. */
  waitForLink(): Promise<void>;
}

export const DEFAULT_STORE_DIR = POP_STORE_DIR;

/**
 * How long blobs another writer holds may make no progress before the sync gives up on them: longer than a
 * writer whose controller vanished takes to stop by itself (WRITER_IDLE_S + its 10 s check).
 */
const BUSY_GIVE_UP_MS = (WRITER_IDLE_S + 30) * 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bound of the "have" answer (it stops this run's stale writers, up to 5 s each, then stats each wanted blob). */
const HAVE_TIMEOUT_MS = 120_000;

/**
 * Starts a pass's first writer, which answers "have" before it takes bytes: the answer and the first byte cost
 * one channel and one sudo between them, not two.
 */
async function openWithHave(
  t: SyncTransport,
  storeDir: string,
  token: string,
  hexes: string[],
): Promise<{ state: StoreState; stream: ExecStream }> {
  const s = await t.streamExec(writerScript(storeDir, token, WRITER_IDLE_S, { have: true }), { sudo: t.sudo });
  let timer: NodeJS.Timeout | undefined;
  try {
    let buf = '';
    const answer = await new Promise<string | undefined>((resolve, reject) => {
      s.onStdout((d) => {
        buf += d.toString('latin1');
        // the answer always ends with its `free` line, so the end marker is a line of its own after a newline
        const i = buf.indexOf(`\n${HAVE_END}\n`);
        if (i >= 0) resolve(buf.slice(0, i + 1));
      });
      s.result.then(() => resolve(undefined), reject);
      timer = setTimeout(
        () =>
          reject(new BlobSyncError(`${t.name}: the POP did not say which blobs it has within ${HAVE_TIMEOUT_MS / 1000} s (${storeDir})`)),
        HAVE_TIMEOUT_MS,
      );
      if (!s.write(Buffer.from(hexes.join('\n') + '\n\n'))) void s.waitDrain();
    });
    if (answer === undefined) {
      const r = await s.result;
      const why = r.stderr.trim() || 'no message';
      throw new BlobSyncError(`${t.name}: cannot prepare the blob store ${storeDir} (${popExitLabel(r.code)}): ${why}`);
    }
    return { state: parseHave(answer), stream: s };
  } catch (e) {
    s.abort();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** Ends a writer that has nothing to write (everything stored, or only blobs another writer holds). */
async function closeIdle(s: ExecStream): Promise<void> {
  s.write(Buffer.from('end\n'));
  s.end();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([s.result.catch(() => {}), new Promise((r) => (timer = setTimeout(r, 5000)))]);
  clearTimeout(timer);
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1);
}

export async function syncBlobsOver(t: SyncTransport, wants: BlobWant[], opts: SyncOptions): Promise<SyncReport> {
  const t0 = Date.now();
  const rt0 = t.roundTrips();
  const storeDir = opts.storeDir;
  // this run's writers carry the token: "have" may stop them after a drop, and never anyone else's
  const token = randomBytes(8).toString('hex');
  const fixedChunk = opts.chunkBytes ? Math.max(64 * 1024, opts.chunkBytes) : undefined;
  const maxWindow = { value: 0 };
  const streams = Math.max(1, opts.streams ?? 2);
  const limiter = opts.maxRate && opts.maxRate > 0 ? new RateLimiter(opts.maxRate) : undefined;

  const blobs = await readWants(wants);
  const report: SyncReport = {
    wanted: blobs.size,
    alreadyPresent: 0,
    sentBlobs: 0,
    sentBytes: 0,
    resentBytes: 0,
    resumedBlobs: 0,
    roundTrips: 0,
    seconds: 0,
  };
  const sent = new Map<string, SentRanges>();
  const badCount = new Map<string, number>();
  const failed: Array<{ digest: string; got: string }> = [];
  const pending = new Set(blobs.keys());
  let progress: Progress | undefined;
  let stalledPasses = 0;
  let first = true;
  const resumed = new Set<string>();
  let busySince: { at: number; sizes: string } | undefined;

  while (pending.size) {
    opts.signal?.throwIfAborted();
    let state: StoreState;
    let first0: ExecStream;
    try {
      ({ state, stream: first0 } = await openWithHave(t, storeDir, token, [...pending]));
    } catch (e) {
      if (!isRetryable(e)) throw e;
      await t.waitForLink();
      continue;
    }
    for (const hex of [...pending]) {
      if (isStored(state, blobs.get(hex)!)) {
        pending.delete(hex);
        if (first) report.alreadyPresent++;
      }
    }
    const jobs = planJobs(pending, blobs, state);
    for (const j of jobs) if (j.offset > 0) resumed.add(j.blob.hex);
    const offsets = new Map(jobs.map((j) => [j.blob.hex, j.offset]));
    const need = [...pending].reduce((a, hex) => a + blobs.get(hex)!.size - (offsets.get(hex) ?? 0), 0);
    if (first) {
      progress = new Progress(need, opts.onProgress);
      first = false;
    }
    if (!pending.size || !jobs.length) await closeIdle(first0);
    if (!pending.size) break;
    if (state.freeBytes !== undefined && need > state.freeBytes) {
      first0.abort();
      throw new DiskFullError(
        t.name,
        storeDir,
        `${t.name}: not enough disk for the bundle: ${mib(need)} MiB still to store in ${storeDir}, ${mib(state.freeBytes)} MiB free. ` +
          `Free space on the POP (df -h ${storeDir}) or set a storeDir on a bigger filesystem; nothing was sent.`,
      );
    }
    if (!jobs.length) {
      // only blobs another writer holds are left: wait while it makes progress, give up when it stops
      const sizes = [...state.busy].map(([h, n]) => `${h}:${n}`).join(',');
      if (!busySince || busySince.sizes !== sizes) busySince = { at: Date.now(), sizes };
      if (Date.now() - busySince.at > BUSY_GIVE_UP_MS) {
        throw new BlobSyncError(
          `${t.name}: ${state.busy.size} blob(s) in ${storeDir} are held by another writer on the POP that made no progress in ` +
            `${BUSY_GIVE_UP_MS / 1000} s (${[...state.busy.keys()].map((h) => h.slice(0, 12)).join(', ')}): another run is syncing ` +
            `without the POP lock, or a writer hangs — find it with \`fuser ${storeDir}/lock/*\` and re-run when it is gone`,
        );
      }
      await sleep(1000);
      continue;
    }

    for (const r of sent.values()) {
      if (r.cur) r.prior.push(r.cur);
      r.cur = undefined;
    }
    const landedBefore = progress!.landed;
    const lanes = spreadOverStreams(jobs, streams);
    const ctx: StreamCtx = {
      name: t.name,
      storeDir,
      token,
      sudo: t.sudo,
      fixedChunk,
      maxWindow,
      limiter,
      progress: progress!,
      sent,
      report,
      signal: opts.signal,
      stallMs: opts.stallTimeoutMs ?? DEFAULT_STALL_MS,
    };
    const results = await Promise.allSettled(lanes.map((lane, i) => runStream(t.streamExec, lane, ctx, i === 0 ? first0 : undefined)));
    let lost = false;
    let busy = false;
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
        if (r.value.busy.length) busy = true;
      } else if (isRetryable(r.reason)) {
        lost = true;
      } else {
        throw r.reason;
      }
    }
    if (lost) {
      stalledPasses = progress!.landed > landedBefore ? 0 : stalledPasses + 1;
      if (stalledPasses >= 5) {
        throw new BlobSyncError(`${t.name}: blob sync made no progress in 5 reconnects; giving up (partials are kept for the next run)`);
      }
      await t.waitForLink();
    } else if (busy) {
      await sleep(1000);
    }
  }

  report.resumedBlobs = resumed.size;
  report.chunkBytes = maxWindow.value;
  report.roundTrips = t.roundTrips() - rt0;
  report.seconds = (Date.now() - t0) / 1000;
  if (failed.length) throw Object.assign(new BlobVerifyError(t.name, failed), { report });
  return report;
}
