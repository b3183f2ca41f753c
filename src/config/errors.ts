// The error every layer throws when the operator can act on it. It lives in config/, the lowest layer, so
// bundle, transport, state, engine and the operations can all raise one without importing the CLI; only the
// command line layer turns a kind into an exit code and text.

/**
 * What went wrong, as data a caller can decide from (never parse the message):
 * - `usage`: the command line is wrong;
 * - `config`: an input file is wrong (config documents, secrets, keys, recipes);
 * - `refused`: a safety check stopped the operation before it changed anything;
 * - `unreachable`: a host or service could not be reached;
 * - `timeout`: a bounded wait ran out;
 * - `locked`: another controller is working on the same POP;
 * - `aborted`: the operator stopped it (Ctrl-C, SIGTERM);
 * - `failed`: the operation itself failed.
 */
export const ERROR_KINDS = ['usage', 'config', 'refused', 'unreachable', 'timeout', 'locked', 'aborted', 'failed'] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export function isErrorKind(s: string): s is ErrorKind {
  return (ERROR_KINDS as readonly string[]).includes(s);
}

/** One finding about an input, pointing at where it is: `file:line:column  path  message`. */
export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  /** Field path inside the document, e.g. `spec.ssh.port` (empty for whole-file problems). */
  path: string;
  message: string;
  /** Index of the YAML document in a multi-document file (0-based). */
  document?: number;
}

export interface FsmEdgeErrorOptions {
  /** The next step for the operator, shown under the message. */
  fix?: string;
  /** A finer machine-readable name than the kind (e.g. `secret`, `host-key`); defaults to the kind. */
  code?: string;
  /** Every finding in the inputs, each with its file:line:column. */
  diagnostics?: Diagnostic[];
  cause?: unknown;
}

export class FsmEdgeError extends Error {
  readonly kind: ErrorKind;
  readonly fix?: string;
  readonly code: string;
  readonly diagnostics: Diagnostic[];

  constructor(kind: ErrorKind, message: string, opts: FsmEdgeErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'FsmEdgeError';
    this.kind = kind;
    if (opts.fix !== undefined) this.fix = opts.fix;
    this.code = opts.code ?? kind;
    this.diagnostics = opts.diagnostics ?? [];
  }
}

/** The command line asks for something that cannot be done as written. */
export class UsageError extends FsmEdgeError {
  constructor(message: string, fix?: string) {
    super('usage', message, fix === undefined ? {} : { fix });
    this.name = 'UsageError';
  }
}

/** Invalid configuration files: carries every finding, not just the first. */
export class ConfigError extends FsmEdgeError {
  constructor(message: string, diagnostics: Diagnostic[], fix?: string) {
    super('config', message, { diagnostics, ...(fix === undefined ? {} : { fix }) });
    this.name = 'ConfigError';
  }
}
