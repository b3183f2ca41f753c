// LAB STAND-IN: the lab Kubernetes API server. Used by the k3s stand-in inside every POP (bundled into one
// .mjs by build.ts, runs on Node 18) and on its own as the federation hub (test/lab/hub.ts).
// Never imported by src/.
export type * from './types.js';
export { createApiServer } from './server.js';
export { ApiError } from './errors.js';
export { clusterController, presetMeshConfig, type ClusterControllerOptions } from './controllers/cluster.js';
export { skeletonFromSchema } from './schema.js';
export { applyJsonPatch, applyMergePatch, applyStrategicMergePatch } from './patch.js';
export { loadKubeconfig, KubeClient, KubeconfigError, KubeRequestError, type KubeconfigTarget } from './kubeclient.js';
