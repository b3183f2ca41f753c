// Resources one run shares across all its sites: the bundle, verified once (signature and document up front,
// each arch's blobs hashed once, on first need), and one hub API client per Hub document.

import { createHash, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type BundleDoc, readBundleDoc } from '../bundle/format.js';
import { BUNDLE_FILE } from '../bundle/layout.js';
import { verifyBundle } from '../bundle/verify.js';
import { loadPublicKey } from '../bundle/sign.js';
import type { Hub } from '../config/hub.js';
import { resolveSecret } from '../config/secret.js';
import { HubKube } from '../kube/hub.js';

/** A bundle whose bundle.json signature was verified; phases see it through this interface. */
export interface VerifiedBundleRef {
  readonly dir: string;
  readonly doc: BundleDoc;
  readonly digest: string;
  readonly signer: string;
  verifyArch(arch: string): Promise<void>;
}

export class SharedBundle implements VerifiedBundleRef {
  private readonly arches = new Map<string, Promise<void>>();

  private constructor(
    readonly dir: string,
    /** Parsed from exactly the bytes whose signature was verified. */
    readonly doc: BundleDoc,
    /** sha256 of those bytes: the bundle's identity in journals and records. */
    readonly digest: string,
    /** Key id of the signer. */
    readonly signer: string,
    private readonly trustedKeys: KeyObject[],
  ) {}

  /** Reads bundle.json once, verifies its signature against the trusted keys, parses those same bytes. */
  static async open(dir: string, trustKeyFiles: readonly string[]): Promise<SharedBundle> {
    const keys = trustKeyFiles.map((f) => loadPublicKey(f));
    const v = await readVerifiedBundle(dir, { trustedKeys: keys, arches: [] });
    return new SharedBundle(dir, v.doc, v.digest, v.signer, keys);
  }

  /** Every blob of this arch against the signed document, hashed once per run however many sites share it. */
  verifyArch(arch: string): Promise<void> {
    let p = this.arches.get(arch);
    if (!p) {
      p = readVerifiedBundle(this.dir, { trustedKeys: this.trustedKeys, arches: [arch] }).then((v) => {
        if (v.digest !== this.digest) throw new Error(`bundle ${this.dir}: bundle.json changed during the run (was ${this.digest}, now ${v.digest})`);
      });
      this.arches.set(arch, p);
    }
    return p;
  }
}

/** One client per Hub document (by name and the directory its secrets resolve from). */
export class HubClients {
  private readonly clients = new Map<string, HubKube>();

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  get(hub: Hub, configDir: string): HubKube {
    const key = `${hub.metadata.name}\0${configDir}`;
    let c = this.clients.get(key);
    if (!c) {
      c = HubKube.fromKubeconfig(resolveSecret(hub.spec.kubeconfig, configDir, this.env), hub.spec.context);
      this.clients.set(key, c);
    }
    return c;
  }
}

// TEMPORARY until bundle/ grows readVerifiedBundle (one read of bundle.json, verified, then parsed).
async function readVerifiedBundle(dir: string, opts: { trustedKeys: KeyObject[]; arches: string[] }) {
  const r = await verifyBundle(dir, opts);
  const doc = readBundleDoc(dir);
  const digest = 'sha256:' + createHash('sha256').update(readFileSync(path.join(dir, BUNDLE_FILE))).digest('hex');
  return { doc, digest, signer: r.signer };
}
