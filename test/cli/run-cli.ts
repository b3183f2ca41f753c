// The one way tests run the fsm-edge CLI. No test meets a stale or missing dist/:
//   runMain   — in-process through main(), for the many quick cases;
//   runCli    — a child process, synchronous: what an operator's shell sees. It is bin/fsm-edge.js when dist/ was
//               built after the last change to src/ (`npm test` builds it first), else `tsx test/cli/fsm-edge.ts`
//               from source: the same main(), and 0.6 s of CPU a start instead of tsx's 1.7 s — the lab tests
//               start the CLI a few hundred times;
//   spawnCli  — the same, asynchronous, watched while it runs (kill it on a line, act on a line);
//   runBuiltBin — the published entry point bin/fsm-edge.js over dist/, built first when missing or stale.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';
import { killTree } from '../install/kill-tree.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(REPO, 'bin', 'fsm-edge.js');
/** The CLI from source, as a command line (tmux sessions type it). */
export const TSX = join(REPO, 'node_modules', '.bin', 'tsx');
export const CLI_ENTRY = join(REPO, 'test', 'cli', 'fsm-edge.ts');
export const CLI_COMMAND = `${TSX} ${CLI_ENTRY}`;

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

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
}

let cli: [string, string[]] | undefined;
/** The CLI child's command line: the built bin when dist/ is newer than src/, else tsx over the source. */
export function cliCommand(): [string, string[]] {
  const dist = join(REPO, 'dist', 'cli', 'main.js');
  cli ??=
    existsSync(dist) && newestMtime(join(REPO, 'dist')) >= newestMtime(join(REPO, 'src')) ? [process.execPath, [BIN]] : [TSX, [CLI_ENTRY]];
  return cli;
}

export function runCli(args: string[], opts: RunOptions = {}): CliRun {
  const [cmd, pre] = cliCommand();
  const r = spawnSync(cmd, [...pre, ...args], {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? { PATH: process.env.PATH, HOME: process.env.HOME },
    encoding: 'utf8',
    ...(opts.input !== undefined ? { input: opts.input } : { stdio: ['ignore', 'pipe', 'pipe'] }),
    timeout: opts.timeoutMs ?? 600_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface WatchedRun {
  child: ChildProcess;
  done: Promise<CliRun & { signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
  exited(): boolean;
  /** SIGKILL the CLI and every process under it: what a crashed controller looks like to the POP. */
  kill(): void;
}

export interface WatchOptions extends Omit<RunOptions, 'input' | 'timeoutMs'> {
  /** Called with all of stderr so far, each time more arrives. */
  onStderr?(all: string, run: WatchedRun): void;
}

export function spawnCli(args: string[], opts: WatchOptions = {}): WatchedRun {
  const [cmd, pre] = cliCommand();
  const child = spawn(cmd, [...pre, ...args], {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let exited = false;
  const run: WatchedRun = {
    child,
    done: new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        exited = true;
        resolve({ code: code ?? -1, signal, stdout: out, stderr: err });
      }),
    ),
    stdout: () => out,
    stderr: () => err,
    exited: () => exited,
    kill: () => killTree(child.pid!),
  };
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    opts.onStderr?.(err, run);
  });
  return run;
}

function newestMtime(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
    const p = join(dir, e.name);
    return Math.max(m, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }, 0);
}

/** The real bin/fsm-edge.js; dist/ is built first when it is missing or older than src/. */
export function runBuiltBin(args: string[], opts: RunOptions = {}): CliRun {
  const dist = join(REPO, 'dist', 'cli', 'main.js');
  if (!existsSync(dist) || newestMtime(join(REPO, 'src')) > newestMtime(join(REPO, 'dist'))) {
    const b = spawnSync(join(REPO, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], { cwd: REPO, encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`npm run build failed:\n${b.stdout}${b.stderr}`);
  }
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? { PATH: process.env.PATH, HOME: process.env.HOME },
    encoding: 'utf8',
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
