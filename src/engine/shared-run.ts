// Resources one run shares across all its sites: the bundle, verified once (signature and document up front,
// each arch's blobs hashed once, on first need), and one hub API client per Hub document.

import type { KeyObject } from 'node:crypto';
import type { BundleDoc } from '../bundle/format.js';
import { readVerifiedBundle, verifyBundleContent } from '../bundle/verify.js';
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
  ) {}

  /** Reads bundle.json once, verifies its signature against the trusted keys, parses those same bytes. */
  static async open(dir: string, trustKeyFiles: readonly string[]): Promise<SharedBundle> {
    const keys = trustKeyFiles.map((f) => loadPublicKey(f));
    const v = await readVerifiedBundle(dir, { trustedKeys: keys, arches: [] });
    return new SharedBundle(dir, v.doc, v.digest, v.signer);
  }

  /**
   * Every blob of this arch against the document verified at open (bundle.json is not read again), hashed once
   * per run however many sites share the arch.
   */
  verifyArch(arch: string): Promise<void> {
    let p = this.arches.get(arch);
    if (!p) {
      p = verifyBundleContent(this.dir, this.doc, { arches: [arch] }).then(() => undefined);
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
