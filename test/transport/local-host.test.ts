// Every command LocalHost runs has a bound, the same way SshHost's do (the POP-side `timeout` wrapper).
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalHost } from '../../src/transport/local-host.js';
import { CommandTimeoutError } from '../../src/transport/remote-command.js';
import { DEFAULT_COMMAND_TIMEOUT_MS } from '../../src/transport/host.js';

describe('LocalHost command bounds', () => {
  it('stops a command that names no timeout at the host default, and the process is gone', async () => {
    const h = new LocalHost({ name: 'pop', sudo: false, defaultTimeoutMs: 1000 });
    const marker = `sleep 600.${process.pid}${Date.now() % 1000}`;
    const e = await h.exec(marker).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CommandTimeoutError);
    expect((e as Error).message).toMatch(/did not finish within 1000 ms/);
    expect(spawnSync('pgrep', ['-fx', marker]).status).toBe(1);
    const fifo = join(mkdtempSync(join(tmpdir(), 'fsm-edge-bound-')), 'never-written');
    spawnSync('mkfifo', [fifo]);
    await expect(h.readFile(fifo)).rejects.toBeInstanceOf(CommandTimeoutError); // a read that never ends
  });

  it("a per-call timeout overrides the default; a command's own exit 124 is not a timeout", async () => {
    const h = new LocalHost({ name: 'pop', sudo: false, defaultTimeoutMs: 1000 });
    expect(await h.run('sleep 1.5; echo done', { timeoutMs: 10_000 })).toBe('done\n');
    expect((await h.exec('exit 124')).code).toBe(124);
    expect(DEFAULT_COMMAND_TIMEOUT_MS).toBe(120_000);
  });
});
