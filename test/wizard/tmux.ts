// Drives a program through a real pseudo-terminal: a detached tmux session, keystrokes with `send-keys`, the
// screen read back with `capture-pane`. What a person at a terminal would type and see.
import { execFileSync } from 'node:child_process';

const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });

export class TmuxSession {
  private constructor(readonly name: string) {}

  /** Starts `command` (a shell line) in `cwd`; when it ends the pane prints `EXIT=<code>` and stays open. */
  static start(name: string, cwd: string, command: string, env: Record<string, string> = {}): TmuxSession {
    try {
      tmux('kill-session', '-t', name);
    } catch {
      /* not running */
    }
    const exports = Object.entries(env)
      .map(([k, v]) => `${k}='${v.replace(/'/g, `'\\''`)}'`)
      .join(' ');
    tmux('new-session', '-d', '-s', name, '-x', '150', '-y', '50', '-c', cwd, `env ${exports} ${command}; echo "EXIT=$?"; sleep 3600`);
    tmux('set-option', '-t', name, 'history-limit', '20000');
    return new TmuxSession(name);
  }

  /** Everything printed so far (scrollback included), wrapped lines joined. */
  screen(): string {
    return tmux('capture-pane', '-p', '-J', '-S', '-', '-t', this.name);
  }

  async waitFor(what: string | RegExp, timeoutMs = 30_000, after = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen();
      const tail = s.slice(after);
      if (typeof what === 'string' ? tail.includes(what) : what.test(tail)) return s;
      if (Date.now() > deadline)
        throw new Error(
          `tmux ${this.name}: no ${String(what)} within ${timeoutMs} ms; screen:\n${s.split('\n').filter(Boolean).slice(-40).join('\n')}`,
        );
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  /** Waits for a question, then answers it: `text` typed literally (after clearing the default), then `keys`. */
  async answer(question: string, text: string | undefined, ...keys: string[]): Promise<void> {
    await this.waitFor(`? ${question}`);
    if (text !== undefined) {
      tmux('send-keys', '-t', this.name, 'C-u');
      tmux('send-keys', '-t', this.name, '-l', text);
    }
    if (keys.length) tmux('send-keys', '-t', this.name, ...keys);
    else tmux('send-keys', '-t', this.name, 'Enter');
  }

  keys(...keys: string[]): void {
    tmux('send-keys', '-t', this.name, ...keys);
  }

  /** The program's exit code, once it has ended. */
  async exitCode(timeoutMs: number): Promise<number> {
    const s = await this.waitFor(/EXIT=\d+/, timeoutMs);
    return Number(/EXIT=(\d+)/.exec(s)![1]);
  }

  kill(): void {
    try {
      tmux('kill-session', '-t', this.name);
    } catch {
      /* gone */
    }
  }
}
