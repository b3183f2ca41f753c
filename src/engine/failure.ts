// Failures as data: callers (the CLI, a fleet rollout deciding whether to spend its failure budget) decide from
// the kind, not from message text. The kinds are the config layer's ErrorKind, shared by every layer.

import { type ErrorKind, FsmEdgeError, isErrorKind } from '../config/errors.js';

export type FailureKind = ErrorKind;

/** A refusal the operator can act on: the reason and the fix. Nothing was changed on the host. */
export class PhaseRefusal extends FsmEdgeError {
  declare readonly fix: string;
  constructor(
    readonly phase: string,
    readonly reason: string,
    fix: string,
  ) {
    super('refused', `${phase}: ${reason}\n  fix: ${fix}`, { fix });
    this.name = 'PhaseRefusal';
  }
}

const NETWORK =
  /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EPIPE|socket hang up|Not connected|No response from server|connection lost|link (is )?down/i;

/** The kind of a thrown value: an explicit `kind` wins, then well-known error names, then network codes. */
export function failureKind(e: unknown): FailureKind {
  if (!(e instanceof Error)) return 'failed';
  const kind = (e as { kind?: unknown }).kind;
  if (typeof kind === 'string' && isErrorKind(kind)) return kind;
  switch (e.name) {
    case 'AbortError':
      return 'aborted';
    case 'PopLockedError':
      return 'locked';
    case 'WaitTimeoutError':
    case 'CommandTimeoutError':
    case 'TimeoutError':
      return 'timeout';
    case 'ConnectionLostError':
    case 'HostUnreachableError':
      return 'unreachable';
  }
  const code = (e as { code?: unknown }).code;
  if (NETWORK.test(`${e.message} ${typeof code === 'string' ? code : ''}`)) return 'unreachable';
  return 'failed';
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
