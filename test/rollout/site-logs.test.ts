import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SiteLogs } from '../../src/rollout/site-logs.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'rollout-logs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('rollout site logs', () => {
  it('keeps each site’s events in its own file, with the reason and fix of a refusal', () => {
    const logs = new SiteLogs(path.join(tmp, 'logs'));
    const at = new Date('2026-11-29T08:00:00Z');
    logs.write('pop1', { type: 'connected', host: 'pop1.example' }, at);
    logs.write('pop2', { type: 'phase-start', id: 'preflight', title: 'check the POP' }, at);
    logs.write(
      'pop2',
      {
        type: 'phase-end',
        report: {
          id: 'preflight',
          title: 'check the POP',
          status: 'refused',
          durationMs: 12,
          summary: 'arch arm64 is not in the bundle',
          changes: [],
          warnings: [],
          metrics: {},
          reason: 'arch arm64 is not in the bundle',
          fix: 'use the arm64 bundle',
        },
      },
      at,
    );
    expect(readFileSync(logs.path('pop1'), 'utf8')).toBe('2026-11-29T08:00:00.000Z connected to pop1.example\n');
    expect(readFileSync(logs.path('pop2'), 'utf8').split('\n')).toEqual([
      '2026-11-29T08:00:00.000Z start preflight: check the POP',
      '2026-11-29T08:00:00.000Z refused preflight (12 ms): arch arm64 is not in the bundle',
      '2026-11-29T08:00:00.000Z     reason: arch arm64 is not in the bundle',
      '2026-11-29T08:00:00.000Z     fix: use the arm64 bundle',
      '',
    ]);
  });

  it('refuses a site name that would leave the log directory', () => {
    const logs = new SiteLogs(path.join(tmp, 'logs'));
    expect(() => logs.path('../../etc/cron.d/x')).toThrow(/not a safe file name/);
    expect(() => logs.path('a/b')).toThrow(/not a safe file name/);
  });
});
