// Without a terminal the wizard refuses and points at the unattended path; --yes without the answers it needs
// names the flag. Both exit 2 (bad usage) and write nothing.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';

function run(args: string[], cwd: string) {
  return runCli(args, { cwd, env: { ...process.env, NO_COLOR: '1' }, input: '' });
}

describe('fsm-edge init without a terminal', { timeout: 120_000 }, () => {
  it('refuses, says to use fsm-edge install, exits 2 and writes nothing', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wizard-notty-'));
    const r = run(['init'], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error: fsm-edge init asks questions and needs a terminal');
    expect(r.stderr).toContain('fsm-edge install site.yaml --bundle DIR --trust-key KEY');
    expect(fs.readdirSync(dir)).toEqual([]);
    fs.rmSync(dir, { recursive: true });
  });

  it('with --yes but no site name, names the flag that gives it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wizard-notty-'));
    const r = run(['init', '--yes'], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--yes: no default for “Site name');
    expect(r.stderr).toContain('give it with --name');
    expect(fs.readdirSync(dir)).toEqual([]);
    const bad = run(['init', '--yes', '--name', 'pop-1', '--ssh', 'pop@10.0.0.1:99999'], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/is not usable: port 99999 is out of range/);
    fs.rmSync(dir, { recursive: true });
  });
});
