// Reading a Recipe document and its lock file. The lock records what every URL and image tag resolved to,
// so a second build of the same lock fetches the same bytes (and, from the cache, nothing at all).
import fs from 'node:fs';
import YAML from 'yaml';
import { RecipeSpecSchema, type BundleArch, type RecipeSpec } from '../config/recipe.js';
import { writeFileAtomic } from './blob-file.js';

export const API_VERSION = 'edge.flomesh.io/v1alpha1';

export class RecipeError extends Error {
  constructor(
    message: string,
    readonly issues: string[] = [],
  ) {
    super(issues.length ? `${message}\n  ${issues.join('\n  ')}` : message);
    this.name = 'RecipeError';
  }
}

export interface LoadedRecipe {
  path: string;
  name: string;
  spec: RecipeSpec;
}

export function loadRecipe(file: string): LoadedRecipe {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new RecipeError(`recipe ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message}`);
  }
  return parseRecipe(text, file);
}

export function parseRecipe(text: string, file = '<recipe>'): LoadedRecipe {
  let doc: { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown }; spec?: unknown };
  try {
    doc = YAML.parse(text) as typeof doc;
  } catch (e) {
    throw new RecipeError(`recipe ${file}: not valid YAML: ${(e as Error).message}`);
  }
  if (!doc || doc.kind !== 'Recipe' || doc.apiVersion !== API_VERSION)
    throw new RecipeError(`${file}: expected apiVersion ${API_VERSION}, kind Recipe (got ${String(doc?.apiVersion)}, ${String(doc?.kind)})`);
  const name = doc.metadata?.name;
  if (typeof name !== 'string' || !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(name))
    throw new RecipeError(`${file}: metadata.name must be a lowercase name (letters, digits, '-', '.')`);
  const parsed = RecipeSpecSchema.safeParse(doc.spec);
  if (!parsed.success)
    throw new RecipeError(
      `${file}: invalid Recipe`,
      parsed.error.issues.map((i) => `spec.${i.path.map(String).join('.')}: ${i.message}`),
    );
  return { path: file, name, spec: parsed.data };
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
  const doc = YAML.parse(text) as Lock | null;
  if (!doc || doc.lockVersion !== 1 || typeof doc.files !== 'object' || typeof doc.images !== 'object')
    throw new RecipeError(`lock file ${file}: not an fsm-edge lock (lockVersion 1); delete it to resolve everything again`);
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
      Object.fromEntries(Object.entries(lock.images).map(([k, v]) => [k, { digest: v.digest, platforms: sorted(v.platforms as Record<string, LockedPlatform>) }])),
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
