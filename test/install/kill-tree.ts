// SIGKILL a process and every descendant, by pid (the CLI under test runs as npx → tsx → node): what a crashed
// or killed controller looks like to the POP.
import fs from 'node:fs';

export function killTree(pid: number): void {
  const children = fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(pid);
      } catch {
        return false;
      }
    })
    .map(Number);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  for (const c of children) killTree(c);
}
