// The questions, asked two ways: at a terminal with @inquirer/prompts, or with --yes, where every question
// takes its default — still validated, so a scripted run fails with the same reason a person would see.

import { confirm, input, select } from '@inquirer/prompts';
import { UsageError } from '../output.js';

export type Validate = (value: string) => string | undefined | Promise<string | undefined>;

export interface Choice<T> {
  value: T;
  name: string;
  description?: string;
  /** Shown greyed out with this reason; cannot be picked. */
  disabled?: string;
}

export interface Ask {
  readonly interactive: boolean;
  text(q: { message: string; default?: string; validate?: Validate; flag?: string }): Promise<string>;
  choose<T>(q: { message: string; choices: Choice<T>[]; default?: T; flag?: string }): Promise<T>;
  /** `default` is what Enter answers; `scripted` what --yes answers, when that must differ (default: `default`). */
  yesNo(q: YesNo): Promise<boolean>;
}

export interface YesNo {
  message: string;
  default: boolean;
  scripted?: boolean;
}

/** Where the prompts read and draw; a terminal by default, streams in tests. */
export interface PromptStreams {
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}

export class PromptAsk implements Ask {
  readonly interactive = true;
  constructor(private readonly streams: PromptStreams = {}) {}

  async text(q: { message: string; default?: string; validate?: Validate }): Promise<string> {
    const validate = q.validate;
    const answer = await input(
      {
        message: q.message,
        ...(q.default !== undefined && q.default !== '' ? { default: q.default } : {}),
        required: true,
        ...(validate ? { validate: async (v: string) => (await validate(v.trim())) ?? true } : {}),
      },
      this.streams,
    );
    return answer.trim();
  }

  async choose<T>(q: { message: string; choices: Choice<T>[]; default?: T }): Promise<T> {
    return select<T>(
      {
        message: q.message,
        choices: q.choices.map((c) => ({
          value: c.value,
          name: c.name,
          ...(c.description ? { description: c.description } : {}),
          ...(c.disabled ? { disabled: `(${c.disabled})` } : {}),
        })),
        ...(q.default !== undefined ? { default: q.default } : {}),
        pageSize: 12,
      },
      this.streams,
    );
  }

  async yesNo(q: YesNo): Promise<boolean> {
    return confirm({ message: q.message, default: q.default }, this.streams);
  }
}

/** --yes: every answer is its default; a question without one is a usage error naming the flag that answers it. */
export class DefaultsAsk implements Ask {
  readonly interactive = false;
  constructor(private readonly say: (line: string) => void) {}

  async text(q: { message: string; default?: string; validate?: Validate; flag?: string }): Promise<string> {
    if (q.default === undefined || q.default === '')
      throw new UsageError(
        `--yes: no default for “${q.message}”`,
        q.flag ? `give it with ${q.flag}, or start from an existing site.yaml` : 'start from an existing site.yaml',
      );
    const problem = await q.validate?.(q.default);
    if (problem)
      throw new UsageError(
        `--yes: the default for “${q.message}” (${q.default}) is not usable: ${problem}`,
        q.flag ? `give another value with ${q.flag}` : undefined,
      );
    this.say(`? ${q.message} ${q.default}`);
    return q.default;
  }

  async choose<T>(q: { message: string; choices: Choice<T>[]; default?: T; flag?: string }): Promise<T> {
    const usable = q.choices.filter((c) => !c.disabled);
    const pick = q.default !== undefined ? usable.find((c) => c.value === q.default) : usable[0];
    if (!pick) {
      const why = q.choices.map((c) => `${c.name}: ${c.disabled}`).join('; ');
      throw new UsageError(
        `--yes: nothing usable for “${q.message}”${why ? ` (${why})` : ''}`,
        q.flag ? `give it with ${q.flag}` : undefined,
      );
    }
    this.say(`? ${q.message} ${pick.name}`);
    return pick.value;
  }

  async yesNo(q: YesNo): Promise<boolean> {
    const answer = q.scripted ?? q.default;
    this.say(`? ${q.message} ${answer ? 'yes' : 'no'}`);
    return answer;
  }
}

/** Ctrl-C at a prompt: @inquirer rejects with ExitPromptError. */
export function isPromptExit(e: unknown): boolean {
  return e instanceof Error && (e.name === 'ExitPromptError' || e.name === 'AbortPromptError');
}
