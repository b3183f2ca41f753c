// A plain static HTTP file server on 127.0.0.1 for release files (what GitHub releases / a mirror would serve),
// optionally also reachable from POPs at 10.99.0.1:<port>. Supports HEAD and byte ranges (resumed downloads).
import fs from 'node:fs';
import path from 'node:path';
import { LAB_SRC, LAB_STATE } from './paths.js';
import { exposeOnHub, stopForwarder } from './network.js';
import { freePort, startDaemon, stopDaemon, waitFor } from './proc.js';

export interface FileServerHandle {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `http://10.99.0.1:<port>` when started with `hub: true`. */
  labUrl?: string;
  port: number;
  /** The directory served; files put here appear at `<url>/<relative path>`. */
  root: string;
  stop(): Promise<void>;
}

export interface FileServerOptions {
  /** Directory to serve; default a fresh empty one under the lab state dir (removed by stop unless given). */
  root?: string;
  port?: number;
  hub?: boolean;
}

export async function startFileServer(opts: FileServerOptions = {}): Promise<FileServerHandle> {
  const port = opts.port ?? (await freePort());
  const name = `fileserver-${port}`;
  const dir = path.join(LAB_STATE, name);
  const root = path.resolve(opts.root ?? path.join(dir, 'files'));
  fs.mkdirSync(root, { recursive: true });
  fs.mkdirSync(dir, { recursive: true });
  const log = path.join(dir, 'fileserver.log');
  await startDaemon(name, ['/usr/bin/python3', path.join(LAB_SRC, 'fileserver.py'), root, '127.0.0.1', String(port)], {
    logFile: log,
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`file server on ${url} (log: ${log})`, async () => (await fetch(`${url}/`)).status === 404, 10000);
  const labHost = opts.hub ? await exposeOnHub(name, port) : undefined;
  return {
    url,
    labUrl: labHost ? `http://${labHost}` : undefined,
    port,
    root,
    stop: async () => {
      await stopForwarder(name);
      await stopDaemon(name);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
