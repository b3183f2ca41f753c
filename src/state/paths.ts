// Where the controller keeps what it knows about sites: `$FSM_EDGE_STATE_DIR`, else
// `$XDG_STATE_HOME/fsm-edge`, else `~/.local/state/fsm-edge`. One directory per site, so a fleet runner, a
// backup job or a recovery can copy or lock a single site.

import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

export function stateDir(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return explicit;
  if (env.FSM_EDGE_STATE_DIR) return env.FSM_EDGE_STATE_DIR;
  const base = env.XDG_STATE_HOME || path.join(homedir(), '.local', 'state');
  return path.join(base, 'fsm-edge');
}

export const siteDir = (root: string, site: string) => path.join(root, 'sites', site);
export const recordPath = (root: string, site: string) => path.join(siteDir(root, site), 'record.json');
export const secretsPath = (root: string, site: string) => path.join(siteDir(root, site), 'secrets.enc');
export const keyPath = (root: string) => path.join(root, 'state.key');

/** Every site's sealed secrets file under `root` (sorted): while any exists, no new state key may be made. */
export function sealedSecretFiles(root: string): string[] {
  let sites: string[];
  try {
    sites = readdirSync(path.join(root, 'sites'));
  } catch {
    return [];
  }
  return sites
    .sort()
    .map((site) => secretsPath(root, site))
    .filter((f) => existsSync(f));
}
