// Rollback protection's building blocks: every bundle carries a build time and a serial that orders the bundles
// of one builder, `bundle inspect` shows them, and compareBundleAge tells older from newer.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nextBuild } from '../../src/bundle/build.js';
import { compareBuilds, compareBundleAge, parseBundleDoc } from '../../src/bundle/format.js';
import { inspectBundle, renderInspect } from '../../src/bundle/inspect.js';
import { writeSyntheticBundle } from './synthetic-bundle.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-age-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('build stamp', () => {
  it('serial follows the clock and stays strictly increasing for one cache when the clock steps back', () => {
    const cache = path.join(tmp, 'cache');
    const t0 = new Date('2026-03-01T10:00:00.000Z');
    const a = nextBuild(cache, t0);
    expect(a).toEqual({ createdAt: '2026-03-01T10:00:00.000Z', serial: t0.getTime() });
    const b = nextBuild(cache, new Date('2026-02-01T10:00:00.000Z'));
    expect(b.serial).toBe(a.serial + 1);
    expect(b.createdAt).toBe('2026-02-01T10:00:00.000Z');
    const c = nextBuild(cache, new Date('2026-04-01T10:00:00.000Z'));
    expect(c.serial).toBe(Date.parse('2026-04-01T10:00:00.000Z'));
    // Another cache is another builder: its own counter.
    expect(nextBuild(path.join(tmp, 'other'), t0).serial).toBe(t0.getTime());
  });

  it('compareBundleAge orders by serial: negative when a is older, 0 for the same build', () => {
    const older = writeSyntheticBundle(path.join(tmp, 'old'), { build: { createdAt: '2026-03-01T10:00:00.000Z', serial: 100 } }).doc;
    // A newer serial wins even with an earlier createdAt (a builder whose clock was set back).
    const newer = writeSyntheticBundle(path.join(tmp, 'new'), { build: { createdAt: '2026-02-01T10:00:00.000Z', serial: 101 } }).doc;
    expect(compareBundleAge(older, newer)).toBeLessThan(0);
    expect(compareBundleAge(newer, older)).toBeGreaterThan(0);
    expect(compareBundleAge(older, structuredClone(older))).toBe(0);
    expect(compareBuilds(older.build, newer.build)).toBeLessThan(0);
  });

  it('bundle.json without a build stamp is refused; inspect shows time and serial', () => {
    const b = writeSyntheticBundle(path.join(tmp, 'inspect'), { build: { createdAt: '2026-03-01T10:00:00.000Z', serial: 1772359200000 } });
    const { build: _b, ...noBuild } = b.doc;
    expect(() => parseBundleDoc(JSON.stringify(noBuild))).toThrow(/^bundle\.json: build: /);
    const r = inspectBundle(b.dir);
    expect(r.build).toEqual({ createdAt: '2026-03-01T10:00:00.000Z', serial: 1772359200000 });
    expect(renderInspect(r)).toContain('built 2026-03-01T10:00:00.000Z   serial 1772359200000');
  });
});
