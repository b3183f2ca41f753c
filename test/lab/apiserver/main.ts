// LAB STAND-IN: command-line entry of the lab API server (what build.ts bundles into one .mjs).
//   node apiserver.mjs --config server.json
// Runs until SIGTERM/SIGINT, then flushes its data file and exits 0. Prints one JSON line
// `{"listening":"https://…"}` on stdout when ready.
import { readFileSync, writeFileSync } from 'node:fs';
import { clusterController } from './controllers/cluster.js';
import { createApiServer } from './server.js';
import type { Controller, KubeObject } from './types.js';

export interface ServerConfigFile {
  host?: string;
  port?: number;
  unixSocket?: string;
  advertiseUrl?: string;
  tls: { certFile: string; keyFile: string; caFile: string };
  crdFiles?: string[];
  dataFile?: string;
  rbac?: boolean;
  /** Run FSM's multicluster Cluster controller (hub mode). */
  hub?: { fsmNamespace?: string; resyncSeconds?: number; requestTimeoutMs?: number };
  /** Objects created at start if missing (e.g. a POP's fsm-controller Deployment and MeshConfig); custom resources are completed with their CRD's required fields. */
  seed?: KubeObject[];
  pidFile?: string;
  verbose?: boolean;
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--config');
  const file = i >= 0 ? process.argv[i + 1] : undefined;
  if (!file) {
    process.stderr.write('usage: apiserver.mjs --config server.json\n');
    process.exit(2);
  }
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as ServerConfigFile;
  const controllers: Controller[] = [];
  if (cfg.hub) controllers.push(clusterController(cfg.hub));
  const log = (l: string) => process.stderr.write(`${new Date().toISOString()} ${l}\n`);
  const server = await createApiServer({
    ...(cfg.host ? { host: cfg.host } : {}),
    ...(cfg.port !== undefined ? { port: cfg.port } : {}),
    ...(cfg.unixSocket ? { unixSocket: cfg.unixSocket } : {}),
    ...(cfg.advertiseUrl ? { advertiseUrl: cfg.advertiseUrl } : {}),
    tls: {
      cert: readFileSync(cfg.tls.certFile, 'utf8'),
      key: readFileSync(cfg.tls.keyFile, 'utf8'),
      ca: readFileSync(cfg.tls.caFile, 'utf8'),
    },
    crdFiles: cfg.crdFiles ?? [],
    ...(cfg.dataFile ? { dataFile: cfg.dataFile } : {}),
    auth: { rbac: cfg.rbac !== false },
    controllers,
    log: cfg.verbose === false ? () => {} : log,
  });
  for (const o of cfg.seed ?? []) {
    if (server.store.get(o.apiVersion, o.kind, o.metadata.name as string, o.metadata.namespace)) continue;
    // custom resources are completed with their CRD's required fields (see Store.skeleton)
    const full = server.store.resourceFor(o.apiVersion, o.kind)?.custom
      ? (server.store.skeleton(o.apiVersion, o.kind, o) as KubeObject)
      : o;
    server.store.create(full, { fieldManager: 'lab-seed' });
  }
  if (cfg.pidFile) writeFileSync(cfg.pidFile, `${process.pid}\n`);
  process.stdout.write(JSON.stringify({ listening: server.url, node: process.version }) + '\n');
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`lab apiserver failed to start: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
