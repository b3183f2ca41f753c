// `--shard i/n`: one controller's share of a fleet, so n controllers (the pods of an Indexed Job) roll it out
// together without talking to each other. The share is decided by the site's name alone, by rendezvous
// (highest-random-weight) hashing: site s belongs to the shard i whose sha256("i/s") is highest. So
//   - every controller computes the same split from the same names, in any order, with no coordination;
//   - adding or removing a site moves no other site (a name's shard never depends on the other names);
//   - going from n to n+1 shards moves only the ~1/(n+1) of sites the new shard wins (with `hash mod n`
//     almost every site would change shard, and a resumed rollout would find its sites on other controllers).

import { createHash } from 'node:crypto';
import { UsageError } from '../config/errors.js';

export interface Shard {
  index: number;
  count: number;
}

export const MAX_SHARDS = 1000;

/** `2/8` → {index 2, count 8}; the index counts from 0 (JOB_COMPLETION_INDEX does). */
export function parseShard(text: string): Shard {
  const m = /^(\d{1,4})\/(\d{1,4})$/.exec(text.trim());
  const index = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (!m || count < 1 || count > MAX_SHARDS || index >= count) {
    throw new UsageError(
      `--shard ${text}: expected i/n with 0 ≤ i < n ≤ ${MAX_SHARDS}, e.g. 0/4`,
      'shards count from 0: --shard 0/4 … --shard 3/4 together cover the fleet',
    );
  }
  return { index, count };
}

function weight(index: number, site: string): bigint {
  return createHash('sha256').update(`${index}/${site}`).digest().readBigUInt64BE(0);
}

/** The shard (0 ≤ i < count) a site belongs to. */
export function shardOf(site: string, count: number): number {
  let best = 0;
  let bestWeight = -1n;
  for (let i = 0; i < count; i++) {
    const w = weight(i, site);
    if (w > bestWeight) {
      best = i;
      bestWeight = w;
    }
  }
  return best;
}

export function inShard(site: string, shard: Shard): boolean {
  return shardOf(site, shard.count) === shard.index;
}

export const shardLabel = (s: Shard) => `${s.index}/${s.count}`;
