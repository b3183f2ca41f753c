// The transport's public surface: what phases, the CLI and the wizard import.
export * from './host.js';
export { connectHost, type ConnectHostOptions } from './connect.js';
export { SshHost, type SshHostOptions, type ReconnectPolicy } from './ssh-host.js';
export { LocalHost, type LocalHostOptions } from './local-host.js';
export { ConnectError, ConnectionLostError, type SshConnectOptions, type SshEndpoint, type SshTarget } from './ssh-connection.js';
export {
  addPinsToYaml,
  checkHostKey,
  fingerprintSha256,
  HostKeyError,
  normalizeFingerprint,
  recordHostKeyPins,
  type HopRef,
  type NewPin,
} from './host-keys.js';
export { CommandTimeoutError, shq, SudoError } from './remote-command.js';
export { BlobSyncError, BlobVerifyError, DEFAULT_STORE_DIR, DiskFullError, parseStoredBlobs, storedBlobsScript } from './blob-sync.js';
export { PopExit, popExitLabel } from './pop-exit.js';
export { POP_LOCK_PATH, POP_STATE_DIR, POP_STORE_DIR, popLockPaths, type PopLockPaths } from './pop-paths.js';
export { LOCK_HEARTBEAT_MS, LOCK_LEASE_S } from './pop-lock.js';
