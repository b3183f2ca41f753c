// `status --refresh`: each POP's journal read over the transport (RecordingHosts here; the connect step is the
// one thing replaced), bounded per POP and limited in parallel, and the controller's records rebuilt from the
// journals — the POP is the truth. A POP that does not answer is reported unreachable and its record kept.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Site } from '../../src/config/site.js';
import type { Journal } from '../../src/engine/journal.js';
import { POP_JOURNAL } from '../../src/engine/pop-layout.js';
import type { SiteTarget } from '../../src/engine/run-sites.js';
import { refreshFromPops } from '../../src/rollout/refresh.js';
import { readSiteRecord, type SiteRecord, writeSiteRecord } from '../../src/state/site-record.js';
import type { Host } from '../../src/transport/host.js';
import { HostKeyError } from '../../src/transport/host-keys.js';
import { runMain } from '../cli/run-cli.js';
import { RecordingHost } from '../engine/recording-host.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'refresh-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const D1 = `sha256:${'11'.repeat(32)}`;
const D2 = `sha256:${'22'.repeat(32)}`;

function target(name: string): SiteTarget {
  const site = { metadata: { name }, spec: { ssh: { host: `10.0.0.${name.length}`, port: 22, user: 'root', hostKeys: ['SHA256:x'] } } };
  return { site: site as unknown as Site, file: '/nonexistent/fleet.yaml', configDir: '/nonexistent' };
}

function journal(site: string, bundle?: string, outcome: 'done' | 'failed' = 'done'): Journal {
  return {
    version: 1,
    site,
    phases: { preflight: { inputs: 'x', finishedAt: '2026-11-29T09:00:01.000Z', durationMs: 800, summary: 'ok', runId: 'r2' } },
    runs: [
      { id: 'r1', operation: 'install', startedAt: '2026-11-28T09:00:00.000Z', finishedAt: '2026-11-28T09:01:00.000Z', outcome: 'done' },
      {
        id: 'r2',
        operation: 'install',
        startedAt: '2026-11-29T09:00:00.000Z',
        finishedAt: '2026-11-29T09:02:00.000Z',
        outcome,
        ...(outcome === 'failed' ? { failedPhase: 'k3s' } : {}),
        controller: 'job-pod-2',
      },
    ],
    ...(bundle ? { bundle: { name: 'fsm-edge-1.5.1', digest: bundle, installedAt: '2026-11-29T09:02:00.000Z' } } : {}),
  };
}

class Pop extends RecordingHost {
  closed = 0;
  constructor(j?: Journal | string) {
    super();
    if (j !== undefined) this.files.set(POP_JOURNAL, Buffer.from(typeof j === 'string' ? j : JSON.stringify(j)));
  }
  override async close(): Promise<void> {
    this.closed++;
  }
}

function oldRecord(site: string, digest: string): SiteRecord {
  return {
    version: 1,
    site,
    updatedAt: '2026-11-01T00:00:00.000Z',
    host: { address: '10.0.0.9', port: 22, user: 'root', hostKeys: [] },
    arch: 'arm64',
    bundle: { name: 'old', digest, signer: 'SHA256:signer' },
    versions: { k3s: 'v1.35.0+k3s1' },
    modes: { datastore: 'sqlite', profile: 'edge', ingress: false, multicluster: true },
    registration: { state: 'managed' },
    escrowed: [],
    history: [],
  };
}

describe('status --refresh', () => {
  it('rebuilds records from the journals, and marks unreachable POPs without touching their records', async () => {
    const root = path.join(tmp, 'a');
    writeSiteRecord(root, oldRecord('pop-a', D1)); // the POP has moved on to D2 (another controller upgraded it)
    writeSiteRecord(root, oldRecord('pop-down', D1));
    const pops: Record<string, Pop> = { 'pop-a': new Pop(journal('pop-a', D2)), 'pop-new': new Pop(journal('pop-new', D1, 'failed')) };
    const connect = async (t: SiteTarget): Promise<Host> => {
      const n = t.site.metadata.name;
      if (n === 'pop-down') throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.8:22'), { code: 'ECONNREFUSED' });
      if (n === 'pop-key') throw new HostKeyError('host key mismatch for 10.0.0.7:22', 'pop-key', {} as never, 'SHA256:evil', ['SHA256:x']);
      return pops[n]!;
    };
    const views = await refreshFromPops(['pop-a', 'pop-new', 'pop-down', 'pop-key'].map(target), {
      root,
      connect,
      now: () => new Date('2026-11-29T10:00:00.000Z'),
    });
    const byName = Object.fromEntries(views.map((v) => [v.site, v]));
    expect(byName['pop-a']).toMatchObject({
      reachable: true,
      bundle: { digest: D2 },
      lastRun: { id: 'r2', outcome: 'done', controller: 'job-pod-2' },
    });
    expect(byName['pop-down']).toMatchObject({ reachable: false, error: 'connect ECONNREFUSED 10.0.0.8:22' });
    expect(byName['pop-key']).toMatchObject({ reachable: false, error: 'host key refused: host key mismatch for 10.0.0.7:22' });

    const a = readSiteRecord(root, 'pop-a')!;
    expect(a.bundle).toEqual({ name: 'fsm-edge-1.5.1', digest: D2 }); // the signer was of the old bundle
    expect(a.lastRun).toMatchObject({ id: 'r2', ok: true, durationMs: 120_000, phases: [{ id: 'preflight', status: 'done' }] });
    expect(a).toMatchObject({ arch: 'arm64', modes: { datastore: 'sqlite' }, updatedAt: '2026-11-29T10:00:00.000Z' });
    const fresh = readSiteRecord(root, 'pop-new')!;
    expect(fresh).toMatchObject({ bundle: { digest: D1 }, lastRun: { ok: false, failedPhase: 'k3s' } });
    expect(readSiteRecord(root, 'pop-down')).toEqual(oldRecord('pop-down', D1));
    expect(readSiteRecord(root, 'pop-key')).toBeUndefined();
    // One read per POP (its journal), and every connection is closed.
    expect(pops['pop-a']!.calls).toEqual([{ kind: 'read', path: POP_JOURNAL }]);
    expect(pops['pop-a']!.closed).toBe(1);
  });

  it('keeps the record when the journal is unreadable (it says nothing about what is installed)', async () => {
    const root = path.join(tmp, 'b');
    writeSiteRecord(root, oldRecord('pop-b', D1));
    const [v] = await refreshFromPops([target('pop-b')], { root, connect: async () => new Pop('{"not": "a journal"') });
    expect(v).toMatchObject({ reachable: true, warning: expect.stringMatching(/unreadable/) });
    expect(readSiteRecord(root, 'pop-b')).toEqual(oldRecord('pop-b', D1));
  });

  it('a POP with no journal has nothing installed: the record loses its bundle', async () => {
    const root = path.join(tmp, 'c');
    writeSiteRecord(root, oldRecord('pop-c', D1));
    const [v] = await refreshFromPops([target('pop-c')], { root, connect: async () => new Pop() });
    expect(v).toMatchObject({ reachable: true });
    expect(readSiteRecord(root, 'pop-c')!.bundle).toBeUndefined();
  });

  it('bounds each POP: one that never answers is unreachable, and a connection that arrives late is closed', async () => {
    let arrive!: (h: Host) => void;
    const late = new Pop(journal('pop-slow', D1));
    const views = await refreshFromPops([target('pop-slow'), target('pop-hang')], {
      root: path.join(tmp, 'd'),
      timeoutMs: 50,
      connect: (t) =>
        t.site.metadata.name === 'pop-slow'
          ? new Promise<Host>((resolve) => {
              arrive = resolve;
            })
          : new Promise<Host>(() => {}),
    });
    expect(views.map((v) => [v.site, v.reachable, v.error])).toEqual([
      ['pop-slow', false, 'no answer within 50 ms'],
      ['pop-hang', false, 'no answer within 50 ms'],
    ]);
    arrive(late);
    await new Promise((r) => setImmediate(r));
    expect(late.closed).toBe(1);
    expect(late.calls).toEqual([]); // nothing read after the deadline
  });

  it('asks at most `concurrency` POPs at once', async () => {
    let inFlight = 0;
    let peak = 0;
    const views = await refreshFromPops(
      Array.from({ length: 7 }, (_, i) => target(`pop${i}`)),
      {
        root: path.join(tmp, 'e'),
        concurrency: 3,
        connect: async (t) => {
          inFlight++;
          peak = Math.max(peak, inFlight);
          await new Promise((r) => setImmediate(r));
          const pop = new Pop(journal(t.site.metadata.name, D1));
          const close = pop.close.bind(pop);
          pop.close = async () => {
            inFlight--;
            await close();
          };
          return pop;
        },
      },
    );
    expect(views.every((v) => v.reachable)).toBe(true);
    expect(peak).toBe(3);
  });
});

describe('fsm-edge status --refresh at the CLI', { timeout: 60_000 }, () => {
  it('needs the config files: the records hold no SSH credentials (exit 2)', async () => {
    const r = await runMain(['status', '--refresh'], { env: { PATH: process.env.PATH, FSM_EDGE_STATE_DIR: path.join(tmp, 'cli') } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--refresh needs the Site or Fleet files/);
  });
});
