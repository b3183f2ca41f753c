// Pods that can never start on an airgapped POP because their image is not there: helm runs without `--wait`,
// so a missing image does not fail the helm Job — the pods just sit in ErrImageNeverPull / ImagePullBackOff
// (the kubelet's waiting reasons) while any wait on their Deployments runs into its timeout. Reading the
// waiting reasons names the image within seconds instead.

import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import type { PopKube } from '../kube/pop.js';

/** The Kubernetes clients the install waits use (a PopKube, or any client set against the POP's API). */
export type PopKubeClients = Pick<PopKube, 'core' | 'batch' | 'custom'>;

/** kubelet waiting reasons that mean "the image is not on this node and cannot be pulled". */
export const IMAGE_WAIT_REASONS = ['ErrImageNeverPull', 'ImagePullBackOff', 'ErrImagePull', 'InvalidImageName'] as const;

export interface ImageWait {
  namespace: string;
  pod: string;
  container: string;
  image: string;
  reason: string;
  message: string;
}

function waitsOf(pod: V1Pod): ImageWait[] {
  const specImage = new Map([...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => [c.name, c.image ?? '']));
  const statuses: V1ContainerStatus[] = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  const out: ImageWait[] = [];
  for (const s of statuses) {
    const w = s.state?.waiting;
    if (!w?.reason || !(IMAGE_WAIT_REASONS as readonly string[]).includes(w.reason)) continue;
    out.push({
      namespace: pod.metadata?.namespace ?? '',
      pod: pod.metadata?.name ?? '',
      container: s.name,
      image: specImage.get(s.name) || s.image || '',
      reason: w.reason,
      message: (w.message ?? '').trim(),
    });
  }
  return out;
}

/** Containers in `namespace` (optionally only pods matching `labelSelector`) waiting for an image. */
export async function podsBlockedOnImages(kube: PopKubeClients, namespace: string, labelSelector?: string): Promise<ImageWait[]> {
  const pods = await kube.core.listNamespacedPod({ namespace, ...(labelSelector ? { labelSelector } : {}) });
  return pods.items.flatMap(waitsOf);
}

/** One line per missing image (deduplicated), with who needs it and the kubelet's reason. */
export function describeImageWaits(waits: ImageWait[]): string {
  const byImage = new Map<string, ImageWait[]>();
  for (const w of waits) byImage.set(w.image, [...(byImage.get(w.image) ?? []), w]);
  return [...byImage.entries()]
    .map(([image, ws]) => {
      const who = [...new Set(ws.map((w) => `${w.namespace}/${w.pod} (${w.container})`))].join(', ');
      const msg = ws[0]!.message ? `: ${ws[0]!.message.split('\n')[0]}` : '';
      return `image ${image} is not on the POP — ${ws[0]!.reason} for ${who}${msg}`;
    })
    .join('\n');
}

/**
 * Tracks image waits across polls: a wait seen twice in a row is real (not the instant between an import
 * and the kubelet's next look), and is final on an airgapped POP — nothing will ever pull the image.
 */
export class ImageWaitTracker {
  private seen = new Set<string>();

  /** Returns the waits that were also present in the previous observation. */
  persistent(waits: ImageWait[]): ImageWait[] {
    const key = (w: ImageWait) => `${w.namespace}/${w.pod}/${w.container}/${w.image}`;
    const now = new Set(waits.map(key));
    const both = waits.filter((w) => this.seen.has(key(w)));
    this.seen = now;
    return both;
  }
}

/** The fix line for missing images in an airgapped install. */
export const MISSING_IMAGE_FIX =
  'the bundle lacks these images (or they were not imported: see `journalctl -u k3s | grep -i import` on the POP); rebuild the bundle with them, then run the install again';
