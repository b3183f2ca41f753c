import { describe, expect, it } from 'vitest';
import { inShard, parseShard, shardOf } from '../../src/rollout/shard.js';

const sites = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `pop-${from + i}`);

describe('--shard i/n', () => {
  it('parses i/n counting from 0, and refuses what is not a share', () => {
    expect(parseShard('0/4')).toEqual({ index: 0, count: 4 });
    expect(parseShard('3/4')).toEqual({ index: 3, count: 4 });
    for (const bad of ['4/4', '1/0', '-1/4', 'a/b', '1', '1/4/2', '0/1001']) expect(() => parseShard(bad), bad).toThrow(/expected i\/n/);
  });

  it('puts every site in exactly one shard, and the shards are of similar size', () => {
    const all = sites(2000);
    const n = 4;
    const shares = Array.from({ length: n }, (_, i) => all.filter((s) => inShard(s, { index: i, count: n })));
    expect(shares.flat().sort()).toEqual([...all].sort());
    for (const share of shares) expect(share.length).toBeGreaterThan(2000 / n / 1.3);
  });

  it('is stable when sites are added: no existing site changes shard', () => {
    const before = new Map(sites(500).map((s) => [s, shardOf(s, 5)]));
    const after = new Map(sites(800).map((s) => [s, shardOf(s, 5)]));
    for (const [s, i] of before) expect(after.get(s)).toBe(i);
  });

  it('moves only the sites the new shard wins when a shard is added (hash mod n would move most)', () => {
    const all = sites(3000);
    const moved = all.filter((s) => shardOf(s, 6) !== shardOf(s, 5));
    for (const s of moved) expect(shardOf(s, 6)).toBe(5);
    expect(moved.length).toBeLessThan((3000 / 6) * 1.3);
  });
});
