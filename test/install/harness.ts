// Lab harness for install tests and the demo: POPs, a private hub instance, the sample bundle, and Site/Hub
// files pointing at them. Everything started here is stopped by `stop()` (by handle, never by name), so it
// can run beside other lab users.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { popDown, popUp } from '../lab/pop.js';
import { startHub, type Hub } from '../lab/hub.js';
import { buildSampleBundle, type SampleBundle } from '../lab/images/sample-bundle.js';
import type { LabArch, PopInfo } from '../lab/types.js';

export interface SiteFileOptions {
  interception?: 'auto' | 'ebpf' | 'iptables';
  hub?: boolean;
  arch?: 'auto' | 'amd64' | 'arm64' | 'arm';
  /** Leave hostKeys empty (TOFU tests). */
  unpinned?: boolean;
  hostKeys?: string[];
}

export function siteDoc(pop: PopInfo, o: SiteFileOptions = {}) {
  return {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Site',
    metadata: { name: `site-${pop.name}`, labels: { lab: 'true' } },
    spec: {
      arch: o.arch ?? 'auto',
      ssh: {
        host: pop.sshHost,
        port: pop.sshPort,
        user: pop.user,
        identityFile: pop.identityFile,
        hostKeys: o.unpinned ? [] : (o.hostKeys ?? [pop.hostKeyFingerprint]),
        sudo: true,
      },
      k3s: { tlsSans: [pop.labAddress], disable: ['traefik'], datastore: 'sqlite' },
      mesh: { interception: o.interception ?? 'auto', ingress: true, multicluster: true, profile: 'edge-small' },
      ...(o.hub === false
        ? {}
        : {
            hub: {
              ref: 'lab-hub',
              region: 'lab',
              zone: pop.name,
              group: 'retail',
              gateway: { host: pop.labAddress, port: 80 },
              apiEndpoint: `https://${pop.labAddress}:6443`,
            },
          }),
    },
  };
}

export function hubDoc(kubeconfigPath: string) {
  return {
    apiVersion: 'edge.flomesh.io/v1alpha1',
    kind: 'Hub',
    metadata: { name: 'lab-hub' },
    spec: { kubeconfig: { file: kubeconfigPath }, fsmNamespace: 'fsm-system' },
  };
}

export interface Harness {
  pops: PopInfo[];
  hub?: Hub;
  bundle: SampleBundle;
  /** Working directory with site files, the controller state dir, logs. */
  dir: string;
  stateDir: string;
  /** Writes `<dir>/<pop>.yaml` (Site + Hub) and returns its path. */
  writeSite(pop: PopInfo, o?: SiteFileOptions): string;
  /** Stops the hub (its stored objects are kept). */
  stopHub(): Promise<void>;
  /** Starts it again with the same state (Clusters survive). */
  startHub(): Promise<void>;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  arches: LabArch[];
  hub?: boolean;
  /** Port of this harness's own hub (beside any other lab hub). */
  hubPort?: number;
  hubForwardHost?: string;
  keepDir?: boolean;
  log?: (line: string) => void;
}

export async function startHarness(o: HarnessOptions): Promise<Harness> {
  const log = o.log ?? (() => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fsm-edge-install-'));
  const stateDir = path.join(dir, 'state');
  const pops: PopInfo[] = [];
  let hub: Hub | undefined;
  const stop = async () => {
    await Promise.all(pops.map((p) => popDown(p).catch((e) => log(`popDown ${p.name}: ${(e as Error).message}`))));
    await hub?.stop().catch(() => {});
    if (!o.keepDir) fs.rmSync(dir, { recursive: true, force: true });
  };
  const hubOpts = { port: o.hubPort ?? 6643, forwardHost: o.hubForwardHost ?? '127.0.0.3', stateDir: path.join(dir, 'hub') };
  try {
    log('building the sample bundle (cached when present)');
    const bundle = await buildSampleBundle({ log });
    log(`starting ${o.arches.join(' + ')} POP(s)${o.hub ? ' and a hub' : ''}`);
    const [started, h] = await Promise.all([
      Promise.all(o.arches.map((arch) => popUp({ arch, systemd: true }).then((p) => (pops.push(p), p)))),
      o.hub ? startHub({ ...hubOpts, fresh: true }) : Promise.resolve(undefined),
    ]);
    hub = h;
    return {
      pops: started,
      ...(hub ? { hub } : {}),
      bundle,
      dir,
      stateDir,
      writeSite(pop, so = {}) {
        const file = path.join(dir, `${pop.name}.yaml`);
        const docs = [siteDoc(pop, { ...so, hub: so.hub ?? Boolean(hub) }), ...(hub ? [hubDoc(hub.kubeconfigPath)] : [])];
        fs.writeFileSync(file, docs.map((d) => stringify(d)).join('---\n'));
        return file;
      },
      async stopHub() {
        await hub?.stop();
      },
      async startHub() {
        hub = await startHub(hubOpts);
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
