import { describe, expect, it } from 'vitest';
import { JOURNAL_PATH, type Journal } from '../../src/engine/journal.js';
import { type AnyPhase, change, definePhase, PhaseRefusal, shellChange } from '../../src/engine/phase.js';
import { runPhases } from '../../src/engine/runner.js';
import { RecordingHost } from './recording-host.js';

interface Ctx {
  version: string;
  /** What the "POP" holds: the phases' effects, so check() has something real to look at. */
  state: Set<string>;
  applied: string[];
  failAt?: string;
  refuseAt?: string;
  hubUp?: boolean;
}

/** A phase whose live state is whether `<id>@<version>` is in ctx.state, and whose one change puts it there. */
function phase(id: string, extra: Partial<AnyPhase<Ctx>> = {}): AnyPhase<Ctx> {
  return definePhase<Ctx, undefined, { done: boolean }>({
    id,
    title: `do ${id}`,
    inputs: (ctx) => ({ version: ctx.version }),
    check(ctx) {
      if (ctx.refuseAt === id) throw new PhaseRefusal(id, `arch arm64 is not in the bundle`, 'use the arm64 bundle');
      return { done: ctx.state.has(`${id}@${ctx.version}`) };
    },
    plan: (ctx, _p, live) =>
      live.done
        ? []
        : [
            change(`write ${id}`, async () => {
              if (ctx.failAt === id) throw new Error(`${id} broke`);
              ctx.state.add(`${id}@${ctx.version}`);
              ctx.applied.push(id);
            }),
          ],
    ...extra,
  } as AnyPhase<Ctx>);
}

const phases = () => [phase('a'), phase('b'), phase('c')];
const journalOf = (h: RecordingHost): Journal => JSON.parse(h.files.get(JOURNAL_PATH)!.toString());
const opts = (dryRun = false) => ({ site: 'pop1', operation: 'install', dryRun });

describe('phase runner', () => {
  it('applies every phase once, journals it, and changes nothing on an immediate re-run', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const first = await runPhases(phases(), ctx, host, opts());
    expect(first.ok).toBe(true);
    expect(first.phases.map((p) => p.status)).toEqual(['done', 'done', 'done']);
    expect(Object.keys(journalOf(host).phases)).toEqual(['a', 'b', 'c']);
    expect(journalOf(host).runs.at(-1)).toMatchObject({ outcome: 'done', operation: 'install' });

    const rt = host.roundTrips;
    const second = await runPhases(phases(), ctx, host, opts());
    expect(second.phases.map((p) => p.status)).toEqual(['unchanged', 'unchanged', 'unchanged']);
    expect(ctx.applied).toEqual(['a', 'b', 'c']);
    // The re-run: the lock and one probe (journal and every live state); it changed nothing, so it writes nothing.
    expect(host.roundTrips - rt).toBe(2);
  });

  it('continues where a failed run stopped', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [], failAt: 'b' };
    const failed = await runPhases(phases(), ctx, host, opts());
    expect(failed.ok).toBe(false);
    expect(failed.failedPhase).toBe('b');
    expect(failed.failure).toBe('failed');
    expect(failed.phases.map((p) => p.status)).toEqual(['done', 'failed', 'not-run']);
    expect(journalOf(host).runs.at(-1)).toMatchObject({ outcome: 'failed', failedPhase: 'b' });

    delete ctx.failAt;
    const resumed = await runPhases(phases(), ctx, host, opts());
    expect(resumed.phases.map((p) => p.status)).toEqual(['unchanged', 'done', 'done']);
    expect(ctx.applied).toEqual(['a', 'b', 'c']);
  });

  it('re-applies a phase whose live state was undone by hand, and one whose inputs changed', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    await runPhases(phases(), ctx, host, opts());
    ctx.state.delete('b@1'); // e.g. someone removed FSM by hand: the journal still says done
    const healed = await runPhases(phases(), ctx, host, opts());
    expect(healed.phases.map((p) => p.status)).toEqual(['unchanged', 'done', 'unchanged']);
    ctx.version = '2'; // e.g. a new bundle
    const upgraded = await runPhases(phases(), ctx, host, opts());
    expect(upgraded.phases.map((p) => p.status)).toEqual(['done', 'done', 'done']);
  });

  it('settles a phase the journal does not vouch for even when nothing needs changing (a run killed while waiting)', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(['a@1']), applied: [] };
    const settled: string[] = [];
    const a = phase('a', { settle: async () => (settled.push('a'), { summary: 'a ready' }) });
    const r = await runPhases([a], ctx, host, opts());
    expect(r.phases[0]).toMatchObject({ status: 'unchanged', summary: 'a ready' });
    expect(settled).toEqual(['a']);
    expect(journalOf(host).phases).toHaveProperty('a');
    await runPhases([a], ctx, host, opts());
    expect(settled).toEqual(['a']); // journaled and unchanged: no wait
  });

  it('settles again when the live state is unhealthy though nothing needs changing', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    let healthy = true;
    const settled: string[] = [];
    const a = phase('a', { healthy: () => healthy, settle: async () => (settled.push('a'), {}) });
    await runPhases([a], ctx, host, opts());
    healthy = false;
    await runPhases([a], ctx, host, opts());
    expect(settled).toEqual(['a', 'a']);
  });

  it('journals a run that failed before any phase finished (where it stopped is never lost)', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [], failAt: 'a' };
    const r = await runPhases([phase('a', { always: true }), phase('b')], ctx, host, opts());
    expect(r.failedPhase).toBe('a');
    expect(journalOf(host).phases).toEqual({});
    expect(journalOf(host).runs.at(-1)).toMatchObject({ outcome: 'failed', failedPhase: 'a', error: 'a broke' });
  });

  it('plans in a dry run and writes nothing, not even the journal: one read-only probe', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const plan = await runPhases(phases(), ctx, host, opts(true));
    expect(plan.phases.map((p) => p.status)).toEqual(['planned', 'planned', 'planned']);
    expect(plan.phases[0]!.changes).toEqual(['write a']);
    expect(ctx.applied).toEqual([]);
    expect(host.calls.filter((c) => c.kind !== 'exec')).toEqual([]);
    expect(host.commands()).toHaveLength(1);
    expect(host.commands()[0]).toContain('@@fsm-edge-probe');
  });

  it('reports a refusal with reason, fix and kind, and journals nothing for it', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [], refuseAt: 'a' };
    const r = await runPhases(phases(), ctx, host, opts());
    expect(r.ok).toBe(false);
    expect(r.failure).toBe('refused');
    expect(r.phases[0]).toMatchObject({ status: 'refused', reason: 'arch arm64 is not in the bundle', fix: 'use the arm64 bundle' });
    expect(host.calls.filter((c) => c.kind === 'write')).toEqual([]);
  });

  it('keeps a pending phase out of the journal so the next run retries it, without failing the run', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [], hubUp: false };
    const reg = phase('register', { settle: async (c) => (c.hubUp ? { summary: 'managed' } : { pending: 'hub unreachable' }) });
    const r1 = await runPhases([phase('a'), reg], ctx, host, opts());
    expect(r1.ok).toBe(true);
    expect(r1.phases[1]!.status).toBe('pending');
    expect(journalOf(host).phases).not.toHaveProperty('register');
    expect(journalOf(host).runs.at(-1)!.outcome).toBe('pending');
    ctx.hubUp = true;
    const r2 = await runPhases([phase('a'), reg], ctx, host, opts());
    expect(r2.phases.map((p) => p.status)).toEqual(['unchanged', 'unchanged']);
    expect(r2.phases[1]!.summary).toBe('managed');
    expect(journalOf(host).phases).toHaveProperty('register');
  });

  it('starts afresh (with a warning) from a damaged journal or one of another site', async () => {
    const host = new RecordingHost();
    host.files.set(JOURNAL_PATH, Buffer.from('{"version":1,'));
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const r = await runPhases(phases(), ctx, host, opts());
    expect(r.ok).toBe(true);
    expect(r.warnings.join('\n')).toMatch(/unreadable/);
    const other = await runPhases(phases(), ctx, host, { ...opts(), site: 'pop2' });
    expect(other.warnings.join('\n')).toMatch(/belongs to site "pop1"/);
  });

  it('hands each phase its own probe section, from one remote command', async () => {
    const host = new RecordingHost();
    host.probes = { a: 'alpha 1\nalpha 2', b: 'beta' };
    const seen: Record<string, string> = {};
    const spy = (id: string) => phase(id, { probe: () => `echo ${id}`, check: (_c, _p, env) => ((seen[id] = env.probe), { done: true }) });
    await runPhases([spy('a'), spy('b')], { version: '1', state: new Set<string>(), applied: [] }, host, opts(true));
    expect(seen.a!.trim()).toBe('alpha 1\nalpha 2');
    expect(seen.b!.trim()).toBe('beta');
    expect(host.commands()).toHaveLength(1);
  });

  it('runs consecutive shell changes of a phase as one remote command, and names the one that failed', async () => {
    const host = new RecordingHost();
    const three = definePhase<Ctx, undefined, undefined>({
      id: 'k3s',
      title: 'three changes',
      check: () => undefined,
      plan: () => [
        shellChange('write config', 'echo config'),
        shellChange('write registries', 'echo registries'),
        shellChange('restart k3s', 'systemctl restart k3s'),
      ],
    });
    const ok = await runPhases([three], { version: '1', state: new Set<string>(), applied: [] }, host, opts());
    expect(ok.phases[0]!.changes).toEqual(['write config', 'write registries', 'restart k3s']);
    expect(host.commands().filter((c) => c === 'sh -s')).toHaveLength(1);
    expect(host.changes).toEqual(['echo config', 'echo registries', 'systemctl restart k3s']);

    const failing = new RecordingHost();
    failing.failChange = { match: /restart/, code: 124, stderr: 'k3s did not start within 300s' };
    const bad = await runPhases([three], { version: '1', state: new Set<string>(), applied: [] }, failing, opts());
    expect(bad.ok).toBe(false);
    expect(bad.error).toMatch(/restart k3s: failed \(exit 124\)/);
    expect(bad.error).toMatch(/did not start within 300s/);
    expect(failing.changes).toEqual(['echo config', 'echo registries']);
  });

  it('stops before the next change when aborted, and says so', async () => {
    const host = new RecordingHost();
    const ac = new AbortController();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    const stopper = phase('a', { settle: async () => (ac.abort(), {}) });
    const r = await runPhases([stopper, phase('b'), phase('c')], ctx, host, { ...opts(), signal: ac.signal });
    expect(r.phases.map((p) => p.status)).toEqual(['done', 'not-run', 'not-run']);
    expect(r).toMatchObject({ ok: false, failedPhase: 'b', failure: 'aborted' });
    expect(ctx.applied).toEqual(['a']);
    expect(journalOf(host).phases).toHaveProperty('a');
  });

  it('takes the POP lock for a real run, refuses when another controller holds it, and never locks a dry run', async () => {
    const host = new RecordingHost();
    const ctx: Ctx = { version: '1', state: new Set(), applied: [] };
    await runPhases(phases(), ctx, host, opts(true));
    expect(host.calls.some((c) => c.kind === 'lock')).toBe(false);
    const r = await runPhases(phases(), ctx, host, opts());
    expect(r.ok).toBe(true);
    expect(host.lockHolder).toBeUndefined(); // released

    host.lockHolder = { controller: 'ops-laptop', runId: '20261129T0700-abcd', operation: 'install', startedAt: '2026-11-29T07:00:00Z' };
    ctx.state.clear();
    const locked = await runPhases(phases(), ctx, host, opts());
    expect(locked).toMatchObject({ ok: false, failedPhase: 'lock', failure: 'locked' });
    expect(locked.error).toMatch(/install run 20261129T0700-abcd from controller ops-laptop/);
    expect(ctx.applied).toEqual(['a', 'b', 'c']); // nothing ran the second time
  });
});
