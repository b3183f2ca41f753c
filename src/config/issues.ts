// Turns zod issues into messages a person can act on: what was expected, what was found, and for enum
// values the closest valid one. Positions are looked up by the caller (see source.ts `locate`).

import type { z } from 'zod';
import { closest } from './formats.js';
import { typeName, type PathSegment } from './source.js';

export interface FieldProblem {
  path: PathSegment[];
  message: string;
  /** Point at the key rather than the value (unknown keys). */
  atKey: boolean;
}

type Issue = z.core.$ZodIssue;

function valueAt(data: unknown, path: readonly PathSegment[]): unknown {
  let v: unknown = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

const YAML11_BOOLEANS = /^(yes|no|on|off|y|n|true|false)$/i;

function expectedName(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'record':
      return 'a mapping';
    default:
      return `a ${expected}`;
  }
}

function describeLimit(issue: Issue & { code: 'too_big' | 'too_small' }): string {
  const big = issue.code === 'too_big';
  const limit = big ? issue.maximum : issue.minimum;
  const inclusive = issue.inclusive !== false;
  const op = big ? (inclusive ? '≤' : '<') : inclusive ? '≥' : '>';
  switch (issue.origin) {
    case 'array':
      return big ? `at most ${limit} item(s)` : `at least ${limit} item(s)`;
    case 'string':
      return big ? `at most ${limit} character(s)` : Number(limit) === 1 ? 'a non-empty string' : `at least ${limit} character(s)`;
    default:
      return `a number ${op} ${limit}`;
  }
}

/** Picks the union branch the input most likely meant: the one whose problems reach deepest. */
function bestBranch(branches: Issue[][]): Issue[] {
  let best: Issue[] = branches[0] ?? [];
  let bestScore = -1;
  for (const b of branches) {
    const deepest = Math.max(...b.map((i) => i.path.length + (i.code === 'invalid_type' && i.path.length === 0 ? -1 : 0)));
    const score = deepest * 100 - b.length;
    if (score > bestScore) {
      best = b;
      bestScore = score;
    }
  }
  return best;
}

export function describeIssues(issues: readonly Issue[], data: unknown, prefix: PathSegment[] = []): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...(issue.path as PathSegment[])];
    const input = valueAt(data, path);
    switch (issue.code) {
      case 'invalid_type': {
        if (input === undefined) {
          out.push({ path, message: `required field missing (expected ${expectedName(issue.expected)})`, atKey: false });
        } else {
          let hint = '';
          if (issue.expected === 'boolean' && typeof input === 'string' && YAML11_BOOLEANS.test(input)) {
            hint = ' (write true or false; YAML 1.2 reads yes/no/on/off as strings)';
          } else if ((issue.expected === 'number' || issue.expected === 'int') && typeof input === 'string' && /^\d+$/.test(input)) {
            hint = ' (remove the quotes)';
          } else if (issue.expected === 'array' && typeof input === 'string') {
            hint = ` (write a list: [${input}])`;
          }
          const expected = issue.expected === 'int' && typeof input === 'number' ? 'an integer' : expectedName(issue.expected);
          out.push({ path, message: `expected ${expected}, got ${typeName(input)}${hint}`, atKey: false });
        }
        break;
      }
      case 'invalid_value': {
        const values = issue.values.map(String);
        const near = typeof input === 'string' ? closest(input, values) : undefined;
        const expected = values.length === 1 ? `\`${values[0]}\`` : `one of ${values.map((v) => `\`${v}\``).join(', ')}`;
        out.push({
          path,
          message: `expected ${expected}, got ${typeName(input)}${near ? ` (did you mean \`${near}\`?)` : ''}`,
          atKey: false,
        });
        break;
      }
      case 'unrecognized_keys': {
        // The message names the closest valid key (see fields.ts strictObject); point at the first unknown key.
        out.push({ path: [...path, issue.keys[0]!], message: issue.message, atKey: true });
        break;
      }
      case 'too_big':
      case 'too_small': {
        if (!/^Too (big|small)/.test(issue.message)) {
          out.push({ path, message: issue.message, atKey: false });
          break;
        }
        const got = Array.isArray(input) ? `${input.length} item(s)` : typeName(input);
        out.push({ path, message: `expected ${describeLimit(issue)}, got ${got}`, atKey: false });
        break;
      }
      case 'invalid_union': {
        if (issue.message && issue.message !== 'Invalid input') {
          out.push({ path, message: issue.message, atKey: false });
        } else if (issue.errors.length) {
          out.push(...describeIssues(bestBranch(issue.errors), data, path));
        } else {
          out.push({ path, message: `unexpected ${typeName(input)}`, atKey: false });
        }
        break;
      }
      case 'invalid_key': {
        // A record key failed its check: point at the key itself.
        const key = path[path.length - 1];
        for (const inner of issue.issues) {
          out.push({ path, message: inner.message.replace(/^Invalid input.*$/, `invalid key \`${String(key)}\``), atKey: true });
        }
        break;
      }
      case 'invalid_element': {
        out.push(...describeIssues(issue.issues, data, path));
        break;
      }
      default:
        out.push({ path, message: issue.message, atKey: false });
    }
  }
  return out;
}
