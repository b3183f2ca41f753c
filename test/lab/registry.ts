// A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, with its own data
// dir, optionally also reachable from POPs at 10.99.0.1:<port> through the lab hub.
import fs from 'node:fs';
import path from 'node:path';
import { LAB_STATE } from './paths.js';
import { exposeOnHub, stopForwarder } from './network.js';
import { freePort, startDaemon, stopDaemon, waitFor } from './proc.js';

export interface RegistryHandle {
  /** `http://127.0.0.1:<port>` — for the controller (host namespace). */
  url: string;
  /** `127.0.0.1:<port>` — the registry host part of an image reference. */
  host: string;
  /** `10.99.0.1:<port>` when started with `hub: true` — for POPs. */
  labHost?: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  port?: number;
  /** Storage directory; default a fresh one under the lab state dir (removed by stop unless given). */
  dataDir?: string;
  /** Also listen on 10.99.0.1:<port> in lab-hub (creates the hub network if needed). */
  hub?: boolean;
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  if (!fs.existsSync('/usr/bin/docker-registry'))
    throw new Error('lab: /usr/bin/docker-registry is missing; run `bash scripts/bootstrap.sh` (apt package docker-registry)');
  const port = opts.port ?? (await freePort());
  const name = `registry-${port}`;
  const dir = path.join(LAB_STATE, name);
  const dataDir = opts.dataDir ?? path.join(dir, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const config = path.join(dir, 'config.yml');
  fs.writeFileSync(
    config,
    [
      'version: 0.1',
      'log: {level: warn, fields: {service: registry}}',
      `storage: {filesystem: {rootdirectory: ${JSON.stringify(dataDir)}}, delete: {enabled: true}, cache: {blobdescriptor: inmemory}}`,
      `http: {addr: "127.0.0.1:${port}", headers: {X-Content-Type-Options: [nosniff]}}`,
      'health: {storagedriver: {enabled: false}}',
      '',
    ].join('\n'),
  );
  const log = path.join(dir, 'registry.log');
  await startDaemon(name, ['/usr/bin/docker-registry', 'serve', config], { logFile: log, cwd: dir });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`docker-registry on ${url} (log: ${log})`, async () => (await fetch(`${url}/v2/`)).status === 200, 15000);
  const labHost = opts.hub ? await exposeOnHub(name, port) : undefined;
  return {
    url,
    host: `127.0.0.1:${port}`,
    labHost,
    port,
    dataDir,
    stop: async () => {
      await stopForwarder(name);
      await stopDaemon(name);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
