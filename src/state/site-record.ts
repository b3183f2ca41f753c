// The controller's record of a site: what is installed from which bundle, the modes chosen, the pinned host
// key, registration state, and what the last runs cost (time, bytes, round trips). `fsm-edge status` reads it;
// a fleet rollout reads many; recovery re-installs the same bundle digest. Never holds a secret.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { recordPath } from './paths.js';
import { writeAtomic } from './write-atomic.js';

export type RegistrationState = 'managed' | 'pending' | 'failed' | 'none';

export interface RunSummary {
  id: string;
  operation: string;
  ok: boolean;
  dryRun: boolean;
  startedAt: string;
  durationMs: number;
  failedPhase?: string;
  error?: string;
  phases: Array<{ id: string; status: string; durationMs: number; summary: string }>;
  roundTrips: number;
  bytesSent: number;
  blobsSent?: number;
}

export interface SiteRecord {
  version: 1;
  site: string;
  updatedAt: string;
  host: { address: string; port: number; user: string; hostKeys: string[] };
  arch?: string;
  bundle?: { name: string; digest: string; signer?: string };
  versions: { k3s?: string; fsm?: string; pipy?: string; chart?: string };
  modes: {
    interception?: string;
    interceptionReason?: string;
    datastore: string;
    profile: string;
    ingress: boolean;
    multicluster: boolean;
  };
  registration: { state: RegistrationState; reason?: string; cluster?: string; hub?: string; at?: string };
  /** Secrets the controller escrowed (names only; values are in secrets.enc). */
  escrowed: string[];
  lastRun?: RunSummary;
  /** The last successful (non-dry) run, so a failed re-run does not hide what is installed. */
  lastSuccess?: RunSummary;
  history: Array<Pick<RunSummary, 'id' | 'operation' | 'ok' | 'startedAt' | 'durationMs' | 'failedPhase'>>;
}

export function readSiteRecord(root: string, site: string): SiteRecord | undefined {
  const file = recordPath(root, site);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as SiteRecord;
}

export function writeSiteRecord(root: string, rec: SiteRecord): void {
  rec.history = rec.history.slice(-20);
  writeAtomic(recordPath(root, rec.site), JSON.stringify(rec, null, 2) + '\n', 0o644);
}

export function listSiteRecords(root: string): SiteRecord[] {
  const dir = path.join(root, 'sites');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((name) => readSiteRecord(root, name))
    .filter((r): r is SiteRecord => r !== undefined);
}
