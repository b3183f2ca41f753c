// Runs the CLI two ways: in-process through main() (fast, many cases) and as the real `bin/fsm-edge.js`
// (what an operator runs; needs `npm run build`, which `npm test` does first).

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(REPO, 'bin', 'fsm-edge.js');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

class Capture {
  text = '';
  constructor(readonly isTTY = false) {}
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

export async function runMain(args: string[], opts: { env?: NodeJS.ProcessEnv; tty?: boolean } = {}): Promise<CliRun> {
  const stdout = new Capture(opts.tty);
  const stderr = new Capture(opts.tty);
  const env = opts.env ?? { PATH: process.env.PATH };
  const code = await main(['node', 'fsm-edge', ...args], { stdout, stderr, env });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

export function runBin(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliRun {
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js'))) {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (`npm test` does)');
  }
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? { PATH: process.env.PATH, HOME: process.env.HOME },
    encoding: 'utf8',
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
