// fsm-edge as one file (what the stick carries): it builds, and runs with nothing beside it — no node_modules, no
// package.json — from a directory of its own.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildSingleFile } from '../../scripts/build-single.js';

describe('single-file CLI', () => {
  it('runs alone: --version, a command that loads the SSH and Kubernetes stacks, and a usage error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'single-'));
    const { file } = await buildSingleFile(path.join(dir, 'fsm-edge.mjs'));
    expect(fs.readdirSync(dir)).toEqual(['fsm-edge.mjs']);
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [file, ...args], { cwd: dir, encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
    expect(run('--version').stdout.trim()).toBe(pkg.version);
    const help = run('install', '--help');
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toContain('--local');
    const status = run('status', path.join(dir, 'missing.yaml'));
    expect(status.status).toBe(2);
    expect(status.stderr).not.toMatch(/internal error|is not defined|Cannot find module/);
  }, 60_000);
});
