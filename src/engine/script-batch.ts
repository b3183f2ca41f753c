// Consecutive shell changes of a phase run as ONE remote command (one round trip instead of one per change).
// The batch script is sent on stdin (`sh -s`), never in argv, so file contents do not show up in `ps` on the
// POP. Each change runs in its own subshell with `set -e`; the first failure stops the batch, and the markers
// tell which change failed and what every change printed.

import { randomBytes } from 'node:crypto';
import type { Host } from '../transport/host.js';
import { atomicWriteCommand } from '../transport/remote-command.js';

export interface ScriptChange {
  description: string;
  /** POSIX sh, run as root. */
  script: string;
  /** Bound for this change; the batch's bound is the sum. Default 120 s. */
  timeoutMs?: number;
  /** What the change printed on stdout (e.g. assemble.sh's `changed …` lines). */
  onOutput?(stdout: string): void;
  /** The next step for the operator when this change fails. */
  fix?: string;
}

export const DEFAULT_CHANGE_TIMEOUT_MS = 120_000;

/** A change that failed inside a batch: which one, its exit code and the end of its stderr. */
export class ScriptChangeError extends Error {
  constructor(
    readonly description: string,
    readonly code: number,
    readonly stderr: string,
    readonly host: string,
    readonly fix?: string,
  ) {
    const tail = stderr.trim().split('\n').slice(-16).join('\n');
    super(
      `${host}: ${description}: failed (exit ${code})${tail ? `:\n${tail.replace(/^/gm, '    ')}` : ''}${fix ? `\n  fix: ${fix}` : ''}`,
    );
    this.name = 'ScriptChangeError';
  }
}

export function batchScript(changes: readonly ScriptChange[], nonce: string): string {
  const m = `@@fsm-edge-change-${nonce}`;
  const parts = changes.map((c, i) =>
    [
      `echo "${m} start ${i}"; echo "${m} start ${i}" >&2`,
      // stdin is the batch itself: no change may read it.
      `( set -e\n${c.script.trim()}\n) </dev/null`,
      `rc=$?; if [ $rc -ne 0 ]; then echo "${m} failed ${i} $rc"; exit 97; fi`,
    ].join('\n'),
  );
  return [...parts, `echo "${m} end"`, ''].join('\n');
}

interface ParsedBatch {
  stdout: string[];
  stderr: string[];
  failed?: { index: number; code: number };
  /** Index of the last change that started (-1: none). */
  lastStarted: number;
  ended: boolean;
}

export function parseBatch(stdout: string, stderr: string, count: number, nonce: string): ParsedBatch {
  const m = `@@fsm-edge-change-${nonce}`;
  let lastStarted = -1;
  const split = (text: string) => {
    const out: string[] = Array.from({ length: count }, () => '');
    let cur = -1;
    for (const line of text.split('\n')) {
      const s = new RegExp(`^${m} start (\\d+)$`).exec(line);
      if (s) cur = Number(s[1]);
      if (s) lastStarted = Math.max(lastStarted, cur);
      else if (line.startsWith(m)) continue;
      else if (cur >= 0 && cur < count) out[cur] += `${line}\n`;
    }
    return out;
  };
  const f = new RegExp(`^${m} failed (\\d+) (\\d+)$`, 'm').exec(stdout);
  return {
    stdout: split(stdout),
    stderr: split(stderr),
    ...(f ? { failed: { index: Number(f[1]), code: Number(f[2]) } } : {}),
    lastStarted,
    ended: stdout.includes(`${m} end`),
  };
}

/**
 * Runs the changes in one remote command. Returns how many completed; throws ScriptChangeError (after calling
 * `onApplied` for those that completed) when one fails.
 */
export async function runScriptBatch(host: Host, changes: readonly ScriptChange[], onApplied: (c: ScriptChange) => void): Promise<void> {
  if (changes.length === 0) return;
  const nonce = randomBytes(6).toString('hex');
  const timeoutMs = changes.reduce((n, c) => n + (c.timeoutMs ?? DEFAULT_CHANGE_TIMEOUT_MS), 0);
  const r = await host.exec('sh -s', { sudo: true, stdin: batchScript(changes, nonce), timeoutMs });
  const p = parseBatch(r.stdout, r.stderr, changes.length, nonce);
  const done = p.failed ? p.failed.index : p.ended ? changes.length : Math.max(0, p.lastStarted);
  for (let i = 0; i < done; i++) {
    changes[i]!.onOutput?.(p.stdout[i]!);
    onApplied(changes[i]!);
  }
  if (p.failed) {
    const c = changes[p.failed.index]!;
    throw new ScriptChangeError(c.description, p.failed.code, p.stderr[p.failed.index]!, host.name, c.fix);
  }
  if (!p.ended || r.code !== 0) {
    throw new ScriptChangeError(changes.map((c) => c.description).join('; '), r.code, r.stderr, host.name);
  }
}

/**
 * A batch step that writes `content` to `path` atomically (temp file in the same directory, chmod, rename). The
 * content travels inside the batch on stdin (a quoted here-document), never in argv.
 */
export function writeFileScript(path: string, content: string, mode: number, nonce = randomBytes(8).toString('hex')): string {
  // A here-document always ends its text with a newline; our files all do, so the bytes written are exact.
  if (content.length && !content.endsWith('\n')) throw new Error(`internal: ${path} content must end with a newline`);
  const eof = `FSM_EDGE_EOF_${nonce}`;
  if (content.split('\n').includes(eof)) throw new Error('internal: here-document delimiter collision');
  // The body of the here-document follows the line that names it; the rest of that line runs after it is read.
  return `${atomicWriteCommand(path, mode, `cat > "$t" <<'${eof}'`)}\n${content}${eof}`;
}
