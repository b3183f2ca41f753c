// Waiting for cluster state by polling (no watches: a watch over a thin, flaky link is one more stream to
// lose; a GET every few seconds survives reconnects and costs one round trip each).

import { ApiException } from '@kubernetes/client-node';

export class WaitTimeoutError extends Error {
  constructor(
    readonly what: string,
    readonly seconds: number,
    readonly lastState: string,
  ) {
    super(`timed out after ${seconds}s waiting for ${what}${lastState ? `; last seen: ${lastState}` : ''}`);
    this.name = 'WaitTimeoutError';
  }
}

export interface PollResult<T> {
  done: boolean;
  value?: T;
  /** What was seen this time, for the timeout message. */
  state?: string;
}

export async function pollUntil<T>(
  what: string,
  fn: () => Promise<PollResult<T>>,
  opts: { timeoutMs: number; intervalMs?: number; signal?: AbortSignal },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = '';
  for (;;) {
    try {
      const r = await fn();
      if (r.state !== undefined) last = r.state;
      if (r.done) return r.value as T;
    } catch (e) {
      // Errors that say "the thing is wrong" end the wait; transient ones (404 while it appears, 5xx,
      // connection resets) are the normal noise of a starting cluster.
      if (e instanceof FatalWaitError) throw e;
      last = describeApiError(e);
    }
    if (Date.now() >= deadline) throw new WaitTimeoutError(what, Math.round(opts.timeoutMs / 1000), last);
    if (opts.signal?.aborted) throw new Error(`aborted while waiting for ${what}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 2000));
  }
}

/** Thrown from a poll function to stop waiting at once (e.g. the helm Job failed). */
export class FatalWaitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FatalWaitError';
  }
}

export function isNotFound(e: unknown): boolean {
  return e instanceof ApiException && e.code === 404;
}

export function describeApiError(e: unknown): string {
  if (e instanceof ApiException) {
    let msg = '';
    try {
      const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      msg = body?.message ?? '';
    } catch {
      msg = String(e.body).slice(0, 200);
    }
    return `HTTP ${e.code}${msg ? `: ${msg}` : ''}`;
  }
  return e instanceof Error ? e.message : String(e);
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${Math.round(ms / 1000)}s`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
