// The `fsm-edge` command: builds the commander tree (one file per verb) and turns every outcome into an
// exit code: 0 done, 1 the operation failed, 2 bad usage or bad configuration.

import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { commandPath } from './not-built.js';
import { activeOutput, attachIO, CliError, type CliIO, EXIT_OK, EXIT_USAGE, isCommanderError, Output } from './output.js';

export function packageVersion(): string {
  // src/cli/main.ts and dist/cli/main.js both sit two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

// One module per verb, loaded only when needed: `fsm-edge config validate` should not pay for loading the
// Kubernetes client and SSH stack that install and status use (about 1 s of CPU per start).
const COMMAND_MODULES: Record<string, () => Promise<{ register(program: Command): void }>> = {
  backup: () => import('./commands/backup.js'),
  bundle: () => import('./commands/bundle.js'),
  install: () => import('./commands/install.js'),
  init: () => import('./commands/init.js'),
  register: () => import('./commands/register.js'),
  recover: () => import('./commands/recover.js'),
  rollout: () => import('./commands/rollout.js'),
  status: () => import('./commands/status.js'),
  config: () => import('./commands/config.js'),
};

/** The verbs whose modules this command line needs: the one typed first, none for `--version`, else all. */
function neededVerbs(args: readonly string[]): string[] {
  if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) return [];
  const first = args[0];
  return first !== undefined && Object.hasOwn(COMMAND_MODULES, first) ? [first] : Object.keys(COMMAND_MODULES);
}

/**
 * The commander tree with every verb, or only `verbs` (main() passes the one the user named: its help,
 * options and errors are the same; only the top-level help and suggestions need all the others).
 */
export async function buildProgram(io: CliIO, verbs: readonly string[] = Object.keys(COMMAND_MODULES)): Promise<Command> {
  const program = new Command('fsm-edge');
  const version = packageVersion();
  program
    .description('Edge-in-a-box k3s + Flomesh Service Mesh: signed airgap bundles, SSH install, hub registration')
    .version(version, '-V, --version', 'print the fsm-edge version')
    .helpOption('-h, --help', 'show help for a command')
    .helpCommand(false)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // Usage errors are reported by main() through Output, the same way as every other error.
      outputError: () => {},
    })
    .addHelpText(
      'after',
      `
Exit codes: 0 done, 1 the operation failed, 2 bad usage or bad configuration.
Environment: NO_COLOR disables colour; FSM_EDGE_DEBUG=1 adds stack traces to errors.`,
    );

  // Settings above (exitOverride, output) are copied into each subcommand as it is created.
  const modules = await Promise.all(verbs.map((n) => COMMAND_MODULES[n]!()));
  for (const m of modules) m.register(program);

  for (const cmd of allCommands(program)) {
    cmd.version(version, '-V, --version', 'print the fsm-edge version').helpCommand(false);
  }
  attachIO(program, io);
  return program;
}

/** Commander's message, reworded, with a hint naming the help of the command the user was typing. */
function usageError(err: { code: string; message: string }, program: Command, args: string[]): CliError {
  const message = err.message.replace(/^error:\s*/, '').replace(
    /\n\(Did you mean (?:one of )?(.+)\?\)$/,
    (_m, names: string) =>
      ` (did you mean ${names
        .split(', ')
        .map((n) => `\`${n}\``)
        .join(' or ')}?)`,
  );
  let cmd = program;
  for (const a of args) {
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    cmd = sub;
  }
  const path = ['fsm-edge', ...commandPath(cmd).split(' ').filter(Boolean)].join(' ');
  return new CliError(message, EXIT_USAGE, err.code.replace(/^commander\./, 'usage.'), `see \`${path} --help\``);
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}

/** Runs the CLI with `argv` as in `process.argv` (node, script, args…); returns the exit code. */
export async function main(argv: string[], io?: Partial<CliIO>): Promise<number> {
  const fullIO: CliIO = {
    stdout: io?.stdout ?? process.stdout,
    stderr: io?.stderr ?? process.stderr,
    env: io?.env ?? process.env,
  };
  ignoreClosedPipe(fullIO.stdout);
  ignoreClosedPipe(fullIO.stderr);
  if (!io) reportStrayErrors(fullIO);
  return run(await buildProgram(fullIO, neededVerbs(argv.slice(2))), argv, fullIO);
}

/**
 * A rejection or exception nobody awaited (a bug, or a library emitting late) still ends as one error line and
 * exit code 1, never as a Node stack dump; FSM_EDGE_DEBUG=1 shows the stack.
 */
function reportStrayErrors(io: CliIO): void {
  if (process.listenerCount('uncaughtException') > 0) return;
  const report = (err: unknown) => {
    const out = new Output(io, false);
    out.fail(
      new CliError(
        `internal error: ${err instanceof Error ? err.message : String(err)}`,
        1,
        'internal',
        'run again with FSM_EDGE_DEBUG=1 and report the output',
      ),
    );
    if (out.debug && err instanceof Error && err.stack) io.stderr.write(err.stack + '\n');
    process.exit(1);
  };
  process.on('uncaughtException', report);
  process.on('unhandledRejection', report);
}

/**
 * `fsm-edge config schema | head` closes the pipe early. That is the reader's choice, not a failure: drop the
 * rest of the output instead of crashing with a stack trace, and let the command (maybe an install) finish.
 */
function ignoreClosedPipe(stream: CliIO['stdout']): void {
  const s = stream as Partial<NodeJS.WriteStream>;
  if (typeof s.on !== 'function' || (s.listenerCount?.('error') ?? 0) > 0) return;
  s.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
    throw err;
  });
}

/** Parses and runs `argv` on a built program; every outcome becomes an exit code (tests add commands to `program`). */
export async function run(program: Command, argv: string[], fullIO: CliIO): Promise<number> {
  try {
    await program.parseAsync(argv, { from: 'node' });
    return activeOutput(program)?.exitCode ?? EXIT_OK;
  } catch (err) {
    if (isCommanderError(err)) {
      // --help and --version end parsing through an "error" with exit code 0.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // A group command without its subcommand (`fsm-edge bundle`) printed its help: that is bad usage.
      if (err.code === 'commander.help') return EXIT_USAGE;
    }
    const out = activeOutput(program) ?? new Output(fullIO, argv.includes('--json'));
    return out.fail(isCommanderError(err) ? usageError(err, program, argv.slice(2)) : err);
  }
}
