import { execFile, spawnSync } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; never throws for a non-zero exit (callers decide what failure means). */
export function execCmd(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { maxBuffer: 256 << 20, timeout: opts.timeoutMs ?? 0, env: opts.env, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown }) | null;
        const code = e ? (typeof e.code === 'number' ? e.code : 127) : 0;
        resolve({ code, stdout, stderr: e && !stderr ? e.message : stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

export function execSyncCmd(cmd: string, args: string[], input?: string): ExecResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  return { code: r.status ?? 127, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? r.error.message : '') };
}
