import type { Controller } from '../types.js';
export interface ClusterControllerOptions { fsmNamespace?: string; resyncSeconds?: number }
export function clusterController(_opts: ClusterControllerOptions = {}): Controller { throw new Error('not implemented yet'); }
