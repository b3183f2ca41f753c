// After an install or upgrade has succeeded, the POP's blob store drops the blobs that neither the bundle it now
// runs nor the one it ran before uses: the previous bundle stays whole (going back sends nothing), anything
// older goes. The journal keeps each of those two bundles' blob lists; when the previous bundle's list is not
// known (a journal written by an older fsm-edge, or a lost one), nothing is deleted.

import { formatBytes } from '../bundle/inspect.js';
import { hexOf } from '../bundle/layout.js';
import type { Journal, JournalBundle } from '../engine/journal.js';
import { definePhase, type PlannedChange, shellChange } from '../engine/phase.js';
import { POP_STORE_DIR } from '../engine/pop-layout.js';
import { bundleOf, type InstallContext } from './context.js';
import { blobWants, parseStoreListing, STORE_PROBE } from './sync.js';

const HEX = /^[a-f0-9]{64}$/;

export interface PrunePlan {
  /** The bundle this POP ran before the current one, if the journal names it. */
  previous?: JournalBundle;
  /** Stored blobs to delete, with their sizes. */
  drop: Array<{ hex: string; size: number }>;
  /** Why nothing may be deleted (the previous bundle's blobs are not known). */
  unknown?: string;
}

/**
 * Pure: which stored blobs go. `journal` is the POP's journal as this run read it (before this run's success
 * names the new bundle); `current` the blob hex digests of the bundle being installed.
 */
export function planPrune(
  journal: Journal | undefined,
  currentDigest: string,
  current: readonly string[],
  stored: ReadonlyMap<string, number>,
): PrunePlan {
  const installed = journal?.bundle;
  // A fresh POP holds only this bundle's blobs; a POP whose journal was lost may hold more: keep them.
  if (!installed) return { drop: [] };
  const previous = installed.digest !== currentDigest ? installed : journal.previousBundle;
  const keep = new Set(current);
  if (previous) {
    const blobs = journal.bundleBlobs?.[previous.digest];
    if (!blobs) return { previous, drop: [], unknown: `the blobs of the previous bundle ${previous.name} are not recorded` };
    for (const b of blobs) keep.add(b);
  }
  const drop = [...stored]
    .filter(([hex]) => HEX.test(hex) && !keep.has(hex))
    .map(([hex, size]) => ({ hex, size }))
    .sort((a, b) => (a.hex < b.hex ? -1 : 1));
  return { ...(previous ? { previous } : {}), drop };
}

/** Records, in the journal this run will write, the blobs of the bundle installed now and of the previous one. */
export function recordBundleBlobs(journal: Journal, currentDigest: string, current: readonly string[]): void {
  const installed = journal.bundle;
  if (installed && installed.digest !== currentDigest) journal.previousBundle = installed;
  const previous = journal.previousBundle;
  const kept = previous ? journal.bundleBlobs?.[previous.digest] : undefined;
  journal.bundleBlobs = { ...(previous && kept ? { [previous.digest]: kept } : {}), [currentDigest]: [...current].sort() };
}

/** Deletes store blobs by name; only 64-hex names (they came from our own listing) ever reach the command. */
export function pruneScript(hexes: readonly string[], storeDir = POP_STORE_DIR): string {
  for (const h of hexes) if (!HEX.test(h)) throw new Error(`internal: refusing to delete store entry ${JSON.stringify(h)}`);
  const lines = [`cd ${storeDir}/sha256`];
  for (let i = 0; i < hexes.length; i += 50) lines.push(`rm -f -- ${hexes.slice(i, i + 50).join(' ')}`);
  return lines.join('\n');
}

interface PruneLive {
  current: string[];
  plan: PrunePlan;
}

const bytesOf = (p: PrunePlan) => p.drop.reduce((n, d) => n + d.size, 0);

export const prunePhase = definePhase<InstallContext, undefined, PruneLive>({
  id: 'prune',
  title: 'drop blobs no kept bundle uses',
  // As cheap as its check (a section of the probe), and it keeps the journal's blob lists current.
  always: true,
  probe: () => STORE_PROBE,
  check(ctx, _prep, env) {
    const current = blobWants(ctx).map((w) => hexOf(w.digest));
    return { current, plan: planPrune(ctx.journal, bundleOf(ctx).digest, current, parseStoreListing(env.probe)) };
  },
  plan(_ctx, _prep, live) {
    const { drop } = live.plan;
    if (!drop.length) return [];
    const changes: PlannedChange[] = [
      shellChange(
        `delete ${drop.length} blob(s) (${formatBytes(bytesOf(live.plan))}) neither this bundle nor ${live.plan.previous?.name ?? 'an earlier one'} uses`,
        pruneScript(drop.map((d) => d.hex)),
      ),
    ];
    return changes;
  },
  describe: (_ctx, _prep, live, changes, dryRun) => ({ summary: pruneSummary(live, changes, dryRun) }),
  async settle(ctx, _prep, live, _env, applied) {
    if (ctx.journal) recordBundleBlobs(ctx.journal, bundleOf(ctx).digest, live.current);
    const n = applied.length ? live.plan.drop.length : 0;
    return {
      summary: pruneSummary(live, applied, false),
      metrics: { blobsPruned: n, bytesPruned: n ? bytesOf(live.plan) : 0 },
    };
  },
});

function pruneSummary(live: PruneLive, changes: readonly string[], dryRun: boolean): string {
  if (changes.length) return `${dryRun ? 'would delete' : 'deleted'} ${live.plan.drop.length} blob(s), ${formatBytes(bytesOf(live.plan))}`;
  if (live.plan.unknown) return `nothing deleted: ${live.plan.unknown}`;
  return 'no blob to delete';
}
