// Pruning the POP blob store after an upgrade: blobs neither the bundle now installed nor the one before it uses
// go; the previous bundle's stay whole (going back sends nothing); nothing goes when the previous bundle's blob
// list is unknown. The phase against a recording host: the delete command it sends, and the journal's lists.

import { describe, expect, it } from 'vitest';
import type { BundleDoc } from '../../src/bundle/format.js';
import { emptyJournal, type Journal, type JournalBundle } from '../../src/engine/journal.js';
import { applyChanges } from '../../src/engine/runner.js';
import type { InstallContext } from '../../src/install/context.js';
import { DEFAULT_TIMEOUTS } from '../../src/install/context.js';
import { planPrune, prunePhase, pruneScript, recordBundleBlobs } from '../../src/install/prune.js';
import { RecordingHost } from '../engine/recording-host.js';

const hex = (n: number) => n.toString(16).padStart(64, '0');
const digest = (n: number) => `sha256:${hex(n)}`;
const bundle = (name: string, n: number): JournalBundle => ({ name, digest: digest(1000 + n), installedAt: 'T' });
const V1 = bundle('v1', 1);
const V2 = bundle('v2', 2);
const V3 = bundle('v3', 3);
const store = (...ns: number[]) => new Map(ns.map((n) => [hex(n), n * 10]));

describe('planPrune', () => {
  it('upgrading v1 → v2: keeps both bundles’ blobs, drops what only older bundles used', () => {
    const j: Journal = { ...emptyJournal('pop1'), bundle: V1, bundleBlobs: { [V1.digest]: [hex(1), hex(2), hex(3)] } };
    const p = planPrune(j, V2.digest, [hex(2), hex(3), hex(4)], store(1, 2, 3, 4, 9));
    expect(p.previous).toEqual(V1);
    expect(p.drop).toEqual([{ hex: hex(9), size: 90 }]);
  });

  it('upgrading v2 → v3: v1’s own blobs go now', () => {
    const j: Journal = {
      ...emptyJournal('pop1'),
      bundle: V2,
      previousBundle: V1,
      bundleBlobs: { [V1.digest]: [hex(1), hex(2)], [V2.digest]: [hex(2), hex(4)] },
    };
    const p = planPrune(j, V3.digest, [hex(4), hex(5)], store(1, 2, 4, 5));
    expect(p.previous).toEqual(V2);
    expect(p.drop.map((d) => d.hex)).toEqual([hex(1)]);
  });

  it('a re-run of v2 after the upgrade keeps v1 (the previous bundle), as the journal names it', () => {
    const j: Journal = {
      ...emptyJournal('pop1'),
      bundle: V2,
      previousBundle: V1,
      bundleBlobs: { [V1.digest]: [hex(1)], [V2.digest]: [hex(2)] },
    };
    expect(planPrune(j, V2.digest, [hex(2)], store(1, 2, 7)).drop.map((d) => d.hex)).toEqual([hex(7)]);
  });

  it('deletes nothing when the previous bundle’s blobs are not known, or no bundle was installed before', () => {
    const old: Journal = { ...emptyJournal('pop1'), bundle: V1 };
    const p = planPrune(old, V2.digest, [hex(2)], store(1, 2));
    expect(p.drop).toEqual([]);
    expect(p.unknown).toMatch(/blobs of the previous bundle v1 are not recorded/);
    expect(planPrune(emptyJournal('pop1'), V1.digest, [hex(1)], store(1, 2)).drop).toEqual([]);
  });

  it('never plans a name that is not a blob digest', () => {
    const j: Journal = { ...emptyJournal('pop1'), bundle: V1, bundleBlobs: { [V1.digest]: [] } };
    const s = new Map([
      ['../../etc/passwd', 1],
      [hex(5), 5],
    ]);
    expect(planPrune(j, V2.digest, [], s).drop.map((d) => d.hex)).toEqual([hex(5)]);
    expect(() => pruneScript(['x; rm -rf /'])).toThrow(/refusing/);
  });
});

describe('recordBundleBlobs', () => {
  it('after v1 → v2 the journal keeps v1 as the previous bundle and both lists; after v2 → v3, v1’s list goes', () => {
    const j: Journal = { ...emptyJournal('pop1'), bundle: V1, bundleBlobs: { [V1.digest]: [hex(1)] } };
    recordBundleBlobs(j, V2.digest, [hex(3), hex(2)]);
    expect(j.previousBundle).toEqual(V1);
    expect(j.bundleBlobs).toEqual({ [V1.digest]: [hex(1)], [V2.digest]: [hex(2), hex(3)] });
    j.bundle = V2; // what the install operation's onSuccess then writes
    recordBundleBlobs(j, V3.digest, [hex(4)]);
    expect(j.previousBundle).toEqual(V2);
    expect(Object.keys(j.bundleBlobs!).sort()).toEqual([V2.digest, V3.digest].sort());
  });
});

function context(journal: Journal, blobs: number[]): InstallContext {
  const files = blobs.map((n) => ({ role: 'image-layer', name: `b${n}`, digest: digest(n), size: n * 10, url: '' }));
  const doc = { name: 'v2', versions: {}, arches: { amd64: { features: [], files, images: [] } } } as unknown as BundleDoc;
  return {
    site: { metadata: { name: 'pop1' } } as InstallContext['site'],
    configDir: '/tmp',
    bundle: { dir: '/nonexistent', doc, digest: V2.digest, signer: 'k', verifyArch: async () => {} },
    options: { ...DEFAULT_TIMEOUTS, dryRun: false },
    decisions: { arch: 'amd64', content: doc.arches.amd64!, interception: 'iptables', interceptionReason: 'x' },
    journal,
    metrics: {},
    installed: {},
  };
}

describe('the prune phase', () => {
  it('deletes exactly the planned blobs in the store, in one remote command, and records the lists in the journal', async () => {
    const journal: Journal = { ...emptyJournal('pop1'), bundle: V1, bundleBlobs: { [V1.digest]: [hex(1), hex(2)] } };
    const ctx = context(journal, [2, 3]);
    const host = new RecordingHost();
    const listing = [1, 2, 3, 8, 9].map((n) => `${hex(n)} ${n * 10}`).join('\n');
    const env = { host, dryRun: false, signal: new AbortController().signal, probe: listing };
    const live = await prunePhase.check(ctx, undefined, env);
    const planned = prunePhase.plan(ctx, undefined, live, env);
    expect(planned.map((c) => c.description)).toEqual(['delete 2 blob(s) (170 B) neither this bundle nor v1 uses']);
    const applied: string[] = [];
    await applyChanges(host, planned, env.signal, applied);
    expect(host.commands()).toEqual(['sh -s']);
    expect(host.changes).toEqual([`cd /var/lib/fsm-edge/store/sha256\nrm -f -- ${hex(8)} ${hex(9)}`]);
    const res = await prunePhase.settle!(ctx, undefined, live, env, applied);
    expect(res.metrics).toEqual({ blobsPruned: 2, bytesPruned: 170 });
    expect(journal.previousBundle).toEqual(V1);
    expect(journal.bundleBlobs![V2.digest]).toEqual([hex(2), hex(3)]);
  });

  it('plans nothing when every stored blob is kept', async () => {
    const journal: Journal = { ...emptyJournal('pop1'), bundle: V1, bundleBlobs: { [V1.digest]: [hex(1)] } };
    const ctx = context(journal, [2]);
    const host = new RecordingHost();
    const env = { host, dryRun: true, signal: new AbortController().signal, probe: `${hex(1)} 10\n${hex(2)} 20` };
    const live = await prunePhase.check(ctx, undefined, env);
    expect(prunePhase.plan(ctx, undefined, live, env)).toEqual([]);
  });
});
