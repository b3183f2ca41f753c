// The lock file beside a recipe. It records what every URL and image tag resolved to, so a second build of the
// same lock fetches the same bytes (and, from the cache, nothing at all). The recipe itself is loaded by
// config's `loadRecipe` (with file:line:column for every problem).
import fs from 'node:fs';
import YAML from 'yaml';
import { FsmEdgeError } from '../config/errors.js';
import type { BundleArch } from '../config/recipe.js';
import { writeFileAtomic } from './blob-file.js';

/** The recipe or its lock asks for something a build cannot do: the operator fixes the input (exit 2). */
export class RecipeError extends FsmEdgeError {
  constructor(message: string, fix = 'fix the recipe, then build again') {
    super('config', message, { fix });
    this.name = 'RecipeError';
  }
}

export interface LockedFile {
  digest: string;
  size: number;
}
export interface LockedPlatform {
  digest: string;
  size: number;
  mediaType: string;
}
export interface LockedImage {
  /** What the tag resolved to (index or manifest). */
  digest: string;
  platforms: Partial<Record<BundleArch, LockedPlatform>>;
}
export interface Lock {
  lockVersion: 1;
  files: Record<string, LockedFile>;
  images: Record<string, LockedImage>;
}

export const emptyLock = (): Lock => ({ lockVersion: 1, files: {}, images: {} });

export function readLock(file: string): Lock | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let doc: Lock | null;
  try {
    doc = YAML.parse(text) as Lock | null;
  } catch (e) {
    throw new RecipeError(`lock file ${file}: not valid YAML: ${(e as Error).message}`, 'delete it to resolve everything again');
  }
  if (!doc || doc.lockVersion !== 1 || typeof doc.files !== 'object' || typeof doc.images !== 'object')
    throw new RecipeError(`lock file ${file}: not an fsm-edge lock (lockVersion 1)`, 'delete it to resolve everything again');
  return { lockVersion: 1, files: doc.files ?? {}, images: doc.images ?? {} };
}

function sorted<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function serializeLock(lock: Lock): string {
  const doc = {
    lockVersion: 1,
    files: sorted(lock.files),
    images: sorted(
      Object.fromEntries(
        Object.entries(lock.images).map(([k, v]) => [
          k,
          { digest: v.digest, platforms: sorted(v.platforms as Record<string, LockedPlatform>) },
        ]),
      ),
    ),
  };
  return (
    '# Written by `fsm-edge bundle build`: every URL and image tag of the recipe beside it, resolved to a digest.\n' +
    '# Commit it. Delete an entry (or the file) to resolve it again.\n' +
    YAML.stringify(doc, { lineWidth: 0 })
  );
}

/** Writes the lock only when its content changed (so a rebuild leaves the file untouched). */
export function writeLock(file: string, lock: Lock): boolean {
  const text = serializeLock(lock);
  try {
    if (fs.readFileSync(file, 'utf8') === text) return false;
  } catch {
    /* new lock */
  }
  writeFileAtomic(file, text);
  return true;
}
