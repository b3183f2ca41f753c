// Secrets (k3s token, hub kubeconfig, key passphrases, sudo passwords, signing keys) are referenced, never
// written inline: `{env: NAME}` or `{file: PATH}`. They are read at the moment of use and never logged.

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { CliError, EXIT_USAGE, UsageError } from '../cli/output.js';
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

/**
 * Reads a secret at the moment it is needed. `baseDir` resolves relative `file:` paths (the loader already
 * makes them absolute, relative to the file they were written in). One trailing newline is dropped.
 * Errors name the variable or file, never the value.
 */
export function resolveSecret(ref: SecretRef, baseDir: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') {
      throw new CliError(`the secret environment variable ${ref.env} is not set`, EXIT_USAGE, 'secret', `export ${ref.env}=… (or point the field at {file: PATH})`);
    }
    return value;
  }
  const path = resolveConfigPath(ref.file, baseDir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code);
    throw new CliError(`cannot read the secret file ${path}: ${why}`, EXIT_USAGE, 'secret');
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new CliError(`the secret file ${path} is empty`, EXIT_USAGE, 'secret');
  return value;
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
