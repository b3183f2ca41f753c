// Building blocks every document schema uses: strict objects that suggest the closest key for a typo,
// and strings checked by the format functions in formats.ts.

import { z } from 'zod';
import { closest } from './formats.js';

/** Names of unknown keys with the closest valid key for each, e.g. "unknown key `identityfile` (did you mean `identityFile`?)". */
export function unknownKeysMessage(keys: readonly string[], known: readonly string[]): string {
  const parts = keys.map((k) => {
    const near = closest(k, known);
    return near ? `\`${k}\` (did you mean \`${near}\`?)` : `\`${k}\``;
  });
  const valid = known.length ? `; valid keys here: ${known.join(', ')}` : '';
  return `unknown key${keys.length > 1 ? 's' : ''} ${parts.join(', ')}${valid}`;
}

/** An object that refuses unknown keys and names the closest valid one. */
export function strictObject<T extends z.core.$ZodLooseShape>(shape: T) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? unknownKeysMessage(iss.keys, known) : undefined),
  });
}

/** A string validated by one of the format checks; the check's message becomes the error. */
export function checkedString(check: (value: string) => string | undefined) {
  return z.string().superRefine((value, ctx) => {
    const problem = check(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });
}
