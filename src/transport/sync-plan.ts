// What a sync pass sends: the wanted blobs checked before anything touches the POP, then per pass the jobs (what
// is missing, from which offset) spread over the streams.

import { stat } from 'node:fs/promises';
import type { BlobWant } from './host.js';
import type { StoreState } from './pop-store-script.js';
import { BlobSyncError } from './sync-errors.js';

export interface Blob {
  digest: string;
  hex: string;
  size: number;
  sourcePath: string;
}

export interface Job {
  blob: Blob;
  offset: number;
}

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** Validates and de-duplicates what we are asked to send: digests well-formed, sources present at their size. */
export async function readWants(wants: BlobWant[]): Promise<Map<string, Blob>> {
  const blobs = new Map<string, Blob>();
  for (const w of wants) {
    const m = DIGEST_RE.exec(w.digest);
    if (!m) throw new BlobSyncError(`blob digest ${JSON.stringify(w.digest)} is not of the form sha256:<64 hex>`);
    if (blobs.has(m[1]!)) continue;
    const st = await stat(w.sourcePath).catch((e: Error) => {
      throw new BlobSyncError(`blob ${w.digest}: cannot read its source ${w.sourcePath}: ${e.message}`);
    });
    if (st.size !== w.size) {
      throw new BlobSyncError(
        `blob ${w.digest}: source ${w.sourcePath} is ${st.size} bytes, expected ${w.size} — the bundle is damaged (run \`fsm-edge bundle verify\`)`,
      );
    }
    blobs.set(m[1]!, { digest: w.digest, hex: m[1]!, size: w.size, sourcePath: w.sourcePath });
  }
  return blobs;
}

/** A stored blob counts only at its exact size: a short or empty one (a power cut, an old writer) is re-sent. */
export function isStored(state: StoreState, blob: Blob): boolean {
  return state.have.get(blob.hex) === blob.size;
}

/**
 * The jobs of one pass. A partial longer than the blob is garbage (start over); one of exactly its size
 * (dropped between write and rename) is sent as a zero-byte job, which verifies and renames it on the POP.
 * Blobs another writer holds are left for a later pass.
 */
export function planJobs(pending: Iterable<string>, blobs: Map<string, Blob>, state: StoreState): Job[] {
  const jobs: Job[] = [];
  for (const hex of pending) {
    if (state.busy.has(hex)) continue;
    const blob = blobs.get(hex)!;
    let offset = state.partial.get(hex) ?? 0;
    if (offset > blob.size) offset = 0;
    jobs.push({ blob, offset });
  }
  return jobs;
}

/** Largest remainder first onto the least-loaded stream. */
export function spreadOverStreams(jobs: Job[], streams: number): Job[][] {
  const lanes: Job[][] = Array.from({ length: Math.min(streams, jobs.length) }, () => []);
  const load = lanes.map(() => 0);
  for (const j of [...jobs].sort((a, b) => b.blob.size - b.offset - (a.blob.size - a.offset))) {
    const i = load.indexOf(Math.min(...load));
    lanes[i]!.push(j);
    load[i]! += j.blob.size - j.offset + 4096;
  }
  return lanes;
}
