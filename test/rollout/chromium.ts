// Loads a page in Debian's chromium, headless, and returns the DOM as the browser serialised it after loading:
// what a person opening the file would get, not the string we wrote.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

export async function dumpDom(file: string): Promise<string> {
  if (!CHROMIUM) throw new Error('chromium is not installed: run scripts/bootstrap.sh (it installs Debian’s chromium)');
  const profile = mkdtempSync(path.join(tmpdir(), 'rollout-chromium-'));
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'];
  try {
    const { stdout } = await run(
      CHROMIUM,
      [...flags, '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`, '--dump-dom', `file://${file}`],
      { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
    );
    return stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}
