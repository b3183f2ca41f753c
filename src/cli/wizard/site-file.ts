// Writing site.yaml so that nothing is ever half-written: the text goes to a temporary file in the same
// directory (so relative paths in it mean the same) and is renamed over the target in one step. Temporary files
// are tracked so Ctrl-C or an error removes them.

import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

const pending = new Set<string>();

/** A temporary sibling of `file`: `.site.yaml.init-<pid>.yaml` (hidden, removed unless renamed into place). */
export function tempSiblingOf(file: string): string {
  return join(dirname(file), `.${basename(file)}.init-${process.pid}.yaml`);
}

/** Writes `text` to a temporary sibling of `file` (mode 0644, flushed to disk) and returns its path. */
export function writeTemp(file: string, text: string): string {
  const tmp = tempSiblingOf(file);
  pending.add(tmp);
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

/** Moves a temporary file written by writeTemp onto `file` (atomic on one filesystem). */
export function commitTemp(tmp: string, file: string): void {
  renameSync(tmp, file);
  pending.delete(tmp);
}

/** Removes every temporary file not committed yet (on Ctrl-C, errors and "discard"). Synchronous: safe in exit paths. */
export function discardPending(): void {
  for (const tmp of pending) rmSync(tmp, { force: true });
  pending.clear();
}
