// waitThenRestartK3sScript run by a real sh, with `timeout`, `sleep` and `systemctl` replaced by recorders: a
// slow /readyz gets the rest of the wait (not a fixed 10 s), and k3s is restarted only when the wait ran out.

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { waitThenRestartK3sScript } from '../../src/install/k3s-upgrade.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'fsm-edge-k3s-wait-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs the script; the fake `timeout` answers /readyz with `answers` in turn (`slow`: sleeps its bound, exits 124). */
function run(waitSec: number, answers: Array<'ok' | 'slow' | 'refused'>) {
  const dir = mkdtempSync(path.join(tmp, 'bin-'));
  const log = path.join(dir, 'log');
  writeFileSync(path.join(dir, 'answers'), `${answers.join('\n')}\n`);
  const fake = (name: string, body: string) => {
    writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(dir, name), 0o755);
  };
  fake(
    'timeout',
    [
      `echo "timeout $*" >> ${log}`,
      'if [ "$2" = systemctl ]; then exit 0; fi',
      `a=$(head -n1 ${dir}/answers); sed -i 1d ${dir}/answers`,
      'case "$a" in ok) echo ok ;; slow) /bin/sleep "$1"; exit 124 ;; *) exit 1 ;; esac',
    ].join('\n'),
  );
  fake('sleep', `echo "sleep $*" >> ${log}`);
  fake('systemctl', `echo "systemctl $*" >> ${log}`);
  fake('journalctl', 'true');
  const r = (() => {
    try {
      return {
        code: 0,
        stdout: execFileSync('sh', ['-c', waitThenRestartK3sScript(waitSec, 300)], {
          env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
          encoding: 'utf8',
          stdio: 'pipe',
        }),
      };
    } catch (e) {
      return { code: (e as { status: number }).status, stdout: String((e as { stdout: string }).stdout) };
    }
  })();
  return { ...r, log: readFileSync(log, 'utf8').trim().split('\n') };
}

describe('waitThenRestartK3sScript', () => {
  it('gives one ask the whole wait, not 10 s, and leaves a k3s that answers ok alone', () => {
    const r = run(120, ['refused', 'ok']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('k3s ready, not restarted\n');
    const asks = r.log.filter((l) => l.includes('/readyz'));
    expect(asks).toHaveLength(2);
    const bound = Number(/^timeout (\d+) /.exec(asks[0]!)?.[1]);
    expect(bound).toBeGreaterThanOrEqual(119);
    expect(bound).toBeLessThanOrEqual(120);
    expect(r.log.some((l) => l.startsWith('systemctl restart') || l.includes('systemctl restart'))).toBe(false);
  });

  it('restarts k3s only after the wait ran out, and no ask outlives the wait', () => {
    const r = run(2, ['slow', 'slow', 'slow']);
    expect(r.code).toBe(0);
    const asks = r.log.filter((l) => l.includes('/readyz'));
    expect(asks.length).toBeGreaterThanOrEqual(1);
    for (const a of asks) expect(Number(/^timeout (\d+) /.exec(a)?.[1])).toBeLessThanOrEqual(2);
    expect(r.log.at(-1)).toMatch(/^timeout 300 systemctl restart k3s$/);
  });
});
