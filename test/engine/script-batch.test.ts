// The change-batch protocol against a real POSIX shell (dash, as on Debian POPs; busybox sh too when present):
// files written exactly, modes set, the first failing change stops the batch and is named, its stderr kept.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { batchScript, parseBatch, type ScriptChange, writeFileScript } from '../../src/engine/script-batch.js';

const dir = mkdtempSync(path.join(tmpdir(), 'fsm-edge-batch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const shells = ['/bin/sh', ...(existsSync('/bin/busybox') ? ['/bin/busybox sh'] : [])];

function run(shell: string, changes: ScriptChange[]) {
  const nonce = 'abc123';
  const [cmd, ...args] = shell.split(' ');
  const r = spawnSync(cmd!, [...args, '-s'], { input: batchScript(changes, nonce), encoding: 'utf8' });
  return { code: r.status, ...parseBatch(r.stdout, r.stderr, changes.length, nonce) };
}

describe.each(shells)('change batches in %s', (shell) => {
  it('writes every file byte for byte with its mode, and a change cannot read the batch from stdin', () => {
    const a = path.join(dir, `${shell.length}-a`, 'config.yaml');
    const b = path.join(dir, `${shell.length}-b.plan`);
    const tricky = "key: 'value with $HOME and `backticks`'\nFSM_EDGE_EOF_x\n\\n not an escape\n";
    const r = run(shell, [
      { description: 'write a', script: writeFileScript(a, tricky, 0o600) },
      { description: 'read stdin', script: 'cat; echo read-nothing' },
      { description: 'write b', script: writeFileScript(b, '', 0o644) },
    ]);
    expect(r.code).toBe(0);
    expect(r.ended).toBe(true);
    expect(readFileSync(a, 'utf8')).toBe(tricky);
    expect(statSync(a).mode & 0o777).toBe(0o600);
    expect(readFileSync(b, 'utf8')).toBe('');
    expect(r.stdout[1]!.trim()).toBe('read-nothing');
  });

  it('stops at the first failing change, names it, and keeps its stderr apart from the others', () => {
    const after = path.join(dir, `${shell.length}-never`);
    const r = run(shell, [
      { description: 'ok', script: 'echo fine >&2' },
      { description: 'start k3s', script: 'echo "k3s did not start" >&2; false; echo unreachable' },
      { description: 'never', script: writeFileScript(after, 'x\n', 0o644) },
    ]);
    expect(r.failed).toEqual({ index: 1, code: 1 });
    expect(r.stderr[1]).toContain('k3s did not start');
    expect(r.stderr[0]).not.toContain('k3s did not start');
    expect(r.stdout[1]).not.toContain('unreachable');
    expect(existsSync(after)).toBe(false);
  });
});
