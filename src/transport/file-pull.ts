// Pulls one file from a host to the controller, resumable and verified like the push: the host sends the file
// as framed chunks (`C <offset> <length> <sha256>` + bytes) in ONE command; each chunk is checked against its
// digest before it is kept, so a cut link costs at most the chunk in flight, and the next attempt (this run's
// retry or a later run) continues from what was kept. The whole file is checked against its known digest at the
// end. With a `sealKey`, what is kept on the controller's disk is AES-256-CTR ciphertext (the caller keeps the
// key elsewhere — for backups, on the POP), so a pull of secrets never leaves plaintext on the controller.

import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Host } from './host.js';

export interface PullOptions {
  /** Absolute path on the host; only `[A-Za-z0-9._/-]` characters (it goes into a command line). */
  remotePath: string;
  /** Size and sha256 (hex) the host reported for the file: what the pulled bytes must match. */
  size: number;
  sha256: string;
  /** Where the partial is kept on the controller between attempts and runs (created 0600, its dir 0700). */
  partialPath: string;
  /** 32 bytes: keep the partial encrypted (AES-256-CTR, the counter from the byte offset). */
  sealKey?: Buffer;
  /** Bytes per verified chunk: the most a cut can cost. Default 1 MiB. */
  chunkBytes?: number;
  sudo?: boolean;
  /** Attempts in a row without progress before giving up (the partial stays for the next run). Default 4. */
  attempts?: number;
  /** Bound of one attempt's command. Default: 10 min + 1 s per 64 KiB. */
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?(p: { receivedBytes: number; totalBytes: number }): void;
  /** A line per retry (no secrets: offsets and error messages). */
  onLog?(line: string): void;
}

export interface PullReport {
  bytes: number;
  /** Where this call started (bytes already kept from an earlier attempt or run). */
  resumedFrom: number;
  /** Payload bytes received in this call, including those discarded. */
  receivedBytes: number;
  /** Bytes received but discarded (a chunk cut short or failing its digest): what cuts cost. */
  resentBytes: number;
  attempts: number;
  chunkBytes: number;
  seconds: number;
}

export class PullError extends Error {
  constructor(
    message: string,
    readonly keptBytes: number,
  ) {
    super(message);
    this.name = 'PullError';
  }
}

const SAFE_PATH = /^\/[A-Za-z0-9._/-]+$/;

/** The host-side sender: frames [offset, size) in chunks, each with its sha256. */
export function pullScript(remotePath: string, offset: number, chunk: number): string {
  if (!SAFE_PATH.test(remotePath) || remotePath.split('/').includes('..')) throw new Error(`pull: unsafe remote path ${remotePath}`);
  return `f='${remotePath}'; off=${offset}; c=${chunk}
[ -f "$f" ] || { echo "no such file: $f" >&2; exit 2; }
size=$(wc -c < "$f" | tr -d ' ')
while [ "$off" -lt "$size" ]; do
  n=$c; r=$((size - off)); [ "$r" -lt "$n" ] && n=$r
  h=$(tail -c +$((off + 1)) "$f" | head -c "$n" | sha256sum | cut -d' ' -f1)
  printf 'C %s %s %s\\n' "$off" "$n" "$h"
  tail -c +$((off + 1)) "$f" | head -c "$n"
  off=$((off + n))
done
printf 'E %s\\n' "$size"`;
}

/** AES-256-CTR over [offset, offset+len): the same function encrypts and decrypts. */
function ctr(key: Buffer, offset: number, data: Buffer): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor(offset / 16)), 8);
  const c = createCipheriv('aes-256-ctr', key, iv);
  const skip = offset % 16;
  if (skip) c.update(Buffer.alloc(skip));
  return Buffer.concat([c.update(data), c.final()]);
}

/** Parses framed output as it arrives; hands each verified chunk over, counts what it had to drop. */
class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private frame: { off: number; len: number; sha: string } | undefined;
  ended = false;
  error: Error | undefined;
  constructor(
    private expectOffset: number,
    private readonly keep: (off: number, data: Buffer) => void,
  ) {}

  /** Bytes of the frame in flight (lost if the stream stops now). */
  get pending(): number {
    return this.frame ? this.buf.length : 0;
  }

  push(d: Buffer): void {
    if (this.error || this.ended) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    try {
      this.drain();
    } catch (e) {
      this.error = e as Error;
    }
  }

  private drain(): void {
    for (;;) {
      if (!this.frame) {
        const nl = this.buf.indexOf(0x0a);
        if (nl < 0) {
          if (this.buf.length > 256) throw new Error('pull: the sender sent an unframed line');
          return;
        }
        const line = this.buf.subarray(0, nl).toString('latin1');
        this.buf = this.buf.subarray(nl + 1);
        const c = /^C (\d+) (\d+) ([0-9a-f]{64})$/.exec(line);
        const e = /^E (\d+)$/.exec(line);
        if (e) {
          this.ended = true;
          return;
        }
        if (!c) throw new Error(`pull: unexpected line from the sender: ${line.slice(0, 80)}`);
        const off = Number(c[1]);
        if (off !== this.expectOffset) throw new Error(`pull: chunk at ${off}, expected ${this.expectOffset}`);
        this.frame = { off, len: Number(c[2]), sha: c[3]! };
      }
      if (this.buf.length < this.frame.len) return;
      const data = Buffer.from(this.buf.subarray(0, this.frame.len));
      this.buf = this.buf.subarray(this.frame.len);
      const got = createHash('sha256').update(data).digest('hex');
      if (got !== this.frame.sha) throw new Error(`pull: chunk at ${this.frame.off} failed its digest check`);
      this.keep(this.frame.off, data);
      this.expectOffset += data.length;
      this.frame = undefined;
    }
  }
}

/**
 * Pulls `remotePath` into memory (verified), resuming from `partialPath` when an earlier attempt or run kept a
 * prefix. The partial is removed once the whole file verified; on failure it stays (PullError says how much).
 */
export async function pullFile(host: Host, o: PullOptions): Promise<{ data: Buffer; report: PullReport }> {
  const t0 = Date.now();
  const chunk = Math.max(4096, o.chunkBytes ?? 1024 * 1024);
  if (o.sealKey && o.sealKey.length !== 32) throw new Error('pull: sealKey must be 32 bytes');
  fs.mkdirSync(path.dirname(o.partialPath), { recursive: true, mode: 0o700 });
  let kept = 0;
  try {
    kept = fs.statSync(o.partialPath).size;
  } catch {
    /* none yet */
  }
  if (kept > o.size) {
    fs.rmSync(o.partialPath, { force: true });
    kept = 0;
  }
  const resumedFrom = kept;
  let received = 0;
  let resent = 0;
  let attempts = 0;
  let idle = 0;
  const fd = fs.openSync(o.partialPath, fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o600);
  try {
    fs.ftruncateSync(fd, kept);
    while (kept < o.size) {
      o.signal?.throwIfAborted();
      attempts++;
      const before = kept;
      const reader = new FrameReader(kept, (off, data) => {
        fs.writeSync(fd, o.sealKey ? ctr(o.sealKey, off, data) : data, 0, data.length, off);
        kept = off + data.length;
        o.onProgress?.({ receivedBytes: kept, totalBytes: o.size });
      });
      let failure: Error | undefined;
      try {
        const r = await host.exec(pullScript(o.remotePath, kept, chunk), {
          ...(o.sudo !== undefined ? { sudo: o.sudo } : {}),
          timeoutMs: o.timeoutMs ?? 600_000 + Math.ceil((o.size - kept) / 65536) * 1000,
          onStdout: (d) => {
            received += d.length;
            reader.push(d);
          },
        });
        if (reader.error) failure = reader.error;
        else if (r.code !== 0) failure = new Error(`pull: the sender exited ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`);
        else if (!reader.ended) failure = new Error('pull: the sender stopped before the end marker');
      } catch (e) {
        failure = e as Error;
      }
      resent += reader.pending;
      fs.fsyncSync(fd);
      if (!failure) break;
      if (/failed its digest|unexpected line|unframed|expected \d+$|no such file/.test(failure.message) && kept === before) {
        // the host's file is not what it was (or the stream is garbage): retrying the same bytes cannot help
        throw new PullError(`${host.name}: ${o.remotePath}: ${failure.message}`, kept);
      }
      idle = kept > before ? 0 : idle + 1;
      if (idle >= (o.attempts ?? 4)) {
        throw new PullError(
          `${host.name}: pulling ${o.remotePath} stopped at ${kept} of ${o.size} bytes: ${failure.message}; run it again to resume`,
          kept,
        );
      }
      o.onLog?.(`pull: ${host.name}: ${o.remotePath}: ${failure.message}; resuming from byte ${kept}`);
    }
  } finally {
    fs.closeSync(fd);
  }
  const stored = fs.readFileSync(o.partialPath);
  const data = o.sealKey ? ctr(o.sealKey, 0, stored) : stored;
  const digest = createHash('sha256').update(data).digest('hex');
  fs.rmSync(o.partialPath, { force: true });
  if (data.length !== o.size || digest !== o.sha256) {
    throw new PullError(
      `${host.name}: ${o.remotePath}: the pulled file does not match its digest (${data.length} bytes); pulled again next run`,
      0,
    );
  }
  return {
    data,
    report: {
      bytes: data.length,
      resumedFrom,
      receivedBytes: received,
      resentBytes: resent,
      attempts,
      chunkBytes: chunk,
      seconds: (Date.now() - t0) / 1000,
    },
  };
}
