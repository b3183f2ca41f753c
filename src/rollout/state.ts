// The controller's rollout state: which site of a rollout is done, running or failed, written after each site
// so a controller killed mid-wave can `--resume`. It is a cache: when it is lost, the POP journals are asked
// again (see run.ts). One rollout is one fleet and one bundle: `<state>/rollouts/<fleet>-<digest12>.json`,
// its reports beside it in `<fleet>-<digest12>/`.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeAtomic } from '../state/write-atomic.js';
import type { SiteOutcome } from './outcome.js';

export interface RolloutState {
  version: 1;
  fleet: string;
  id: string;
  bundleDigest: string;
  startedAt: string;
  updatedAt: string;
  /** The last known outcome of each site; `running` while a site is in flight. */
  sites: Record<string, SiteOutcome | { site: string; wave: string; status: 'running'; startedAt: string }>;
}

/**
 * `<fleet>-<first 12 hex of the bundle digest>`, and `-s<i>of<n>` for a shard (shards sharing one state volume
 * keep apart): names a file, so only safe characters.
 */
export function rolloutId(fleet: string, bundleDigest: string, shard?: { index: number; count: number }): string {
  const hex = /^sha256:([0-9a-f]{12})/.exec(bundleDigest)?.[1];
  const id = `${fleet}-${hex ?? 'nodigest'}${shard ? `-s${shard.index}of${shard.count}` : ''}`;
  if (!/^[a-z0-9][a-z0-9-]{0,80}$/.test(id)) throw new Error(`internal: rollout id ${JSON.stringify(id)} is not a safe file name`);
  return id;
}

export const rolloutsDir = (root: string) => path.join(root, 'rollouts');
export const rolloutStatePath = (root: string, id: string) => path.join(rolloutsDir(root), `${id}.json`);
export const rolloutReportDir = (root: string, id: string) => path.join(rolloutsDir(root), id);

const StateSchema = z.object({
  version: z.literal(1),
  fleet: z.string(),
  id: z.string(),
  bundleDigest: z.string(),
  startedAt: z.string(),
  updatedAt: z.string(),
  sites: z.record(z.string(), z.looseObject({ site: z.string(), wave: z.string(), status: z.string() })),
});

/** The saved state, or undefined when there is none or it cannot be read (then the POP journals decide). */
export function readRolloutState(root: string, id: string): { state?: RolloutState; warning?: string } {
  const file = rolloutStatePath(root, id);
  if (!existsSync(file)) return {};
  try {
    return { state: StateSchema.parse(JSON.parse(readFileSync(file, 'utf8'))) as RolloutState };
  } catch (e) {
    return { warning: `rollout state ${file} is unreadable (${(e as Error).message.split('\n')[0]}); asking the POP journals instead` };
  }
}

export function writeRolloutState(root: string, state: RolloutState): void {
  state.updatedAt = new Date().toISOString();
  writeAtomic(rolloutStatePath(root, state.id), JSON.stringify(state, null, 2) + '\n', 0o644);
}

/** Per site, the last rollout (by its state's update time) that the site took part in: for `fsm-edge status`. */
export function lastRollouts(root: string): Map<string, { id: string; status: string; at: string }> {
  const out = new Map<string, { id: string; status: string; at: string }>();
  let files: string[];
  try {
    files = readdirSync(rolloutsDir(root)).filter((f) => f.endsWith('.json'));
  } catch {
    return out;
  }
  const states = files
    .map((f) => readRolloutState(root, f.slice(0, -'.json'.length)).state)
    .filter((s): s is RolloutState => s !== undefined)
    .sort((a, b) => (a.updatedAt < b.updatedAt ? -1 : 1));
  for (const s of states) for (const o of Object.values(s.sites)) out.set(o.site, { id: s.id, status: o.status, at: s.updatedAt });
  return out;
}
