// The POP paths the transport itself touches. The state and store directories are the bundle format's (where
// assemble.sh reads blobs); the engine's pop-layout.ts lists every POP path, these included.

import { POP_STATE_DIR, POP_STORE_DIR } from '../bundle/layout.js';

export { POP_STATE_DIR, POP_STORE_DIR };
/**
 * The POP-wide lock (flock); held for a whole run by one long-lived channel. Under /run (runtime state, gone at
 * reboot, like the flock it carries): taking it leaves nothing in the POP's persistent state, so a run refused in
 * preflight has changed nothing there.
 */
export const POP_LOCK_PATH = '/run/fsm-edge/lock';

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
