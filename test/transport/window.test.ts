// The send window of a blob stream: how many bytes may be unacknowledged, which bounds what a drop re-sends.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { INITIAL_WINDOW, Window } from '../../src/transport/blob-stream.js';

const MiB = 1024 * 1024;

describe('Window', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => vi.useRealTimers());

  it('starts at 1 MiB, opened by four times what the POP acknowledged until the first rate measurement', () => {
    const w = new Window(undefined);
    expect(w.bytes).toBe(INITIAL_WINDOW);
    vi.setSystemTime(20);
    w.update(256 * 1024);
    expect(w.bytes).toBe(2 * MiB);
    vi.setSystemTime(40);
    w.update(3 * MiB);
    expect(w.bytes).toBe(13 * MiB);
    vi.setSystemTime(60);
    w.update(100 * MiB);
    expect(w.bytes).toBe(64 * MiB); // capped
  });

  it('on a thin link the window follows half a second of the measured rate, never below 256 KiB', () => {
    const w = new Window(undefined);
    vi.setSystemTime(1000);
    w.update(256 * 1024); // the first block took a second: 256 KiB/s
    expect(w.bytes).toBe(256 * 1024);
    vi.setSystemTime(2000);
    w.update(512 * 1024);
    expect(w.bytes).toBe(256 * 1024);
    expect(w.max).toBe(256 * 1024);
  });

  it('on a fast link it grows to half a second of data, at most 64 MiB', () => {
    const w = new Window(undefined);
    vi.setSystemTime(100);
    w.update(8 * MiB); // 80 MiB/s
    expect(w.bytes).toBe(40 * MiB);
    vi.setSystemTime(200);
    w.update(30 * MiB); // 220 MiB/s
    expect(w.bytes).toBe(64 * MiB);
  });

  it('a fixed chunk is the window, whatever the rate', () => {
    const w = new Window(512 * 1024);
    vi.setSystemTime(100);
    w.update(50 * MiB);
    expect(w.bytes).toBe(512 * 1024);
  });
});
