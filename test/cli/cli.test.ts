// The command tree, help and version at every level, exit codes (0 done, 1 failed, 2 bad usage/config),
// --json as one document on stdout, colour only on a TTY without NO_COLOR, and no stack traces.

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, run } from '../../src/cli/main.js';
import { notBuilt } from '../../src/cli/not-built.js';
import { ConfigError, type CliIO } from '../../src/cli/output.js';
import { BIN, REPO, runBuiltBin, runMain } from './run-cli.js';

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const ANSI = /\x1b\[\d+m/;

function leafAndGroupPaths(cmd: Command, prefix: string[] = []): string[][] {
  return cmd.commands.flatMap((c) => [[...prefix, c.name()], ...leafAndGroupPaths(c, [...prefix, c.name()])]);
}

function captureIO(env: NodeJS.ProcessEnv = {}): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => (out += s), isTTY: false },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env,
    out: () => out,
    err: () => err,
  };
}

describe('command tree', async () => {
  const program = await buildProgram(captureIO());
  const paths = leafAndGroupPaths(program).map((p) => p.join(' '));

  it('has every command the issues name', () => {
    expect(paths).toEqual(
      expect.arrayContaining([
        'bundle',
        'bundle build',
        'bundle verify',
        'bundle inspect',
        'bundle diff',
        'bundle keygen',
        'install',
        'init',
        'register',
        'status',
        'config',
        'config validate',
        'config schema',
      ]),
    );
  });

  it('top-level --help lists the commands and the exit codes', async () => {
    const r = await runMain(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['bundle', 'install', 'init', 'register', 'status', 'config']) expect(r.stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
    expect(r.stdout).toContain('Exit codes: 0 done, 1 the operation failed, 2 bad usage or bad configuration.');
    expect(r.stderr).toBe('');
  });

  it.each(paths)('`%s --help` and `--version` work', async (path) => {
    const args = path.split(' ');
    const help = await runMain([...args, '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(new RegExp(`^Usage: fsm-edge ${path}\\b`));
    expect(help.stdout.split('\n').length).toBeGreaterThan(5);
    const version = await runMain([...args, '--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`${VERSION}\n`);
  });

  it('documents the options later issues need', async () => {
    const install = (await runMain(['install', '--help'])).stdout;
    for (const o of ['--bundle <dir>', '--dry-run', '--json', '--accept-new-host-key', '--max-rate <rate>', '--trust-key <file>']) {
      expect(install).toContain(o);
    }
    const build = (await runMain(['bundle', 'build', '--help'])).stdout;
    for (const o of ['--recipe <file>', '--lock <file>', '--out <dir>', '--arch <list>', '--signing-key <ref>']) expect(build).toContain(o);
  });
});

describe('exit codes', () => {
  it('a group without its subcommand shows help on stderr and exits 2', async () => {
    const r = await runMain(['bundle']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: fsm-edge bundle');
    expect(r.stdout).toBe('');
  });

  it('no command at all exits 2', async () => {
    expect((await runMain([])).code).toBe(2);
  });

  it('unknown command: exit 2 with the closest command', async () => {
    const r = await runMain(['instal']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: unknown command 'instal' (did you mean `install`?)");
    expect(r.stderr).toContain('hint: see `fsm-edge --help`');
  });

  it('unknown option: exit 2, closest option, help of that command', async () => {
    const r = await runMain(['bundle', 'build', '--arc', 'amd64']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: unknown option '--arc' (did you mean `--arch`?)");
    expect(r.stderr).toContain('hint: see `fsm-edge bundle build --help`');
  });

  it('missing argument: exit 2', async () => {
    const r = await runMain(['config', 'validate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: missing required argument 'file'");
  });

  it('usage error with --json: one JSON document on stdout, nothing on stderr', async () => {
    const r = await runMain(['config', 'validate', '--json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false,
      error: {
        code: 'usage.missingArgument',
        kind: 'usage',
        message: "missing required argument 'file'",
        exitCode: 2,
        hint: 'see `fsm-edge config validate --help`',
      },
    });
  });

  it('a command that is not built yet says so and exits 1 (human and --json)', async () => {
    const io = captureIO();
    const program = await buildProgram(io);
    program.command('probe').option('--json').action(notBuilt(99));
    expect(await run(program, ['node', 'fsm-edge', 'probe'], io)).toBe(1);
    expect(io.err()).toBe('error: `fsm-edge probe` is not built yet (issue 99)\n');
    expect(io.out()).toBe('');

    const io2 = captureIO();
    const program2 = await buildProgram(io2);
    program2.command('probe').option('--json').action(notBuilt(99));
    expect(await run(program2, ['node', 'fsm-edge', 'probe', '--json'], io2)).toBe(1);
    expect(JSON.parse(io2.out())).toMatchObject({ ok: false, error: { code: 'not-built', exitCode: 1 } });
  });

  it('an operation that throws exits 1 without a stack trace; FSM_EDGE_DEBUG=1 shows it', async () => {
    for (const [env, stack] of [
      [{}, false],
      [{ FSM_EDGE_DEBUG: '1' }, true],
    ] as const) {
      const io = captureIO({ ...env });
      const program = await buildProgram(io);
      program.command('boom').action(() => {
        throw new Error('the POP went away');
      });
      expect(await run(program, ['node', 'fsm-edge', 'boom'], io)).toBe(1);
      expect(io.err()).toContain('error: the POP went away');
      expect(/\n\s+at .+\(.+:\d+:\d+\)/.test(io.err())).toBe(stack);
    }
  });

  it('a configuration error exits 2 and lists every finding with its location', async () => {
    const io = captureIO();
    const program = await buildProgram(io);
    program.command('cfg').action(() => {
      throw new ConfigError('invalid configuration site.yaml', [
        { file: 'site.yaml', line: 6, column: 11, path: 'spec.ssh.host', message: 'bad host' },
        { file: 'site.yaml', line: 9, column: 3, path: '', message: 'something else' },
      ]);
    });
    expect(await run(program, ['node', 'fsm-edge', 'cfg'], io)).toBe(2);
    expect(io.err()).toBe(
      'site.yaml:6:11: spec.ssh.host: bad host\nsite.yaml:9:3: something else\nerror: invalid configuration site.yaml\n',
    );
  });
});

describe('output', () => {
  const args = ['config', 'validate', join(REPO, 'examples', 'hub.yaml')];

  it('colour on a TTY', async () => {
    const r = await runMain(args, { tty: true, env: {} });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(ANSI);
  });

  it('no colour with NO_COLOR, even on a TTY', async () => {
    const r = await runMain(args, { tty: true, env: { NO_COLOR: '1' } });
    expect(r.stdout).not.toMatch(ANSI);
    expect(r.stdout).toContain('✓ ');
  });

  it('plain lines when stdout is not a TTY', async () => {
    const r = await runMain(args, { tty: false, env: {} });
    expect(r.stdout).not.toMatch(ANSI);
    expect(r.stdout).toBe(`✓ ${args[2]}: Hub hub-eu\n`);
  });

  it('--json prints exactly one JSON document and no human lines', async () => {
    const r = await runMain([...args, '--json'], { tty: true, env: {} });
    expect(r.stdout).not.toMatch(ANSI);
    const doc = JSON.parse(r.stdout) as { ok: boolean };
    expect(doc.ok).toBe(true);
  });
});

// Spawning node is slow on a loaded 2-core machine; these are correctness checks, not timings.
describe('the real binary', { timeout: 180_000 }, () => {
  // The published entry point over dist/ (built here when missing or stale): what `npx fsm-edge` runs.
  it('--help, --version, usage errors', () => {
    const help = runBuiltBin(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: fsm-edge [options] [command]');
    const version = runBuiltBin(['config', '--version']);
    expect(version.stdout).toBe(`${VERSION}\n`);
    const bad = runBuiltBin(['install', 'site.yaml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("error: required option '--bundle <dir>' not specified");
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it('a reader that closes the pipe early (`| head`) causes no crash and no stack trace', async () => {
    runBuiltBin(['--version']);
    const child = spawn(process.execPath, [BIN, 'config', 'schema'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.destroy(); // the reader is gone before the first write: every write gets EPIPE
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('a stray rejection ends as one error line and exit 1, not a Node stack dump', () => {
    runBuiltBin(['--version']);
    const script = `const { main } = await import(${JSON.stringify(join(REPO, 'dist/cli/main.js'))});
setTimeout(() => Promise.reject(new Error('late boom')), 10);
process.exitCode = await main(['node', 'fsm-edge', '--version']);
await new Promise((r) => setTimeout(r, 5000));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('error: internal error: late boom\nhint: run again with FSM_EDGE_DEBUG=1 and report the output\n');
  });

  it('colourless when piped (stdout is not a TTY), one JSON doc with --json', () => {
    const r = runBuiltBin(['config', 'validate', 'examples/site.yaml'], { env: { PATH: process.env.PATH, FORCE_COLOR: '' } });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(ANSI);
    const j = runBuiltBin(['config', 'schema']);
    expect(JSON.parse(j.stdout)).toHaveProperty('oneOf');
  });
});
