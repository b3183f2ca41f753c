// The rollout's live table (a fake terminal: a stream that records every write, a fake clock and timer), and the
// printer the CLI picks: the table on a TTY, plain lines without one — fed by a real rollout of the fake fleet.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rolloutPrinter } from '../../src/cli/commands/rollout.js';
import { Output } from '../../src/cli/output.js';
import { RolloutSchema } from '../../src/config/fleet.js';
import { LiveTable, syncBar } from '../../src/rollout/live-table.js';
import { planRollout } from '../../src/rollout/plan.js';
import { runRollout } from '../../src/rollout/run.js';
import { DIGEST, FakeFleet } from './fake-fleet.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'live-table-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

class FakeTty {
  readonly isTTY = true;
  readonly columns = 140;
  readonly writes: string[] = [];
  write(chunk: string): boolean {
    this.writes.push(chunk);
    return true;
  }
  get text(): string {
    return this.writes.join('');
  }
}

const MiB = 1024 * 1024;
const wave = { name: 'wave 1', canary: false, sites: ['pop1', 'pop2', 'pop3'], maxFailures: 1 };

function table(now: { t: number }, timers: Array<() => void>, stream = new FakeTty()) {
  const t = new LiveTable({
    stream,
    totalSites: 4,
    throttleMs: 100,
    now: () => now.t,
    setTimer: (fn) => {
      timers.push(fn);
      return {};
    },
  });
  return { t, stream };
}

describe('live table', () => {
  it('draws one line per running site with its phase, a sync bar with rate and ETA, and the wave counts', () => {
    const now = { t: 0 };
    const { t } = table(now, []);
    t.onRollout({ type: 'wave-start', wave, toRun: wave.sites, doneEarlier: [] }, '== wave 1: 3 site(s)');
    t.onSite('pop1', { type: 'connected', host: 'pop1' });
    t.onSite('pop1', { type: 'phase-start', id: 'sync', title: 'send the bundle' });
    t.onSync('pop1', { digest: 'sha256:x', sentBytes: 150 * MiB, totalBytes: 300 * MiB, bytesPerSecond: 12.5e6, etaSeconds: 12.6 });
    t.onSite('pop2', { type: 'phase-start', id: 'k3s', title: 'start k3s' });
    expect(t.frame()).toEqual([
      'wave 1: 0/3 done (0 ok, 0 failed), 2 running, 1 waiting',
      'rollout: 0/4 ok, 0 failed',
      `  pop1      sync        [############------------]  50%  150.0 MiB/300.0 MiB  12.5 MB/s  ETA 13s`,
      '  pop2      k3s       ',
    ]);
    t.onRollout({
      type: 'site-end',
      outcome: { site: 'pop2', wave: 'wave 1', status: 'failed', durationMs: 1, bytesSent: 0, roundTrips: 3, phases: [] },
    });
    t.onRollout({
      type: 'site-end',
      outcome: { site: 'pop1', wave: 'wave 1', status: 'ok', durationMs: 1, bytesSent: 0, roundTrips: 3, phases: [] },
    });
    expect(t.frame()).toEqual(['wave 1: 2/3 done (1 ok, 1 failed), 0 running, 1 waiting', 'rollout: 1/4 ok, 1 failed']);
  });

  it('redraws in place (cursor up, clear) at most once per throttle interval, and always draws the last state', () => {
    const now = { t: 1000 };
    const timers: Array<() => void> = [];
    const { t, stream } = table(now, timers);
    t.onSite('pop1', { type: 'phase-start', id: 'sync', title: 'send' });
    const first = stream.writes.length;
    expect(first).toBe(1);
    for (let i = 1; i <= 50; i++)
      t.onSync('pop1', { digest: 'd', sentBytes: i * MiB, totalBytes: 50 * MiB, bytesPerSecond: 1e6, etaSeconds: 50 - i });
    // 50 progress events inside one interval: no write yet, one trailing redraw scheduled.
    expect(stream.writes.length).toBe(first);
    expect(timers).toHaveLength(1);
    now.t += 100;
    timers[0]!();
    const last = stream.writes.at(-1)!;
    expect(last.startsWith('\r\x1b[2A\x1b[0J')).toBe(true); // back over the 2 lines drawn, clear, draw again
    expect(last).toContain('100%');
    expect(last).toContain('50.0 MiB/50.0 MiB');
    expect(last).toContain('ETA 0s');
  });

  it('prints permanent lines above the table and erases it when stopped', () => {
    const now = { t: 0 };
    const { t, stream } = table(now, []);
    t.onSite('pop1', { type: 'phase-start', id: 'preflight', title: 'check' });
    t.print('✓ pop0: ok');
    expect(stream.writes.at(-1)).toMatch(/^\r\x1b\[2A\x1b\[0J✓ pop0: ok\n/);
    expect(stream.writes.at(-1)).toContain('pop1      preflight');
    t.stop();
    expect(stream.writes.at(-1)).toBe('\r\x1b[2A\x1b[0J\x1b[?25h');
    const n = stream.writes.length;
    t.onSite('pop1', { type: 'phase-start', id: 'k3s', title: 'k3s' });
    expect(stream.writes.length).toBe(n);
  });

  it('cuts lines to the terminal width (a wrapped line would break the redraw)', () => {
    const stream = Object.assign(new FakeTty(), { columns: 40 });
    const t = new LiveTable({ stream, now: () => 0 });
    t.onSync('a-very-long-site-name-of-a-pop', { digest: 'd', sentBytes: 1, totalBytes: 2, bytesPerSecond: 1, etaSeconds: 1 });
    for (const l of t.frame()) expect(l.length).toBeLessThan(40);
  });

  it('formats a bar for a sync with nothing to send yet', () => {
    expect(syncBar({ digest: 'd', sentBytes: 0, totalBytes: 0, bytesPerSecond: 0, etaSeconds: Number.NaN })).toContain('ETA --');
  });
});

async function rolloutThrough(tty: boolean) {
  const stderr = Object.assign(new FakeTty(), { isTTY: tty });
  const stdout = new FakeTty();
  const out = new Output({ stdout, stderr, env: { NO_COLOR: '1' } }, false);
  const fleet = new FakeFleet(['pop1', 'pop2', 'pop3']);
  fleet.pop('pop3').fail = 'failed';
  const targets = fleet.targets();
  const plan = planRollout(
    targets.map((t) => ({ name: t.site.metadata.name })),
    RolloutSchema.parse({ canary: 1, waves: [2], maxFailures: 1 }),
  );
  const printer = rolloutPrinter(out, targets.length, 'installing', { throttleMs: 0 });
  await runRollout({
    fleet: 'edge',
    plan,
    targets,
    bundle: { name: 'test-bundle', digest: DIGEST },
    operation: fleet.operation,
    facts: fleet.facts,
    runOptions: { onEvent: printer.onEvent },
    stateDir: mkdtempSync(path.join(tmp, 'state-')),
    resume: false,
    onProgress: printer.onProgress,
  });
  printer.stop();
  return stderr.text;
}

describe('the rollout printer', () => {
  it('on a terminal: the live table, with the wave counts and each site’s result above it', async () => {
    const text = await rolloutThrough(true);
    expect(text).toContain('\x1b[0J');
    expect(text).toMatch(/canary: 0\/1 done \(0 ok, 0 failed\), 1 running, 0 waiting/);
    expect(text).toMatch(/ {2}pop1 {6}install/);
    expect(text).toMatch(/wave 1: 1\/2 done \(0 ok, 1 failed\), 1 running, 0 waiting/);
    expect(text).toMatch(/wave 1: 2\/2 done \(1 ok, 1 failed\)/);
    expect(text).toMatch(/✓ pop1: ok /);
    expect(text).toMatch(/✗ pop3: failed .*\n {4}failed in install: k3s did not become ready on pop3/);
    // Per-phase lines are not on the terminal (they are in each site's log).
    expect(text).not.toMatch(/pop1: ✓ install/);
  });

  it('without a terminal: plain lines, no escape sequences', async () => {
    const text = await rolloutThrough(false);
    expect(text).not.toContain('\x1b');
    const lines = text.trimEnd().split('\n');
    expect(lines).toContain('== canary: 1 site(s), tolerates 0 failure(s)');
    expect(lines.some((l) => /^pop1: ✓ install +\d/.test(l))).toBe(true);
    expect(lines.some((l) => /^✓ pop1: ok /.test(l))).toBe(true);
    expect(lines.some((l) => /^pop3: ✗ install /.test(l))).toBe(true);
    expect(lines).toContain('== wave 1: 1 ok, 1 failed, 0 not started; gate passed');
  });
});
