// A fleet of fake POPs for rollout tests: each site a RecordingHost (passed as the SiteTarget's `host`, so no SSH)
// running one real engine phase through runSites. The phase's live state is whether the POP "has" the bundle;
// the POP journal is the real one the runner writes into the RecordingHost's files (onSuccess records the bundle
// there, as the install operation does). A POP can be made to fail, to fail as unreachable, to wait for a
// promise before it installs (to hold a site "running"), or to end with its registration pending.

import type { Site } from '../../src/config/site.js';
import { change, definePhase, PhaseRefusal } from '../../src/engine/phase.js';
import type { SiteOperation, SiteResult, SiteTarget } from '../../src/engine/run-sites.js';
import type { Journal } from '../../src/engine/journal.js';
import type { SiteFacts } from '../../src/rollout/outcome.js';
import { RecordingHost } from '../engine/recording-host.js';

export const DIGEST = `sha256:${'ab12'.repeat(16)}`;

export interface FakePop {
  host: RecordingHost;
  /** The bundle digest the POP runs (its live state). */
  installed?: string;
  fail?: 'failed' | 'unreachable';
  /** Preflight-style refusal: the check refuses (nothing changes). */
  refuse?: string;
  /** The error text of a `failed` install (default: k3s did not become ready). */
  failMessage?: string;
  holdUntil?: Promise<void>;
  registration?: 'managed' | 'pending';
  installs: number;
}

export interface FakeCtx {
  site: string;
  pop: FakePop;
  journal?: Journal;
}

export class FakeFleet {
  readonly pops = new Map<string, FakePop>();
  /** Sites in the order their install phase started applying. */
  readonly started: string[] = [];

  constructor(
    names: string[],
    private readonly hubbed = false,
  ) {
    for (const n of names) this.pops.set(n, { host: new RecordingHost(), installs: 0 });
  }

  pop(name: string): FakePop {
    return this.pops.get(name)!;
  }

  targets(): SiteTarget[] {
    return [...this.pops].map(([name, pop]) => ({
      site: { metadata: { name }, spec: { ...(this.hubbed ? { hub: { ref: 'hub' } } : {}) } } as unknown as Site,
      file: '/nonexistent/fleet.yaml',
      configDir: '/nonexistent',
      host: pop.host,
    }));
  }

  operation = (_dryRun: boolean): SiteOperation<FakeCtx> => {
    const fleet = this;
    const install = definePhase<FakeCtx, undefined, { done: boolean }>({
      id: 'install',
      title: 'install the bundle',
      inputs: () => ({ bundle: DIGEST }),
      check: (ctx) => {
        if (ctx.pop.refuse) throw new PhaseRefusal('install', ctx.pop.refuse, 'use the bundle for this arch');
        return { done: ctx.pop.installed === DIGEST };
      },
      plan: (ctx, _p, live) =>
        live.done
          ? []
          : [
              change('install the bundle', async () => {
                fleet.started.push(ctx.site);
                await ctx.pop.holdUntil;
                if (ctx.pop.fail === 'unreachable') throw Object.assign(new Error('connection lost'), { code: 'ECONNRESET' });
                if (ctx.pop.fail === 'failed') throw new Error(ctx.pop.failMessage ?? `k3s did not become ready on ${ctx.site}`);
                ctx.pop.installs++;
                ctx.pop.installed = DIGEST;
              }),
            ],
    });
    return {
      name: 'install',
      phases: [install],
      needsBundle: false,
      context: (t) => ({ site: t.site.metadata.name, pop: fleet.pop(t.site.metadata.name) }),
      onJournal: (ctx, j) => {
        ctx.journal = j;
      },
      onSuccess: (_ctx, j) => {
        j.bundle = { name: 'test-bundle', digest: DIGEST, installedAt: new Date().toISOString() };
      },
      finish: (ctx, report) =>
        report.dryRun ? undefined : { registration: { state: ctx.pop.registration ?? (this.hubbed ? 'managed' : 'none') } },
    };
  };

  facts = (r: SiteResult<FakeCtx>): SiteFacts => {
    const rec = r.record as { registration: { state: 'managed' | 'pending' | 'none' } } | undefined;
    const digest = r.ctx?.journal?.bundle?.digest;
    const registration =
      rec?.registration.state ?? (r.report.dryRun ? (r.ctx?.pop.registration ?? (this.hubbed ? 'managed' : 'none')) : undefined);
    return { arch: 'amd64', ...(registration ? { registration } : {}), ...(digest ? { journalBundleDigest: digest } : {}) };
  };
}
