// `k3s crictl` (and the crictl symlink): `images` lists what the node's containerd holds in k8s.io, in crictl's
// table layout. The stand-in runs no CRI plugin (no pods really run in the lab), so pods/ps list nothing.
// `k3s ctr` runs the real ctr against k3s's containerd socket, namespace k8s.io by default.
import { spawnSync } from 'node:child_process';
import { ctr, CONTAINERD_SOCKET } from './containerd.js';

export async function runCrictl(args: string[]): Promise<number> {
  const cmd = args.find((a) => !a.startsWith('-'));
  if (cmd === 'images' || cmd === 'image' || cmd === 'img') {
    const quiet = args.includes('-q') || args.includes('--quiet');
    const r = await ctr(['images', 'ls']);
    if (r.code !== 0) {
      process.stderr.write(
        `time="${new Date().toISOString()}" level=fatal msg="validate service connection: validate CRI v1 image API for endpoint \\"unix://${CONTAINERD_SOCKET}\\": rpc error: code = Unavailable desc = connection error: ${r.stderr.trim()}"\n`,
      );
      return 1;
    }
    const rows = r.stdout
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((c) => c.length >= 4 && !c[0]!.startsWith('sha256:'))
      .map((c) => {
        const ref = c[0]!;
        const i = ref.lastIndexOf(':');
        return {
          image: ref.slice(0, i),
          tag: ref.slice(i + 1),
          id: (c[2] ?? '').replace('sha256:', '').slice(0, 13),
          size: `${c[3]}${c[4] && /^[KMG]?i?B$/.test(c[4]) ? c[4] : ''}`,
        };
      });
    if (quiet) process.stdout.write(rows.map((r) => `sha256:${r.id}`).join('\n') + (rows.length ? '\n' : ''));
    else {
      const w = [Math.max(5, ...rows.map((r) => r.image.length)), Math.max(3, ...rows.map((r) => r.tag.length)), 13];
      const fmt = (a: string, b: string, c: string, d: string) => `${a.padEnd(w[0]! + 3)}${b.padEnd(w[1]! + 3)}${c.padEnd(w[2]! + 3)}${d}`;
      process.stdout.write(
        [fmt('IMAGE', 'TAG', 'IMAGE ID', 'SIZE'), ...rows.map((r) => fmt(r.image, r.tag, r.id, r.size))].join('\n') + '\n',
      );
    }
    return 0;
  }
  if (cmd === 'ps') {
    process.stdout.write(
      'CONTAINER           IMAGE               CREATED             STATE               NAME                ATTEMPT             POD ID              POD\n',
    );
    return 0;
  }
  if (cmd === 'pods') {
    process.stdout.write(
      'POD ID              CREATED             STATE               NAME                NAMESPACE           ATTEMPT             RUNTIME\n',
    );
    return 0;
  }
  process.stderr.write(`k3s STAND-IN: crictl ${cmd ?? ''} is not simulated (supported: images, ps, pods)\n`);
  return 1;
}

export function runCtr(args: string[]): number {
  const hasNs = args.some((a) => a === '-n' || a === '--namespace' || a.startsWith('--namespace='));
  const r = spawnSync('ctr', ['-a', CONTAINERD_SOCKET, ...(hasNs ? [] : ['-n', 'k8s.io']), ...args], { stdio: 'inherit' });
  return r.status ?? 1;
}
