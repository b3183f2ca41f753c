// Paces reconnect attempts. The delay bounds how often attempts *start*, doubling up to a ceiling; it is not a
// sleep added after each failure. A connect that itself took longer than the delay (the link was down and the
// attempt timed out) has already waited its turn: the next one starts at once, so a link that came back during
// a slow failing attempt is used a moment later, not a full backoff later.
export class ReconnectBackoff {
  private delay: number;
  constructor(
    initialMs: number,
    private readonly maxMs: number,
  ) {
    this.delay = initialMs;
  }

  /** The sleep before the next attempt, after one that started at `startedAt` failed at `now`; doubles the delay. */
  next(startedAt: number, now: number): number {
    const wait = Math.max(0, this.delay - (now - startedAt));
    this.delay = Math.min(this.delay * 2, this.maxMs);
    return wait;
  }
}
