// How a command string becomes what the POP's login shell runs: cwd, remote-side timeout, sudo. Secrets never
// appear here — a sudo password is sent as the first line of stdin (`sudo -S`), never in argv or env.

import { PopExit } from './pop-exit.js';

/** POSIX single-quote quoting. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A word as a person would type it: left bare when it has no shell characters, else single-quoted. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9._+@/:=%,-]+$/.test(s) ? s : shq(s);
}

export type SudoMode = { kind: 'none' } | { kind: 'nopasswd' } | { kind: 'password' };

export interface WrapOptions {
  cwd?: string;
  timeoutMs?: number;
  sudo?: SudoMode;
}

/** Exit code `timeout(1)` uses when it had to stop the command. */
export const TIMEOUT_EXIT = PopExit.timedOut;

export function wrapCommand(command: string, o: WrapOptions): string {
  let cmd = o.cwd ? `cd ${shq(o.cwd)} && ${command}` : command;
  const sudo = o.sudo?.kind ?? 'none';
  const timeoutS = o.timeoutMs !== undefined ? Math.max(1, Math.ceil(o.timeoutMs / 1000)) : undefined;
  // `timeout` runs on the POP (as root under sudo), so the command dies there even when the link is gone.
  const timed = (inner: string) => (timeoutS !== undefined ? `timeout -k 5 ${timeoutS} sh -c ${shq(inner)}` : `sh -c ${shq(inner)}`);
  if (sudo === 'nopasswd') return `sudo -n -- ${timed(cmd)}`;
  // -k: ignore cached credentials, so sudo always reads the password line we send first on stdin.
  if (sudo === 'password') return `sudo -S -k -p '' -- ${timed(cmd)}`;
  if (timeoutS !== undefined) cmd = timed(cmd);
  return cmd;
}

/**
 * How `sudo: true` is carried out, decided once per connection and shared by every Host. The password is sent only
 * when sudo will read it: `sudo -n true` is asked first, and only when it fails and a password is configured does a
 * command get `sudo -S` with the password as stdin's first line. (Under NOPASSWD, `sudo -S` never reads stdin: the
 * password would become the command's input — the content of a written file, a blob, a journal.)
 */
export async function probeSudo(runProbe: (command: string) => Promise<{ code: number }>, hasPassword: boolean): Promise<SudoMode> {
  if (!hasPassword) return { kind: 'nopasswd' };
  const r = await runProbe(SUDO_PROBE);
  return r.code === 0 ? { kind: 'nopasswd' } : { kind: 'password' };
}

export const SUDO_PROBE = 'sudo -n true';

/** A sudo that refused to run the command, with the fix. */
export class SudoError extends Error {
  constructor(
    readonly host: string,
    readonly user: string,
    message: string,
    readonly detail: string,
  ) {
    super(`${message}\n  (sudo said: ${detail})`);
    this.name = 'SudoError';
  }
}

/**
 * Recognises sudo's own refusals in a command's result. Returns undefined when sudo ran the command (whatever the
 * command itself then did).
 */
export function sudoFailure(host: string, user: string, mode: SudoMode, code: number, stderr: string): SudoError | undefined {
  if (mode.kind === 'none' || code === 0) return undefined;
  const line = stderr
    .split('\n')
    .find((l) => /^sudo:|: sudo: .*not found|Sorry, try again|may not run sudo/.test(l.trim()))
    ?.trim();
  if (!line) return undefined;
  const rule = `${user} ALL=(ALL) NOPASSWD: ALL`;
  const sudoers = `add "${rule}" to /etc/sudoers.d/fsm-edge on ${host} (visudo -f /etc/sudoers.d/fsm-edge)`;
  if (/not found/.test(line) && code === 127) {
    return new SudoError(host, user, `sudo is not installed on ${host}: install it (apt-get install sudo) or log in as root`, line);
  }
  if (/incorrect password|Sorry, try again/.test(line)) {
    return new SudoError(
      host,
      user,
      `sudo on ${host} rejected the password for user ${user}: fix the secret in spec.ssh.sudo.password`,
      line,
    );
  }
  if (/not in the sudoers|not allowed to (run|execute)|may not run sudo/.test(line)) {
    return new SudoError(host, user, `user ${user} may not run sudo on ${host}: ${sudoers}`, line);
  }
  if (/password is required|terminal is required|no tty present|askpass/.test(line)) {
    return new SudoError(
      host,
      user,
      `user ${user} may not run sudo on ${host} without a password: ${sudoers}, or set spec.ssh.sudo.password to {env: NAME} / {file: PATH}`,
      line,
    );
  }
  if (/effective uid is not 0|nosuid|must be owned by uid 0/.test(line)) {
    return new SudoError(host, user, `sudo is broken on ${host} (${line}): reinstall sudo or fix its setuid bit / mount options`, line);
  }
  if (code === 1 && line.startsWith('sudo:')) return new SudoError(host, user, `sudo failed on ${host}: ${line}`, line);
  return undefined;
}

export class CommandTimeoutError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(
      `${host}: \`${command.length > 120 ? command.slice(0, 117) + '...' : command}\` did not finish within ${timeoutMs} ms and was stopped`,
    );
    this.name = 'CommandTimeoutError';
  }
}

/** Exit code of `readFileCommand` when the file does not exist. */
export const FILE_MISSING_EXIT = PopExit.fileMissing;

/** Prints a file, or exits FILE_MISSING_EXIT when there is none (one round trip either way). */
export function readFileCommand(path: string): string {
  const q = shq(path);
  return `if [ -e ${q} ]; then exec cat -- ${q}; else exit ${FILE_MISSING_EXIT}; fi`;
}

/** Writes stdin to `path` atomically: a temp file in the same directory (so the rename is atomic), removed if
 * anything fails, then chmod and rename. */
export function atomicWriteCommand(path: string, mode = 0o644, fill = 'cat > "$t"'): string {
  const q = shq(path);
  return (
    `set -e; d=$(dirname -- ${q}); mkdir -p -- "$d"; t=$(mktemp "$d/.fsm-edge-write.XXXXXX"); ` +
    `trap 'rm -f "$t"' EXIT; ${fill}; chmod ${mode.toString(8)} "$t"; mv -f -- "$t" ${q}; trap - EXIT`
  );
}
