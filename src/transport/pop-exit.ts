// Exit codes of the POP-side scripts (store "have", blob writer, lock holder, file read). One table, used both to
// write the shell text and to read the result, so the two can never drift apart.

export const PopExit = {
  /** readFileCommand: the file does not exist. */
  fileMissing: 66,
  /** The store directory cannot be created or entered. */
  storeUnavailable: 70,
  /** Writing a partial failed (disk full, I/O error). */
  writeFailed: 71,
  /** fsync or rename of a verified blob into the store failed. */
  storeFailed: 72,
  /** Another writer holds this blob's lock. */
  blobBusy: 73,
  /** Another run holds the POP-wide lock; stdout carries its owner record. */
  popLocked: 74,
  /** A partial's size is not where the controller resumes (a stale writer moved it). */
  partialSkew: 75,
  /** The stream ended before a blob was complete. */
  streamShort: 76,
  /** The POP lacks what locking needs (flock, a writable state directory). */
  lockUnavailable: 77,
  /** `timeout(1)` had to stop the command. */
  timedOut: 124,
} as const;

export type PopExitName = keyof typeof PopExit;

/** The name of a POP-side exit code, for messages (`exit 74 (popLocked)`). */
export function popExitLabel(code: number): string {
  const name = (Object.keys(PopExit) as PopExitName[]).find((k) => PopExit[k] === code);
  return name ? `exit ${code} (${name})` : `exit ${code}`;
}
