// The rollout plan, computed from the Fleet's policy before anything connects: the canary wave first, then the
// waves (after Ansible's `serial`, whose last size repeats), each with its failure budget. Pure: the same fleet
// and policy always give the same waves, so a resumed rollout walks the same waves as the one it continues.

import { UsageError } from '../config/errors.js';
import type { RolloutPolicy, SiteCount } from '../config/fleet.js';

export interface PlannedSite {
  name: string;
  labels?: Record<string, string>;
}

export interface Wave {
  /** `canary`, `wave 1`, `wave 2`, … */
  name: string;
  canary: boolean;
  sites: string[];
  /** Failed sites this wave tolerates before no new site of it starts (the canary: 0). */
  maxFailures: number;
}

export interface RolloutPlan {
  waves: Wave[];
  parallel: number;
  /** Failed sites the whole rollout tolerates. */
  maxFailures: number;
  soakSeconds: number;
}

/** A count, or a percentage of `of` rounded up (a wave of "10%" of 3 sites is 1 site, never 0). */
export function waveSize(size: SiteCount, of: number): number {
  if (typeof size === 'number') return size;
  return Math.ceil((parsePercent(size) * of) / 100);
}

/** A failure budget: a count, or a percentage of `of` rounded down ("10%" of 5 sites tolerates 0 failures). */
export function failureBudget(budget: SiteCount, of: number): number {
  if (typeof budget === 'number') return budget;
  return Math.floor((parsePercent(budget) * of) / 100);
}

function parsePercent(s: string): number {
  const n = Number(s.replace(/%$/, ''));
  if (!s.endsWith('%') || !Number.isFinite(n) || n < 0 || n > 100)
    throw new UsageError(`rollout: "${s}" is neither a count nor a percentage`);
  return n;
}

const matches = (site: PlannedSite, labels: Record<string, string>) => Object.entries(labels).every(([k, v]) => site.labels?.[k] === v);

export function planRollout(sites: readonly PlannedSite[], policy: RolloutPolicy): RolloutPlan {
  const waves: Wave[] = [];
  let rest = [...sites];
  if (policy.canary !== undefined) {
    const canary =
      typeof policy.canary === 'number'
        ? rest.slice(0, policy.canary)
        : rest.filter((s) => matches(s, (policy.canary as { matchLabels: Record<string, string> }).matchLabels));
    if (canary.length === 0) {
      const labels = Object.entries((policy.canary as { matchLabels: Record<string, string> }).matchLabels).map(([k, v]) => `${k}=${v}`);
      throw new UsageError(
        `rollout.canary selects no site (matchLabels ${labels.join(', ')})`,
        'label the canary sites in the fleet, or give the canary as a count',
      );
    }
    waves.push({ name: 'canary', canary: true, sites: canary.map((s) => s.name), maxFailures: 0 });
    const chosen = new Set(canary.map((s) => s.name));
    rest = rest.filter((s) => !chosen.has(s.name));
  }
  const sizes = policy.waves ?? [rest.length];
  const remaining = rest.length;
  for (let i = 0; rest.length > 0; i++) {
    const size = Math.max(1, waveSize(sizes[Math.min(i, sizes.length - 1)]!, remaining));
    const sitesOfWave = rest.slice(0, size).map((s) => s.name);
    rest = rest.slice(size);
    const perWave =
      policy.maxFailuresPerWave === undefined ? sitesOfWave.length : failureBudget(policy.maxFailuresPerWave, sitesOfWave.length);
    waves.push({ name: `wave ${i + 1}`, canary: false, sites: sitesOfWave, maxFailures: perWave });
  }
  return { waves, parallel: policy.parallel, maxFailures: failureBudget(policy.maxFailures, sites.length), soakSeconds: policy.soak ?? 0 };
}
