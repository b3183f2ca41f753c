// What every step of `bundle build` shares: the options, the recipe, the lock being updated, the cache, the clients.
import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import pLimit from 'p-limit';
import type { BundleArch, Mirror, RecipeSpec } from '../config/recipe.js';
import { loadRecipe } from '../config/load.js';
import { removeStale } from './blob-file.js';
import { cacheDir as defaultCacheDir, defaultBundleDir, lockPathFor } from './layout.js';
import { emptyLock, readLock, RecipeError, type Lock } from './lock-file.js';
import { OciClient } from './oci-client.js';
import { ReleaseFiles } from './release-files.js';

export type BuildEvent =
  | { type: 'file'; label: string; state: 'cached' | 'downloaded'; size: number }
  | { type: 'resolved'; images: number; arches: BundleArch[] }
  | { type: 'plan'; missingBlobs: number; missingBytes: number }
  | { type: 'progress'; bytes: number; totalBytes: number }
  | { type: 'written'; dir: string; blobs: number; bytes: number };

export interface BuildOptions {
  recipePath: string;
  /** Default: beside the recipe (`recipe.lock.yaml`). */
  lockPath?: string;
  /** Default: airgap/bundles/<recipe name>. */
  outDir?: string;
  /** Default: airgap/cache. */
  cacheDir?: string;
  /** Default: every arch the recipe names. */
  arches?: BundleArch[];
  signingKey: KeyObject;
  /** Added to (and overriding) the recipe's mirrors. Mirrors change where bytes come from, never the bundle. */
  mirrors?: Record<string, Mirror>;
  /** Fail instead of resolving anything the lock does not pin. */
  frozen?: boolean;
  /** No network at all: the cache and the lock must hold everything. */
  offline?: boolean;
  concurrency?: number;
  /** Directory of the POP-side files (default: this repository's bundle/pop). */
  popDir?: string;
  fetchImpl?: typeof fetch;
  onEvent?: (e: BuildEvent) => void;
}

export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

export interface BuildContext {
  opts: BuildOptions;
  recipeName: string;
  spec: RecipeSpec;
  lockPath: string;
  /** The lock as this build leaves it: pins are added as things resolve, stale ones dropped at the end. */
  lock: Lock;
  cache: string;
  outDir: string;
  arches: BundleArch[];
  /** Nothing may be resolved that the lock does not pin (--frozen, or --offline). */
  frozen: boolean;
  emit: (e: BuildEvent) => void;
  files: ReleaseFiles;
  client: OciClient;
  /** Bounds concurrent blob downloads. */
  limit: ReturnType<typeof pLimit>;
}

export function startBuild(opts: BuildOptions): BuildContext {
  const loaded = loadRecipe(opts.recipePath);
  const spec = loaded.spec;
  const lockPath = opts.lockPath ?? lockPathFor(opts.recipePath);
  const oldLock = readLock(lockPath);
  const cache = opts.cacheDir ?? defaultCacheDir();
  const outDir = opts.outDir ?? defaultBundleDir(loaded.metadata.name);
  const arches = opts.arches ?? (Object.keys(spec.arches) as BundleArch[]);
  for (const a of arches)
    if (!spec.arches[a])
      throw new RecipeError(`${opts.recipePath}: arch ${a} is not in spec.arches (${Object.keys(spec.arches).join(', ')})`);

  // Leftovers of interrupted builds (partial downloads, half-written bundle directories) of dead processes.
  removeStale(path.join(cache, 'blobs', 'sha256'), ['.partial-', '.download-', '.tmp-']);
  removeStale(path.dirname(path.resolve(outDir)), ['.building-', '.old-', '.importing-']);
  return {
    opts,
    recipeName: loaded.metadata.name,
    spec,
    lockPath,
    lock: oldLock ? structuredClone(oldLock) : emptyLock(),
    cache,
    outDir,
    arches,
    frozen: Boolean(opts.frozen || opts.offline),
    emit: opts.onEvent ?? (() => {}),
    files: new ReleaseFiles({ cache, fetchImpl: opts.fetchImpl, offline: opts.offline }),
    client: new OciClient({ mirrors: { ...spec.mirrors, ...opts.mirrors }, fetchImpl: opts.fetchImpl, credentials: registryCredentials }),
    limit: pLimit(opts.concurrency ?? 4),
  };
}

/** Registry credentials from the environment: FSM_EDGE_REGISTRY_<HOST>_USER / _PASSWORD (host upper-cased, non-alnum → _). */
function registryCredentials(registry: string): { username: string; password: string } | undefined {
  const key = registry.toUpperCase().replace(/[^A-Z0-9]/g, '_');
  const username = process.env[`FSM_EDGE_REGISTRY_${key}_USER`];
  const password = process.env[`FSM_EDGE_REGISTRY_${key}_PASSWORD`];
  return username && password ? { username, password } : undefined;
}
