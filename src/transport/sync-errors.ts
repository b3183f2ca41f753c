// How a blob sync fails, as types callers can decide on.

export class BlobSyncError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlobSyncError';
  }
}

/** The POP ran out of disk: nothing half-written is in the store; partials are kept for a later resume. */
export class DiskFullError extends Error {
  constructor(
    readonly host: string,
    readonly storeDir: string,
    message: string,
  ) {
    super(message);
    this.name = 'DiskFullError';
  }
}

/** Blobs that failed verification twice. Every other blob was synced and verified. */
export class BlobVerifyError extends Error {
  constructor(
    readonly host: string,
    readonly failed: Array<{ digest: string; got: string }>,
  ) {
    super(
      `${host}: ${failed.length} blob(s) failed sha256 verification on the POP twice and were not stored:\n` +
        failed.map((f) => `  ${f.digest} (the POP computed sha256:${f.got})`).join('\n') +
        `\n  The bundle's copy may be corrupt (re-run \`fsm-edge bundle verify\`), or the POP's disk/RAM is faulty.`,
    );
    this.name = 'BlobVerifyError';
  }
}

/** A stream's partial was not where the controller resumed: ask "have" again and resume from there. */
export class SkewError extends Error {
  readonly retryable = true;
}

/** A stream's writer owed an acknowledgement and said nothing for too long: handled like a lost link. */
export class StreamStallError extends Error {
  readonly retryable = true;
  constructor(message: string) {
    super(message);
    this.name = 'StreamStallError';
  }
}

/** Dropped links, stalls and skews end a pass; the sync reconnects and resumes. */
export function isRetryable(e: unknown): boolean {
  return (e as { retryable?: boolean })?.retryable === true;
}
