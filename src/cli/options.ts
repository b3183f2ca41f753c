// Option shapes several commands share, so they read the same everywhere.

/** For `.option('--site <name>', …, repeatable, [])`: each use adds one value. */
export function repeatable(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export const JSON_OPTION_HELP = 'print one JSON document on stdout';
