import { describe, expect, it } from 'vitest';
import { RolloutSchema } from '../../src/config/fleet.js';
import { failureBudget, planRollout, waveSize } from '../../src/rollout/plan.js';

const sites = (n: number, labels: (i: number) => Record<string, string> = () => ({})) =>
  Array.from({ length: n }, (_, i) => ({ name: `pop${i + 1}`, labels: labels(i + 1) }));
const policy = (p: unknown) => RolloutSchema.parse(p);
const shape = (plan: ReturnType<typeof planRollout>) => plan.waves.map((w) => [w.name, w.sites.join(','), w.maxFailures]);

describe('rollout plan', () => {
  it('puts every site in one wave when the policy names no canary and no waves', () => {
    const plan = planRollout(sites(3), policy({}));
    expect(shape(plan)).toEqual([['wave 1', 'pop1,pop2,pop3', 3]]);
    expect(plan).toMatchObject({ parallel: 4, maxFailures: 0, soakSeconds: 0 });
  });

  it('takes a canary by count first, then waves whose last size repeats', () => {
    const plan = planRollout(sites(8), policy({ canary: 1, waves: [2, 3] }));
    expect(shape(plan).map(([n, s]) => [n, s])).toEqual([
      ['canary', 'pop1'],
      ['wave 1', 'pop2,pop3'],
      ['wave 2', 'pop4,pop5,pop6'],
      ['wave 3', 'pop7,pop8'],
    ]);
    expect(plan.waves[0]!.canary).toBe(true);
    expect(plan.waves[0]!.maxFailures).toBe(0);
  });

  it('takes a canary by label selector, wherever those sites sit in the fleet', () => {
    const plan = planRollout(
      sites(5, (i): Record<string, string> => (i === 4 ? { arch: 'arm64', tier: 'canary' } : { arch: 'amd64' })),
      policy({ canary: { matchLabels: { tier: 'canary' } } }),
    );
    expect(shape(plan).map(([n, s]) => [n, s])).toEqual([
      ['canary', 'pop4'],
      ['wave 1', 'pop1,pop2,pop3,pop5'],
    ]);
  });

  it('refuses a canary selector that selects nothing (a typo must not skip the canary)', () => {
    expect(() => planRollout(sites(3), policy({ canary: { matchLabels: { tier: 'canry' } } }))).toThrow(
      /canary selects no site.*tier=canry/,
    );
  });

  it('sizes percentage waves from the sites after the canary, rounding up, never 0', () => {
    const plan = planRollout(sites(11), policy({ canary: 1, waves: ['25%', '50%'] }));
    // 10 sites after the canary: 25% → 3 (2.5 up), then 50% → 5 repeating: 5, then the 2 left.
    expect(plan.waves.map((w) => w.sites.length)).toEqual([1, 3, 5, 2]);
    expect(waveSize('1%', 3)).toBe(1);
    expect(planRollout(sites(3), policy({ waves: ['1%'] })).waves.map((w) => w.sites.length)).toEqual([1, 1, 1]);
  });

  it('computes failure budgets as counts or percentages rounded down, per wave and overall', () => {
    const plan = planRollout(sites(20), policy({ canary: 2, waves: [8, 10], maxFailures: '10%', maxFailuresPerWave: '25%' }));
    expect(plan.maxFailures).toBe(2); // 10% of 20
    expect(shape(plan).map(([n, , b]) => [n, b])).toEqual([
      ['canary', 0],
      ['wave 1', 2], // 25% of 8
      ['wave 2', 2], // 25% of 10, rounded down
    ]);
    expect(failureBudget('10%', 5)).toBe(0);
    expect(failureBudget(3, 5)).toBe(3);
    expect(planRollout(sites(4), policy({ maxFailures: 1, maxFailuresPerWave: 0, waves: [2] })).waves.map((w) => w.maxFailures)).toEqual([
      0, 0,
    ]);
  });

  it('keeps the schema additive: parallel and a count maxFailures parse as before; bad sizes are refused', () => {
    expect(policy({ parallel: 8, maxFailures: 1 })).toEqual({ parallel: 8, maxFailures: 1 });
    expect(RolloutSchema.safeParse({ waves: [0] }).success).toBe(false);
    expect(RolloutSchema.safeParse({ waves: ['150%'] }).success).toBe(false);
    expect(RolloutSchema.safeParse({ maxFailures: 'ten' }).success).toBe(false);
    expect(RolloutSchema.safeParse({ canary: { matchLabels: {} } }).success).toBe(false);
    expect(RolloutSchema.safeParse({ canary: 0 }).success).toBe(false);
    expect(RolloutSchema.safeParse({ soak: 30, canary: 2, waves: ['20%', 5] }).success).toBe(true);
  });
});
