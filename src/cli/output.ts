// Everything the CLI prints goes through here, so human vs `--json`, colour and exit codes are decided once.
// Exit codes: 0 done, 1 the operation failed, 2 bad usage or bad configuration.

import type { Command } from 'commander';
import { createColors } from 'picocolors';
import { ConfigError, FsmEdgeError, isErrorKind, UsageError, type Diagnostic, type ErrorKind } from '../config/errors.js';

export { ConfigError, FsmEdgeError, UsageError, type Diagnostic, type ErrorKind };

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The one place a kind of error becomes an exit code: 2 means "fix your input", 1 "the operation failed". */
export function exitCodeFor(kind: ErrorKind): number {
  return kind === 'usage' || kind === 'config' ? EXIT_USAGE : EXIT_FAILED;
}

/** Where the CLI reads and writes; `main()` uses the process's, tests pass their own. */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

export interface Writable {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

/**
 * An error raised by the CLI itself, in its historical form (message, exit code, code, hint). The exit code
 * picks the kind: 2 is `usage` (or `config` for the codes that name an input file), 1 is the kind its code
 * names (`refused`, `timeout`, …) or `failed`.
 */
export class CliError extends FsmEdgeError {
  constructor(message: string, exitCode: number = EXIT_FAILED, code: string = 'failed', hint?: string, diagnostics: Diagnostic[] = []) {
    super(kindFor(exitCode, code), message, { code, diagnostics, ...(hint === undefined ? {} : { fix: hint }) });
    this.name = 'CliError';
  }

  get exitCode(): number {
    return exitCodeFor(this.kind);
  }

  get hint(): string | undefined {
    return this.fix;
  }
}

const INPUT_CODES = new Set(['config', 'secret', 'key']);

function kindFor(exitCode: number, code: string): ErrorKind {
  if (exitCode === EXIT_USAGE) return INPUT_CODES.has(code) ? 'config' : 'usage';
  return isErrorKind(code) && exitCodeFor(code) === exitCode ? code : 'failed';
}

export class NotBuiltError extends CliError {
  constructor(commandPath: string, issue: number) {
    super(`\`fsm-edge ${commandPath}\` is not built yet (issue ${issue})`, EXIT_FAILED, 'not-built');
    this.name = 'NotBuiltError';
  }
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = `${d.file}:${d.line}:${d.column}`;
  return d.path ? `${where}: ${d.path}: ${d.message}` : `${where}: ${d.message}`;
}

type Colors = ReturnType<typeof createColors>;

/** Colour only when writing to a terminal and the user has not set NO_COLOR (https://no-color.org). */
export function colourEnabled(stream: Writable, env: NodeJS.ProcessEnv): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

export class Output {
  readonly color: Colors;
  readonly errColor: Colors;
  /** Set by a command that finished but must report failure (e.g. `config validate` found errors). */
  exitCode = EXIT_OK;

  constructor(
    readonly io: CliIO,
    readonly json: boolean,
  ) {
    this.color = createColors(colourEnabled(io.stdout, io.env));
    this.errColor = createColors(colourEnabled(io.stderr, io.env));
  }

  get debug(): boolean {
    return this.io.env.FSM_EDGE_DEBUG === '1';
  }

  /** A line of human output on stdout; suppressed with --json (stdout then carries only the JSON doc). */
  line(text = ''): void {
    if (!this.json) this.io.stdout.write(text + '\n');
  }

  /** Progress and notes go to stderr so they never mix with the result, even with --json. */
  note(text: string): void {
    this.io.stderr.write(text + '\n');
  }

  ok(text: string): void {
    this.line(`${this.color.green('✓')} ${text}`);
  }

  warn(text: string): void {
    this.io.stderr.write(`${this.errColor.yellow('warning:')} ${text}\n`);
  }

  /** The single result of a command: the JSON document with --json, else the human rendering. */
  result(doc: unknown, human: () => void): void {
    if (this.json) this.io.stdout.write(JSON.stringify(doc, null, 2) + '\n');
    else human();
  }

  /** Reports an error and returns the exit code for it. Never prints a stack unless FSM_EDGE_DEBUG=1. */
  fail(err: unknown): number {
    const e = asFsmEdgeError(err);
    const exitCode = exitCodeFor(e.kind);
    if (this.json) {
      const doc = {
        ok: false,
        error: {
          code: e.code,
          kind: e.kind,
          message: e.message,
          exitCode,
          ...(e.fix ? { hint: e.fix } : {}),
          ...(e.diagnostics.length ? { diagnostics: e.diagnostics } : {}),
        },
      };
      this.io.stdout.write(JSON.stringify(doc, null, 2) + '\n');
    } else {
      const c = this.errColor;
      for (const d of e.diagnostics) this.io.stderr.write(`${c.bold(formatDiagnostic(d))}\n`);
      this.io.stderr.write(`${c.red('error:')} ${e.message}\n`);
      if (e.fix) this.io.stderr.write(`${c.dim('hint:')} ${e.fix}\n`);
    }
    if (this.debug && err instanceof Error && err.stack) this.io.stderr.write(err.stack + '\n');
    return exitCode;
  }
}

/** The one mapping from anything thrown to an operator-facing error with a kind (and so an exit code). */
export function asFsmEdgeError(err: unknown): FsmEdgeError {
  if (err instanceof FsmEdgeError) return err;
  if (isCommanderError(err)) {
    const message = err.message.replace(/^error:\s*/, '');
    return new CliError(message, EXIT_USAGE, err.code.replace(/^commander\./, 'usage.'), 'see `fsm-edge --help`');
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return new FsmEdgeError('failed', err.message, { code: typeof code === 'string' ? code : 'failed' });
  }
  return new FsmEdgeError('failed', String(err));
}

interface CommanderErrorLike {
  code: string;
  exitCode: number;
  message: string;
}

export function isCommanderError(err: unknown): err is CommanderErrorLike {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as CommanderErrorLike).code === 'string' &&
    (err as CommanderErrorLike).code.startsWith('commander.')
  );
}

// Commands reach the Output through their Command object: main() registers one per run on the root program.
const outputs = new WeakMap<Command, CliIO>();

export function attachIO(program: Command, io: CliIO): void {
  outputs.set(program, io);
}

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

const active = new WeakMap<Command, Output>();

/** The Output for this run, honouring the command's `--json` option. */
export function outputFor(cmd: Command): Output {
  const root = rootOf(cmd);
  const existing = active.get(root);
  const json = Boolean((cmd.optsWithGlobals() as { json?: boolean }).json);
  if (existing && existing.json === json) return existing;
  const io = outputs.get(root) ?? { stdout: process.stdout, stderr: process.stderr, env: process.env };
  const out = new Output(io, json);
  if (existing) out.exitCode = existing.exitCode;
  active.set(root, out);
  return out;
}

/** The Output created during this run, if a command asked for one (main() reads its exit code). */
export function activeOutput(program: Command): Output | undefined {
  return active.get(program);
}
