// Moving a bundle on removable media: one `.tar`, or parts of at most N bytes each (FAT32 holds files up to
// 4 GiB - 1), plus a `sha256sum`-format file so each part can be checked where it lands. Import joins the parts,
// checks them, and unpacks; `verifyBundle` then checks the signature and every blob.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { hashFile } from './blob-file.js';
import { readBundleDoc } from './format.js';
import { BUNDLE_FILE, INDEX_FILE, OCI_LAYOUT_FILE, SIGNATURE_FILE } from './layout.js';

export const FAT32_MAX_FILE = 4 * 1024 ** 3 - 1;

export class ExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExportError';
  }
}

/** `4G`, `3900M`, `650MiB`, `1000000` → bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new ExportError(`size "${s}": use a number of bytes or a suffix K, M, G (e.g. 4G, 650M)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

export interface ExportResult {
  files: Array<{ path: string; size: number; digest: string }>;
  checksumFile: string;
  bytes: number;
}

const partName = (out: string, i: number) => `${out}.${String(i).padStart(3, '0')}`;
export const checksumFileFor = (out: string) => `${out}.sha256`;

/** Writes `out` (or `out.000`, `out.001`, … when `partSize` is given) from the bundle directory. */
export async function exportBundle(dir: string, out: string, opts: { partSize?: number } = {}): Promise<ExportResult> {
  readBundleDoc(dir); // fails early on a non-bundle
  if (opts.partSize !== undefined && opts.partSize < 4096) throw new ExportError(`part size ${opts.partSize} is below 4 KiB`);
  const blobs = fs
    .readdirSync(path.join(dir, 'blobs', 'sha256'))
    .filter((n) => /^[a-f0-9]{64}$/.test(n))
    .sort();
  const entries = [OCI_LAYOUT_FILE, INDEX_FILE, BUNDLE_FILE, SIGNATURE_FILE, ...blobs.map((b) => `blobs/sha256/${b}`)].filter((e) =>
    fs.existsSync(path.join(dir, e)),
  );
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  const sink = new PartWriter(out, opts.partSize);
  await pipeline(tar.c({ cwd: dir, portable: true, noDirRecurse: true }, entries) as unknown as NodeJS.ReadableStream, sink);
  const files = sink.files;
  const checksumFile = checksumFileFor(out);
  fs.writeFileSync(checksumFile, files.map((f) => `${f.digest.slice(7)}  ${path.basename(f.path)}\n`).join(''));
  return { files, checksumFile, bytes: files.reduce((n, f) => n + f.size, 0) };
}

/** A Writable that rolls over to a new part file every `partSize` bytes, hashing each part as it goes. */
class PartWriter extends Writable {
  readonly files: ExportResult['files'] = [];
  private fd: number | undefined;
  private written = 0;
  private hash = createHash('sha256');
  private index = 0;

  constructor(
    private readonly out: string,
    private readonly partSize?: number,
  ) {
    super();
  }

  private current(): string {
    return this.partSize === undefined ? this.out : partName(this.out, this.index);
  }

  private open(): void {
    this.fd = fs.openSync(this.current(), 'w');
    this.written = 0;
    this.hash = createHash('sha256');
  }

  private close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.files.push({ path: this.current(), size: this.written, digest: `sha256:${this.hash.digest('hex')}` });
    this.fd = undefined;
    this.index++;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    try {
      let off = 0;
      while (off < chunk.length) {
        if (this.fd === undefined) this.open();
        const room = this.partSize === undefined ? chunk.length - off : Math.min(chunk.length - off, this.partSize - this.written);
        const piece = chunk.subarray(off, off + room);
        fs.writeSync(this.fd!, piece);
        this.hash.update(piece);
        this.written += room;
        off += room;
        if (this.partSize !== undefined && this.written >= this.partSize) this.close();
      }
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _final(cb: (e?: Error | null) => void): void {
    try {
      if (this.fd === undefined && this.files.length === 0) this.open();
      this.close();
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }
}

/** The files of an export: `x.tar` itself, or `x.tar.000`, `x.tar.001`, … in order. */
export function exportParts(source: string): string[] {
  if (fs.existsSync(source) && fs.statSync(source).isFile()) return [source];
  const parts: string[] = [];
  for (let i = 0; fs.existsSync(partName(source, i)); i++) parts.push(partName(source, i));
  if (!parts.length) throw new ExportError(`${source}: neither the file nor its parts (${partName(source, 0)}, …) exist`);
  return parts;
}

const IMPORT_ENTRY = /^(oci-layout|index\.json|bundle\.json|bundle\.json\.sig|blobs\/?|blobs\/sha256\/?|blobs\/sha256\/[a-f0-9]{64})$/;

/** Checks each part against `<source>.sha256` (when present), then unpacks into `destDir` atomically. */
export async function importBundle(source: string, destDir: string): Promise<{ dir: string; parts: number }> {
  if (fs.existsSync(destDir)) throw new ExportError(`${destDir} exists; remove it or import elsewhere`);
  const parts = exportParts(source);
  const sums = checksumFileFor(source);
  if (fs.existsSync(sums)) {
    const want = new Map(
      fs
        .readFileSync(sums, 'utf8')
        .split('\n')
        .map((l) => /^([a-f0-9]{64})\s+\*?(.+)$/.exec(l.trim()))
        .filter((m): m is RegExpExecArray => !!m)
        .map((m) => [m[2]!, `sha256:${m[1]}`]),
    );
    if (want.size !== parts.length)
      throw new ExportError(`${sums} lists ${want.size} part(s) but ${parts.length} are present — a part is missing or extra`);
    for (const p of parts) {
      const w = want.get(path.basename(p));
      if (!w) throw new ExportError(`${p}: not listed in ${sums}`);
      if ((await hashFile(p)).digest !== w)
        throw new ExportError(`${p}: sha256 does not match ${sums} — the copy is damaged; copy it again`);
    }
  }
  const staging = `${destDir}.importing-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  const joined = new PassThrough();
  const feed = (async () => {
    for (const p of parts) await pipeline(fs.createReadStream(p), joined, { end: false });
    joined.end();
  })();
  try {
    // Only the bundle's own files, as plain files and directories: no links, devices or paths elsewhere.
    const unexpected: string[] = [];
    const filter = (p: string, entry: unknown) => {
      const type = (entry as { type?: string }).type;
      const ok = IMPORT_ENTRY.test(p.replace(/^\.\//, '')) && (type === 'File' || type === 'Directory' || type === 'OldFile');
      if (!ok) unexpected.push(`${p} (${type ?? '?'})`);
      return ok;
    };
    await Promise.all([feed, pipeline(joined, tar.x({ cwd: staging, strict: true, filter }) as unknown as NodeJS.WritableStream)]);
    if (unexpected.length)
      throw new ExportError(`${source} holds entries a bundle never has: ${unexpected.slice(0, 5).join(', ')} — not imported`);
    readBundleDoc(staging);
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw e instanceof ExportError ? e : new ExportError(`import of ${source} failed: ${(e as Error).message}`);
  }
  fs.mkdirSync(path.dirname(path.resolve(destDir)), { recursive: true });
  fs.renameSync(staging, destDir);
  return { dir: destDir, parts: parts.length };
}
