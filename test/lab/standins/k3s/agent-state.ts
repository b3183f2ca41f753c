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

  constructor(
    readonly nodeName: string,
    readonly containerd: Containerd,
  ) {}

  async refreshImages(maxAgeMs = 3000): Promise<void> {
    if (!this.ready || Date.now() - this.lastRefresh < maxAgeMs) return;
    this.lastRefresh = Date.now();
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
