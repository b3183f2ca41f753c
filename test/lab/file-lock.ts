// A lock across processes for lab artifacts that test files running at the same time share (the sample bundle,
// the upgrade bundles, the stick's Node.js release): the first caller builds, the others wait and then reuse.
// flock(1) holds the lock for a child that lives until its stdin closes, so a holder that dies (killed test
// worker) releases it with its pipe; nothing stale is left to clean up.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Runs `fn` holding the exclusive flock on `lockFile`; gives up after `waitSeconds` of waiting for another holder. */
export async function withFileLock<T>(lockFile: string, fn: () => Promise<T>, waitSeconds = 1200): Promise<T> {
  fs.mkdirSync(path.dirname(lockFile), { recursive: true });
  const holder = spawn('flock', ['--exclusive', '--wait', String(waitSeconds), lockFile, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => holder.on('close', (code) => resolve(code)));
  let stderr = '';
  holder.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    holder.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('locked\n')) resolve();
    });
    holder.on('error', (e) => reject(new Error(`lab: cannot run flock for ${lockFile}: ${e.message}`)));
    void exited.then((code) =>
      reject(
        new Error(
          `lab: could not take the lock ${lockFile} (flock exited ${code}${stderr ? `: ${stderr.trim()}` : ''}); ` +
            `another test file may have held it for over ${waitSeconds} s: see which process holds it with \`fuser ${lockFile}\``,
        ),
      ),
    );
  });
  try {
    return await fn();
  } finally {
    holder.stdin.end();
    await exited;
  }
}
