import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** temp file + rename in the same directory: readers see the old or the new file, never half of one. */
export function writeAtomic(file: string, data: string | Buffer, mode: number): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp.${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}
