// Every POP path the transport itself touches, in one place. The engine's POP-layout module will own these (and
// re-export them here) once it exists; until then nothing else in src/transport spells a POP path.

/** Root of everything fsm-edge keeps on a POP. */
export const POP_STATE_DIR = '/var/lib/fsm-edge';
/** Content-addressed blob store: `<store>/sha256/<hex>`. */
export const POP_STORE_DIR = `${POP_STATE_DIR}/store`;
/** The POP-wide lock (flock); held for a whole run by one long-lived channel. */
export const POP_LOCK_PATH = `${POP_STATE_DIR}/lock`;

/** Where the lock's companions live, derived from the lock file so a test can move all three at once. */
export interface PopLockPaths {
  lock: string;
  /** JSON `LockOwner` of the current holder (0644, no secrets), shown to a refused run. */
  owner: string;
  /** `PID NONCE` of the holding process (0600), so a run can reclaim its own lock after a link drop. */
  holder: string;
}

export function popLockPaths(lock = POP_LOCK_PATH): PopLockPaths {
  return { lock, owner: `${lock}.owner`, holder: `${lock}.holder` };
}

/** Inside a store directory: verified blobs, partial ones, and one lock file per blob being written. */
export const STORE_BLOBS = 'sha256';
export const STORE_PARTIAL = 'partial';
export const STORE_LOCKS = 'lock';
