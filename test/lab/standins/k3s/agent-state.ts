// What the simulated controllers know about this node's agent: whether it came up, and the images containerd
// holds (refreshed from real containerd, `ctr images check`, so "imported" means complete for this platform).
import type { Containerd, ImageInfo } from './containerd.js';
import { normalizeImageRef } from '../fsm-images.js';

export class AgentState {
  /** Set when the agent could not start (snapshotter, node password…): no node registers. */
  error?: string;
  ready = false;
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

  imageList(): ImageInfo[] {
    return [...this.images.values()];
  }
}
