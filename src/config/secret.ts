// Secrets (k3s token, hub kubeconfig, key passphrases, sudo passwords, signing keys) are referenced, never
// written inline: `{env: NAME}` or `{file: PATH}`. They are read at the moment of use and never logged.

import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { FsmEdgeError, UsageError } from './errors.js';
import { checkedString, strictObject } from './fields.js';
import { checkEnvName } from './formats.js';

export const INLINE_SECRET_MESSAGE =
  'secrets are never written inline: use `{env: NAME}` (read from an environment variable) or `{file: PATH}` (read from a file)';

export const SecretRefSchema = z
  .union(
    [
      strictObject({ env: checkedString(checkEnvName).meta({ description: 'Environment variable holding the secret' }) }),
      strictObject({
        file: z.string().min(1).meta({ description: 'File holding the secret; relative to the config file, ~ allowed' }),
      }),
    ],
    {
      error: (iss) => {
        if (iss.code !== 'invalid_union') return undefined;
        if (typeof iss.input === 'string' || typeof iss.input === 'number') return INLINE_SECRET_MESSAGE;
        if (iss.input && typeof iss.input === 'object' && !Array.isArray(iss.input)) {
          const keys = Object.keys(iss.input);
          if (keys.length === 0) return 'expected `{env: NAME}` or `{file: PATH}`, got an empty mapping';
          if (keys.includes('env') && keys.includes('file')) return 'give either `env` or `file`, not both';
        }
        return 'expected `{env: NAME}` or `{file: PATH}`';
      },
    },
  )
  .meta({ description: 'A secret reference: {env: NAME} or {file: PATH}. Never the secret itself.' });

export type SecretRef = z.infer<typeof SecretRefSchema>;

export function expandHome(path: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return resolve(homedir(), path.slice(2));
  return path;
}

/** A path from a config file, made absolute: `~` is the home directory, relative paths are from `baseDir`. */
export function resolveConfigPath(path: string, baseDir: string): string {
  const expanded = expandHome(path);
  return isAbsolute(expanded) ? expanded : resolve(baseDir, expanded);
}

/** A secret that cannot be read: names the variable or file, never the value. */
export class SecretError extends FsmEdgeError {
  constructor(message: string, fix?: string) {
    super('config', message, { code: 'secret', ...(fix === undefined ? {} : { fix }) });
    this.name = 'SecretError';
  }
}

/** Passwords, passphrases, PEM keys and kubeconfigs are far smaller; anything bigger is not the file meant. */
export const SECRET_FILE_MAX_BYTES = 1024 * 1024;

function fileType(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (fifo)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function refuseUnlessSmallRegular(st: Stats, path: string): void {
  if (!st.isFile())
    throw new SecretError(`the secret file ${path} is ${fileType(st)}, not a regular file`, 'use a regular file holding only the secret');
  if (st.size > SECRET_FILE_MAX_BYTES) {
    throw new SecretError(
      `the secret file ${path} is ${st.size} bytes, more than the ${SECRET_FILE_MAX_BYTES} a secret may have`,
      'use the file holding only the secret',
    );
  }
}

function unreadable(path: string, err: unknown): SecretError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code);
  return new SecretError(`cannot read the secret file ${path}: ${why}`);
}

/**
 * The bytes of a secret file, which must be a regular file (symlinks followed) of at most 1 MiB: a site file
 * must not make the controller block on a fifo, read a device, or slurp an arbitrary large file. The type is
 * checked before opening (no open of a device or fifo) and again on the opened descriptor, so a swap in between
 * is caught; reading stops at the cap whatever the file grew to.
 */
export function readSecretFile(path: string): Buffer {
  let fd: number;
  try {
    refuseUnlessSmallRegular(statSync(path), path);
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw err instanceof SecretError ? err : unreadable(path, err);
  }
  try {
    refuseUnlessSmallRegular(fstatSync(fd), path);
    const buf = Buffer.alloc(SECRET_FILE_MAX_BYTES + 1);
    let length = 0;
    for (let n = 1; n > 0 && length < buf.length; length += n) n = readSync(fd, buf, length, buf.length - length, null);
    if (length > SECRET_FILE_MAX_BYTES)
      throw new SecretError(`the secret file ${path} is more than the ${SECRET_FILE_MAX_BYTES} bytes a secret may have`);
    return buf.subarray(0, length);
  } catch (err) {
    throw err instanceof SecretError ? err : unreadable(path, err);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a secret at the moment it is needed. `baseDir` resolves relative `file:` paths (the loader already
 * makes them absolute, relative to the file they were written in). One trailing newline is dropped.
 * Errors name the variable or file, never the value.
 */
export function resolveSecret(ref: SecretRef, baseDir: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') {
      throw new SecretError(
        `the secret environment variable ${ref.env} is not set`,
        `export ${ref.env}=… (or point the field at {file: PATH})`,
      );
    }
    return value;
  }
  const path = resolveConfigPath(ref.file, baseDir);
  const value = readSecretFile(path)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (value === '') throw new SecretError(`the secret file ${path} is empty`);
  return value;
}

/** Where a secret comes from, for a plan or a message: `env NAME` or `file /abs/path` (never the value). */
export function describeSecretSource(ref: SecretRef, baseDir: string = process.cwd()): string {
  return 'env' in ref ? `env ${ref.env}` : `file ${resolveConfigPath(ref.file, baseDir)}`;
}

/** Parses a secret reference given as a command-line option: `env:NAME` or `file:PATH`, never the secret. */
export function parseSecretRefArg(arg: string, option: string): SecretRef {
  const m = /^(env|file):(.+)$/.exec(arg);
  if (!m) {
    throw new UsageError(
      `${option} takes env:NAME or file:PATH, not the secret itself`,
      `export the key in a variable and pass ${option} env:NAME, or pass ${option} file:/path/to/key`,
    );
  }
  if (m[1] === 'env') {
    const problem = checkEnvName(m[2]!);
    if (problem) throw new UsageError(`${option}: ${problem}`);
    return { env: m[2]! };
  }
  return { file: m[2]! };
}
