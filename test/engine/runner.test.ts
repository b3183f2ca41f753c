import { describe, expect, it } from 'vitest';
import { PhaseRefusal } from '../../src/engine/phase.js';
import { JOURNAL_PATH, type Journal } from '../../src/engine/journal.js';
import { runPhases, type InstallPhase } from '../../src/engine/runner.js';
import type { ExecResult, Host } from '../../src/transport/host.js';

/** A host whose files live in a Map: enough for the runner, which only reads and writes the journal. */
class MemoryHost implements Host {
  readonly name = 'memory-pop';
  files = new Map<string, Buffer>();
  commands: string[] = [];
  writes = 0;
  async exec(command: string): Promise<ExecResult> {
    this.commands.push(command);
    return { code: 0, stdout: '', stderr: '' };
  }
  async run(command: string): Promise<string> {
    return (await this.exec(command)).stdout;
  }
  async readFile(path: string) {
    return this.files.get(path);
  }
  async writeFile(path: string, data: string | Buffer) {
    this.writes++;
    this.files.set(path, Buffer.from(data));
  }
  async syncBlobs(): Promise<never> {
    throw new Error('not used');
  }
  async tunnel(): Promise<never> {
    throw new Error('not used');
  }
  async lock(): Promise<never> {
    throw new Error('not used');
  }
  stats() {
    return { roundTrips: 0, bytesSent: 0, bytesReceived: 0 };
  }
  async close() {}
  journal(): Journal {
    return JSON.parse(this.files.get(JOURNAL_PATH)!.toString());
  }
}

interface Ctx {
  version: string;
  /** What the "POP" holds: the phase's effect, so check() has something real to look at. */
  state: Set<string>;
  applied: string[];
  failAt?: string;
}

function phase(id: string, extra: Partial<InstallPhase<Ctx>> = {}): InstallPhase<Ctx> {
  return {
    id,
    title: `do ${id}`,
    inputs: (ctx) => ({ version: ctx.version }),
    check: async (ctx) => ctx.state.has(`${id}@${ctx.version}`),
    async apply(ctx, _host, changes) {
      if (ctx.failAt === id) throw new Error(`${id} broke`);
      const did = await changes.change(`write ${id}`, async () => {
        ctx.state.add(`${id}@${ctx.version}`);
        ctx.applied.push(id);
        return true;
      });
      return { summary: did ? `wrote ${id}` : `would write ${id}`, changes: did ? [`wrote ${id}`] : [] };
    },
    ...extra,
  };
}

const phases = () => [phase('a'), phase('b'), phase('c')];

describe('phase runner', () => {
  it('applies every phase once, journals it, and changes nothing on an immediate re-run', async () => {
    const host = new MemoryHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const first = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    expect(first.ok).toBe(true);
    expect(first.phases.map((p) => p.status)).toEqual(['done', 'done', 'done']);
    expect(Object.keys(host.journal().phases)).toEqual(['a', 'b', 'c']);
    expect(host.journal().runs.at(-1)).toMatchObject({ outcome: 'done', operation: 'install' });

    const second = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    expect(second.phases.map((p) => p.status)).toEqual(['unchanged', 'unchanged', 'unchanged']);
    expect(ctx.applied).toEqual(['a', 'b', 'c']);
  });

  it('continues where a failed run stopped', async () => {
    const host = new MemoryHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [], failAt: 'b' };
    const failed = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    expect(failed.ok).toBe(false);
    expect(failed.failedPhase).toBe('b');
    expect(failed.phases.map((p) => p.status)).toEqual(['done', 'failed', 'not-run']);
    expect(host.journal().runs.at(-1)).toMatchObject({ outcome: 'failed', failedPhase: 'b' });

    delete ctx.failAt;
    const resumed = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    expect(resumed.phases.map((p) => p.status)).toEqual(['unchanged', 'done', 'done']);
    expect(ctx.applied).toEqual(['a', 'b', 'c']);
  });

  it('re-runs a phase whose inputs changed, and one whose check finds the work undone', async () => {
    const host = new MemoryHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    ctx.state.delete('b@1'); // e.g. someone removed k3s by hand
    const healed = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    expect(healed.phases.map((p) => p.status)).toEqual(['unchanged', 'done', 'unchanged']);
    ctx.version = '2'; // e.g. a new bundle
    const upgraded = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    expect(upgraded.phases.map((p) => p.status)).toEqual(['done', 'done', 'done']);
  });

  it('journals a run that failed before any phase finished (where it stopped is never lost)', async () => {
    const host = new MemoryHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [], failAt: 'a' };
    const r = await runPhases([phase('a', { always: true }), phase('b')], ctx, host, { site: 'pop1', dryRun: false });
    expect(r.failedPhase).toBe('a');
    expect(host.journal().phases).toEqual({});
    expect(host.journal().runs.at(-1)).toMatchObject({ outcome: 'failed', failedPhase: 'a', error: 'a broke' });
  });

  it('plans in a dry run and writes nothing, not even the journal', async () => {
    const host = new MemoryHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const plan = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: true });
    expect(plan.phases.map((p) => p.status)).toEqual(['planned', 'planned', 'planned']);
    expect(plan.phases[0]!.changes).toEqual(['write a']);
    expect(ctx.applied).toEqual([]);
    expect(host.writes).toBe(0);
    expect(host.commands).toEqual([]);
  });

  it('reports a refusal with reason and fix and journals nothing for it', async () => {
    const host = new MemoryHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const refuse = phase('pre', {
      always: true,
      async apply() {
        throw new PhaseRefusal('pre', 'arch arm64 is not in the bundle', 'use the arm64 bundle');
      },
    });
    const r = await runPhases([refuse, ...phases()], ctx, host, { site: 'pop1', dryRun: false });
    expect(r.ok).toBe(false);
    expect(r.phases[0]).toMatchObject({ status: 'refused', reason: 'arch arm64 is not in the bundle', fix: 'use the arm64 bundle' });
    expect(host.writes).toBe(0);
  });

  it('keeps a pending phase out of the journal so the next run retries it, without failing the run', async () => {
    const host = new MemoryHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    let hubUp = false;
    const reg = phase('register', {
      check: undefined,
      async apply() {
        return hubUp ? { summary: 'managed', changes: ['applied Cluster'] } : { summary: 'hub unreachable', changes: [], pending: 'hub unreachable' };
      },
    });
    const r1 = await runPhases([phase('a'), reg], ctx, host, { site: 'pop1', dryRun: false });
    expect(r1.ok).toBe(true);
    expect(r1.phases[1]!.status).toBe('pending');
    expect(host.journal().phases).not.toHaveProperty('register');
    expect(host.journal().runs.at(-1)!.outcome).toBe('pending');
    hubUp = true;
    const r2 = await runPhases([phase('a'), reg], ctx, host, { site: 'pop1', dryRun: false });
    expect(r2.phases.map((p) => p.status)).toEqual(['unchanged', 'done']);
  });

  it('starts afresh (with a warning) from a damaged journal or one of another site', async () => {
    const host = new MemoryHost();
    host.files.set(JOURNAL_PATH, Buffer.from('{"version":1,'));
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const r = await runPhases(phases(), ctx, host, { site: 'pop1', dryRun: false });
    expect(r.ok).toBe(true);
    expect(r.warnings.join('\n')).toMatch(/unreadable/);
    const other = await runPhases(phases(), ctx, host, { site: 'pop2', dryRun: false });
    expect(other.warnings.join('\n')).toMatch(/belongs to site "pop1"/);
  });
});
