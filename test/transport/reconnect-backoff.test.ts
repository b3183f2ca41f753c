import { describe, expect, it } from 'vitest';
import { ReconnectBackoff } from '../../src/transport/reconnect-backoff.js';

describe('ReconnectBackoff', () => {
  it('spaces quickly failing attempts by a doubling delay, up to the ceiling', () => {
    const b = new ReconnectBackoff(500, 2000);
    const waits = [0, 1, 2, 3, 4].map(() => b.next(1000, 1010));
    expect(waits).toEqual([490, 990, 1990, 1990, 1990]);
  });

  it('starts the next attempt at once after one that took longer than the delay (a connect that timed out)', () => {
    const b = new ReconnectBackoff(500, 2000);
    expect(b.next(0, 100)).toBe(400);
    // the link came back while this attempt was timing out: no further sleep before trying again
    expect(b.next(1000, 3500)).toBe(0);
    // the delay still grew meanwhile: a fast failure now waits out the rest of 2 s
    expect(b.next(10_000, 10_500)).toBe(1500);
  });
});
