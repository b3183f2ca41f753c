// Blobs on disk: written through a hash as they stream in, renamed into place only when digest and size match.
// Nothing here holds a blob in memory.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export class DigestMismatchError extends Error {
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${what}: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
  }
}

export interface Written {
  digest: string;
  size: number;
}

/**
 * Streams `source` into `dest` (via `dest.partial`), hashing on the way. With `expect`, a wrong digest or size
 * fails and leaves nothing at `dest`.
 */
export async function writeVerified(
  source: Readable | AsyncIterable<Uint8Array>,
  dest: string,
  what: string,
  expect: { digest?: string; size?: number } = {},
  onBytes?: (n: number) => void,
): Promise<Written> {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const partial = `${dest}.partial-${process.pid}`;
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      if (expect.size !== undefined && size > expect.size) {
        cb(new DigestMismatchError(`${what}: size`, `${expect.size} bytes`, `more than that`));
        return;
      }
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(source, tap, fs.createWriteStream(partial));
    const digest = `sha256:${hash.digest('hex')}`;
    if (expect.size !== undefined && size !== expect.size)
      throw new DigestMismatchError(`${what}: size`, `${expect.size} bytes`, `${size} bytes`);
    if (expect.digest && digest !== expect.digest) throw new DigestMismatchError(`${what}: sha256`, expect.digest, digest);
    fs.renameSync(partial, dest);
    return { digest, size };
  } catch (e) {
    fs.rmSync(partial, { force: true });
    throw e;
  }
}

export async function hashFile(file: string): Promise<Written> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

export function sha256Of(data: string | Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A blob present at `file` with this size (the digest was checked when it was written). */
export function hasBlob(file: string, size?: number): boolean {
  try {
    const st = fs.statSync(file);
    return st.isFile() && (size === undefined || st.size === size);
  } catch {
    return false;
  }
}

/** Copy (a reflink where the filesystem can) — never a hard link, so editing one copy cannot damage the other. */
export function copyBlob(src: string, dest: string): void {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.partial-${process.pid}`;
  fs.copyFileSync(src, tmp, fs.constants.COPYFILE_FICLONE);
  fs.renameSync(tmp, dest);
}

/** Writes small metadata atomically. */
export function writeFileAtomic(file: string, data: string | Buffer, mode?: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, mode === undefined ? undefined : { mode });
  fs.renameSync(tmp, file);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes leftovers of interrupted runs in `dir` — names `<anything><marker><pid>[-n]` (`.partial-123`,
 * `.building-123`, …) whose process is gone. A concurrent live run's files are left alone.
 */
export function removeStale(dir: string, markers: string[]): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names)
    for (const m of markers) {
      const i = n.lastIndexOf(m);
      if (i < 0) continue;
      const pid = Number(/^(\d+)/.exec(n.slice(i + m.length))?.[1]);
      if (pid && pid !== process.pid && !pidAlive(pid)) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
    }
}
