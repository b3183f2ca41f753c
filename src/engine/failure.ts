// Failures as data: callers (the CLI, a fleet rollout deciding whether to spend its failure budget) decide from
// the kind, not from message text.

export type FailureKind =
  /** A check said no before anything changed: the reason and the fix. */
  | 'refused'
  /** The POP (or the hub) could not be reached, or the link dropped. */
  | 'unreachable'
  /** Something did not happen within its bound. */
  | 'timed-out'
  /** Another controller holds the POP's lock. */
  | 'locked'
  /** Stopped by the operator (Ctrl-C, SIGTERM) or the caller's signal. */
  | 'aborted'
  | 'failed';

/** A refusal the operator can act on: the reason and the fix. Nothing was changed on the host. */
export class PhaseRefusal extends Error {
  readonly kind = 'refused' as const;
  constructor(
    readonly phase: string,
    readonly reason: string,
    readonly fix: string,
  ) {
    super(`${phase}: ${reason}\n  fix: ${fix}`);
    this.name = 'PhaseRefusal';
  }
}

const NETWORK = /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EPIPE|socket hang up|Not connected|No response from server|connection lost|link (is )?down/i;

/** The kind of a thrown value: an explicit `kind` wins, then well-known error names, then network codes. */
export function failureKind(e: unknown): FailureKind {
  if (e instanceof PhaseRefusal) return 'refused';
  if (!(e instanceof Error)) return 'failed';
  const kind = (e as { kind?: unknown }).kind;
  if (typeof kind === 'string' && ['refused', 'unreachable', 'timed-out', 'locked', 'aborted', 'failed'].includes(kind)) {
    return kind as FailureKind;
  }
  switch (e.name) {
    case 'AbortError':
      return 'aborted';
    case 'PopLockedError':
      return 'locked';
    case 'WaitTimeoutError':
    case 'CommandTimeoutError':
    case 'TimeoutError':
      return 'timed-out';
    case 'HostUnreachableError':
    case 'ConnectError':
      return 'unreachable';
  }
  const code = (e as { code?: unknown }).code;
  if (NETWORK.test(`${e.message} ${typeof code === 'string' ? code : ''}`)) return 'unreachable';
  return 'failed';
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
