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
    w.update(256 * 1024); // the first ack starts the clock
    vi.setSystemTime(2000);
    w.update(512 * 1024); // a block a second: 256 KiB/s
    expect(w.bytes).toBe(256 * 1024);
    vi.setSystemTime(3000);
    w.update(768 * 1024);
    expect(w.bytes).toBe(256 * 1024);
  });

  it("measures the link from the first ack on: the writer's start-up is not counted as a slow link", () => {
    const w = new Window(undefined);
    vi.setSystemTime(400); // the writer took 400 ms to start, then acks came fast
    w.update(1 * MiB);
    vi.setSystemTime(500);
    w.update(9 * MiB); // 80 MiB/s
    expect(w.bytes).toBe(40 * MiB);
  });

  it('on a fast link it grows to half a second of data, at most 64 MiB', () => {
    const w = new Window(undefined);
    vi.setSystemTime(10);
    w.update(256 * 1024);
    vi.setSystemTime(110);
    w.update(8 * MiB + 256 * 1024); // 80 MiB/s
    expect(w.bytes).toBe(40 * MiB);
    vi.setSystemTime(210);
    w.update(30 * MiB + 256 * 1024); // 220 MiB/s, smoothed
    expect(w.bytes).toBe(64 * MiB);
  });

  it('a fixed chunk is the window, whatever the rate', () => {
    const w = new Window(512 * 1024);
    w.update(1);
    vi.setSystemTime(100);
    w.update(50 * MiB);
    expect(w.bytes).toBe(512 * 1024);
  });
});
