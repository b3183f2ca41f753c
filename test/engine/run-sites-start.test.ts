import { describe, expect, it } from 'vitest';
import type { Site } from '../../src/config/site.js';
import { change, definePhase } from '../../src/engine/phase.js';
import { runSites, type SiteOperation, type SiteTarget } from '../../src/engine/run-sites.js';
import { RecordingHost } from './recording-host.js';

const hosts = new Map<string, RecordingHost>();
const target = (name: string): SiteTarget => {
  const host = new RecordingHost();
  hosts.set(name, host);
  return { site: { metadata: { name }, spec: {} } as unknown as Site, file: '/nonexistent/site.yaml', configDir: '/nonexistent', host };
};

function operation(applied: string[]): SiteOperation<{ site: string }> {
  const phase = definePhase<{ site: string }, undefined, { done: boolean }>({
    id: 'work',
    title: 'do the work',
    check: () => ({ done: false }),
    plan: (ctx) => [change(`work on ${ctx.site}`, async () => applied.push(ctx.site))],
  });
  return { name: 'test', phases: [phase], needsBundle: false, context: (t) => ({ site: t.site.metadata.name }) };
}

describe('runSites shouldStart', () => {
  it('asks right before each site starts; a site it refuses is reported as not started and never touched', async () => {
    const applied: string[] = [];
    const asked: string[] = [];
    const results = await runSites(['a', 'b', 'c'].map(target), operation(applied), {
      dryRun: false,
      parallel: 1,
      // Decided when the site's turn comes, from what finished before it: after `a`, nothing more starts.
      shouldStart: (site) => {
        asked.push(site);
        return applied.length === 0;
      },
    });
    expect(asked).toEqual(['a', 'b', 'c']);
    expect(applied).toEqual(['a']);
    expect(results.map((r) => [r.site, r.report.ok, r.report.failedPhase ?? '', r.report.failure ?? ''])).toEqual([
      ['a', true, '', ''],
      ['b', false, 'start', 'aborted'],
      ['c', false, 'start', 'aborted'],
    ]);
    expect(hosts.get('b')!.calls).toEqual([]);
    expect(hosts.get('c')!.calls).toEqual([]);
  });

  it('starts every site when the option is absent', async () => {
    const applied: string[] = [];
    const results = await runSites(['x', 'y'].map(target), operation(applied), { dryRun: false, parallel: 2 });
    expect(results.every((r) => r.report.ok)).toBe(true);
    expect(applied.sort()).toEqual(['x', 'y']);
  });
});
