// Where the lab keeps its state. Global (not per checkout), because the namespaces it names (lab-hub, lab-popN)
// are global too: `scripts/lab.ts down` from any checkout must find what any other run left behind.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Runtime state: pid files, POP upper dirs (on a tmpfs mounted here), keys. Removed by `labDown`. */
export const LAB_STATE = process.env.FSM_EDGE_LAB_STATE ?? '/var/lib/fsm-edge-lab';
/** Root filesystem caches (debootstrap output), kept across runs. */
export const LAB_CACHE = process.env.FSM_EDGE_LAB_CACHE ?? '/var/cache/fsm-edge-lab';
/** This directory (test/lab), for the helper scripts that live next to the TypeScript. */
export const LAB_SRC = path.dirname(fileURLToPath(import.meta.url));

export const procsDir = () => path.join(LAB_STATE, 'procs');
export const popsDir = () => path.join(LAB_STATE, 'pops');
/** tmpfs holding extracted base root filesystems and every POP's upper dir. */
export const baseDir = () => path.join(LAB_STATE, 'base');
export const keysDir = () => path.join(LAB_STATE, 'keys');
