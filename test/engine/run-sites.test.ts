import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSites } from '../../src/config/index.js';
import { change, definePhase } from '../../src/engine/phase.js';
import { runSites, type SiteEvent, type SiteOperation, type SiteTarget } from '../../src/engine/run-sites.js';
import { keyPairIn, signedBundleDoc } from '../wizard/bundle-fixture.js';
import { RecordingHost } from './recording-host.js';

const dir = mkdtempSync(path.join(tmpdir(), 'fsm-edge-runsites-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function targets(n: number): Array<SiteTarget & { host: RecordingHost }> {
  const file = path.join(dir, `fleet-${n}.yaml`);
  const site = (i: number) =>
    `---\napiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop${i} }\nspec:\n  ssh: { host: 127.0.0.${i + 10}, user: root, agent: true, hostKeys: ["SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA"] }\n`;
  writeFileSync(file, Array.from({ length: n }, (_, i) => site(i)).join(''));
  return loadSites([file]).sites.map((s) => ({ site: s, file, configDir: dir, host: new RecordingHost() }));
}

interface Ctx {
  name: string;
  log: string[];
}

function op(log: string[], o: Partial<SiteOperation<Ctx>> = {}): SiteOperation<Ctx> {
  const phase = definePhase<Ctx, undefined, undefined>({
    id: 'work',
    title: 'work',
    check: () => undefined,
    plan: (ctx) => [change(`work on ${ctx.name}`, async () => void ctx.log.push(ctx.name))],
  });
  return { name: 'install', phases: [phase], needsBundle: false, context: (t) => ({ name: t.site.metadata.name, log }), ...o };
}

describe('runSites', () => {
  it('runs every site, reports per site, tags every event with its site and leaves the callers’ hosts open', async () => {
    const log: string[] = [];
    const events: Array<[string, SiteEvent['type']]> = [];
    const t = targets(3);
    const r = await runSites(t, op(log), { dryRun: false, parallel: 2, onEvent: (site, ev) => events.push([site, ev.type]) });
    expect(r.map((x) => [x.site, x.report.ok])).toEqual([
      ['pop0', true],
      ['pop1', true],
      ['pop2', true],
    ]);
    expect(log.sort()).toEqual(['pop0', 'pop1', 'pop2']);
    for (const s of ['pop0', 'pop1', 'pop2']) {
      expect(events.filter(([site]) => site === s).map(([, type]) => type)).toEqual(['connected', 'phase-start', 'phase-end']);
    }
  });

  it('verifies the bundle once, before any site is touched: an untrusted signer refuses every site, nothing is sent', async () => {
    const signer = keyPairIn(path.join(dir, 'signer'));
    const other = keyPairIn(path.join(dir, 'other'));
    signedBundleDoc(path.join(dir, 'bundle'), { name: 'b', arches: ['amd64'], keyFile: signer.privateKey });
    const t = targets(2);
    const ends: string[] = [];
    const r = await runSites(t, op([], { needsBundle: true }), {
      dryRun: false,
      bundleDir: path.join(dir, 'bundle'),
      trustKeys: [other.publicKey],
      onEvent: (site, ev) => ev.type === 'phase-end' && ends.push(`${site} ${ev.report.id} ${ev.report.status}`),
    });
    expect(r.map((x) => x.report.failure)).toEqual(['refused', 'refused']);
    expect(r[0]!.report.error).toMatch(/not trusted/);
    expect(ends).toEqual(['pop0 verify refused', 'pop1 verify refused']);
    for (const x of t) expect(x.host.calls).toEqual([]);
  });

  it('an operation that throws outside its phases fails only that site, typed, and the operation is closed', async () => {
    const closed: string[] = [];
    const t = targets(2);
    const r = await runSites(
      t,
      op([], {
        context: (tt) => {
          if (tt.site.metadata.name === 'pop1') throw Object.assign(new Error('hub unreachable: ECONNREFUSED'), {});
          return { name: tt.site.metadata.name, log: [] };
        },
        close: async (c) => void closed.push(c.name),
      }),
      { dryRun: false },
    );
    expect(r.map((x) => x.report.ok)).toEqual([true, false]);
    expect(r[1]!.report.failure).toBe('unreachable');
    expect(closed).toEqual(['pop0']);
  });
});
