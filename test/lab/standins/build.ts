// Builds the k3s STAND-IN "binary": ONE executable JavaScript file per architecture (`#!/usr/bin/env node`,
// runs on the POP's Node 18, no node_modules), with its architecture, version and the CRDs it serves baked in.
// Placed where the real binary goes (`k3s`, `k3s-arm64`, `k3s-armhf`); never shipped by fsm-edge.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { FSM_REFERENCE_DIR } from './fsm-chart.js';

export type K3sArch = 'amd64' | 'arm64' | 'arm';

export const K3S_STANDIN_VERSION = 'v1.37.1+k3s1';

/** Release file name of the binary for an arch, as in k3s's GitHub releases. */
export const k3sBinaryName = (arch: K3sArch) => (arch === 'amd64' ? 'k3s' : arch === 'arm64' ? 'k3s-arm64' : 'k3s-armhf');

const here = path.dirname(fileURLToPath(import.meta.url));

/** k3s's own Addon CRD (k3s.cattle.io/v1), which k3s registers itself; the schema is open like the real one's. */
export const ADDON_CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: addons.k3s.cattle.io
spec:
  group: k3s.cattle.io
  names: { kind: Addon, listKind: AddonList, plural: addons, singular: addon }
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              source: { type: string }
              checksum: { type: string }
          status: { type: object, x-kubernetes-preserve-unknown-fields: true }
`;

function embeddedCrds(): Record<string, string> {
  const out: Record<string, string> = { 'k3s.cattle.io_addons.yaml': ADDON_CRD };
  const hc = path.join(FSM_REFERENCE_DIR, 'k3s', 'helm-controller-v0.17.7');
  for (const f of ['helm.cattle.io_helmcharts.yaml', 'helm.cattle.io_helmchartconfigs.yaml'])
    out[f] = fs.readFileSync(path.join(hc, f), 'utf8');
  const fsmCrds = path.join(FSM_REFERENCE_DIR, 'fsm', 'v1.5.1', 'crds');
  for (const f of fs.readdirSync(fsmCrds).sort()) out[f] = fs.readFileSync(path.join(fsmCrds, f), 'utf8');
  return out;
}

function sourceCommit(): string {
  const h = crypto.createHash('sha256');
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) h.update(fs.readFileSync(p));
    }
  };
  walk(path.join(here, 'k3s'));
  for (const f of ['fsm-images.ts', 'helm-values.ts']) h.update(fs.readFileSync(path.join(here, f)));
  walk(path.join(here, '..', 'apiserver'));
  return h.digest('hex').slice(0, 8);
}

/** Bundles the stand-in for `arch` into `outFile` (mode 0755) and returns the path. */
export interface K3sStandInOptions {
  /** The version it reports and serves (default K3S_STANDIN_VERSION). */
  version?: string;
  /** `never-ready`: a broken release that starts and never becomes ready (an upgrade that must be rolled back). */
  fault?: 'never-ready';
}

export async function buildK3sStandIn(arch: K3sArch, outFile: string, opts: K3sStandInOptions = {}): Promise<string> {
  const version = opts.version ?? K3S_STANDIN_VERSION;
  fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
  await build({
    entryPoints: [path.join(here, 'k3s', 'main.ts')],
    outfile: outFile,
    bundle: true,
    platform: 'node',
    target: 'node18',
    format: 'cjs',
    minify: true,
    legalComments: 'none',
    logLevel: 'error',
    banner: {
      js: `#!/usr/bin/env node\n// k3s ${version} ${arch}${opts.fault ? ` (fault: ${opts.fault})` : ''} — STAND-IN built by fsm-edge's lab (test/lab/standins/k3s). NOT the real k3s.\n`,
    },
    define: {
      __K3S_STANDIN_ARCH__: JSON.stringify(arch),
      __K3S_STANDIN_VERSION__: JSON.stringify(version),
      __K3S_STANDIN_COMMIT__: JSON.stringify(sourceCommit()),
      __K3S_STANDIN_CRDS__: JSON.stringify(embeddedCrds()),
      __K3S_STANDIN_FAULT__: JSON.stringify(opts.fault ?? ''),
    },
  });
  fs.chmodSync(outFile, 0o755);
  return outFile;
}

/** `k3s-images.txt` of the stand-in's release: the system images an airgap bundle must carry. */
export { SYSTEM_IMAGES as K3S_SYSTEM_IMAGES } from './k3s/build-info.js';
