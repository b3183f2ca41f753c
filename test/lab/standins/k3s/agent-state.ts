// What the simulated controllers know about this node's agent: whether it came up, and the images containerd
// holds (refreshed from real containerd, `ctr images check`, so "imported" means complete for this platform).
import type { Containerd, ImageInfo } from './containerd.js';
import { normalizeImageRef } from '../fsm-images.js';
import { log } from './log.js';
import { pullEndpoints, pullFailure, type HostConfig } from './registries.js';

export class AgentState {
  /** Set when the agent could not start (snapshotter, node password…): no node registers. */
  error?: string;
  ready = false;
  /** containerd's certs.d as k3s rendered it from registries.yaml: where a pull would go. */
  registryHosts = new Map<string, HostConfig>();
  /** Every endpoint a pull was attempted at (for tests: did anything try to leave the POP?). */
  readonly pullAttempts: string[] = [];
  private images = new Map<string, ImageInfo>();
  private lastRefresh = 0;
  private seenGeneration = -1;

  constructor(
    readonly nodeName: string,
    readonly containerd: Containerd,
  ) {}

  /**
   * Re-reads containerd's image list after an import, or when older than `maxAgeMs` (someone may have run
   * `ctr images rm`). Spawning ctr is costly on emulated arm64 POPs, so not on every controller tick.
   */
  async refreshImages(maxAgeMs = 30_000): Promise<void> {
    if (!this.ready) return;
    if (this.seenGeneration === this.containerd.generation && Date.now() - this.lastRefresh < maxAgeMs) return;
    this.lastRefresh = Date.now();
    this.seenGeneration = this.containerd.generation;
    const list = await this.containerd.images();
    this.images = new Map(list.map((i) => [i.ref, i]));
  }

  /** Undefined if the image can run here, else the reason it cannot. */
  imageProblem(ref: string): string | undefined {
    const full = normalizeImageRef(ref);
    const i = this.images.get(full);
    if (!i) return `image ${full} is not present on node ${this.nodeName} (airgap: nothing can be pulled)`;
    if (!i.complete) return `image ${full} is incomplete for this node's platform`;
    return undefined;
  }

  /**
   * The kubelet's pull of a missing image, as an airgapped node fails it: containerd tries the endpoints of
   * hosts.toml (or the registry itself) and none answers. Returns the ErrImagePull message.
   */
  pullError(ref: string): string {
    const full = normalizeImageRef(ref);
    for (const url of pullEndpoints(this.registryHosts, full)) {
      if (this.pullAttempts.includes(`${full} ${url}`)) continue;
      this.pullAttempts.push(`${full} ${url}`);
      log.info(`containerd: pulling ${full} from ${url}`);
    }
    return pullFailure(this.registryHosts, full);
  }

  imageList(): ImageInfo[] {
    return [...this.images.values()];
  }
}
