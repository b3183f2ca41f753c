// `fsm-edge rollout --emit-job`: a Kubernetes Indexed Job (batch/v1, completionMode Indexed, completions =
// parallelism = n) that runs a rollout's n shards on a cluster that already exists (the hub, say). The Job
// controller adds JOB_COMPLETION_INDEX (the pod's index, from 0) to the env of each container of an Indexed Job
// (kubernetes.io/docs/tasks/job/indexed-parallel-processing-static); the args use it as
// `--shard $(JOB_COMPLETION_INDEX)/n` (Kubernetes expands `$(VAR)` in args from the container's env). Config files come from a ConfigMap, secret files and `{env}`
// secrets from a Secret — mounted or set as env from the Secret, never on a command line; bundles are read
// from a volume claim; state and reports go to a shared claim, one directory per shard (rollout ids carry the
// shard), so `fsm-edge report merge` can join them. Host keys must already be pinned: a pod cannot ask.

import path from 'node:path';
import { UsageError } from '../config/errors.js';

export const CONFIG_DIR = '/etc/fsm-edge/config';
export const BUNDLES_DIR = '/var/lib/fsm-edge/bundles';
export const STATE_DIR = '/var/lib/fsm-edge/state';

export interface JobFile {
  /** Path relative to the fleet file's directory, as the config refers to it. */
  path: string;
  /** Where it is read from on this controller (for the kubectl lines). */
  source: string;
}

export interface EmitJobInput {
  fleet: string;
  shards: number;
  image: string;
  namespace: string;
  /** The fleet file, relative to its own directory (its basename). */
  fleetFile: string;
  /** Config files (site files of a Fleet glob, a Hub file, trust keys) other than the fleet file. */
  configFiles: JobFile[];
  /** Files holding secrets (SSH keys, passphrase files, a hub kubeconfig). */
  secretFiles: JobFile[];
  /** `{env: NAME}` secrets: set in the pod from the Secret's key NAME. */
  secretEnv: string[];
  trustKeys: string[];
  /** Bundle directory name inside the bundles claim. */
  bundle: string;
  bundleClaim: string;
  stateClaim: string;
  /** More rollout flags (--max-rate, --allow-downgrade, --hub, --resume), no secrets. */
  extraArgs: string[];
}

/** A ConfigMap/Secret key for a relative path (keys are `[-._a-zA-Z0-9]+`; the item's path restores the layout). */
export function itemKey(rel: string): string {
  return rel.replace(/\//g, '__').replace(/[^-._a-zA-Z0-9]/g, '_');
}

/** A path a config refers to must stay inside the fleet's directory to be mounted there. */
export function relativeInside(fleetDir: string, file: string, what: string): string {
  const rel = path.relative(fleetDir, file);
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel))
    throw new UsageError(
      `${what} ${file} is outside the fleet file's directory ${fleetDir}: the Job mounts that directory only`,
      'copy the file beside the fleet file (or below it) and refer to it by a relative path',
    );
  return rel.split(path.sep).join('/');
}

export function jobNames(fleet: string) {
  const base = `fsm-edge-rollout-${fleet}`.slice(0, 52).replace(/-+$/, '');
  return { job: base, config: `${base}-config`, secret: `${base}-secrets` };
}

export function rolloutJob(i: EmitJobInput): Record<string, unknown> {
  const names = jobNames(i.fleet);
  const labels = { 'app.kubernetes.io/name': 'fsm-edge', 'app.kubernetes.io/component': 'rollout', 'edge.flomesh.io/fleet': i.fleet };
  const configItems = [{ path: i.fleetFile }, ...i.configFiles].map((f) => ({ key: itemKey(f.path), path: f.path }));
  const sources: Record<string, unknown>[] = [{ configMap: { name: names.config, items: configItems } }];
  if (i.secretFiles.length)
    sources.push({ secret: { name: names.secret, items: i.secretFiles.map((f) => ({ key: itemKey(f.path), path: f.path })) } });
  const args = [
    'rollout',
    `${CONFIG_DIR}/${i.fleetFile}`,
    '--bundle',
    `${BUNDLES_DIR}/${i.bundle}`,
    ...i.trustKeys.flatMap((k) => ['--trust-key', `${CONFIG_DIR}/${k}`]),
    '--shard',
    `$(JOB_COMPLETION_INDEX)/${i.shards}`,
    ...i.extraArgs,
  ];
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: names.job, namespace: i.namespace, labels },
    spec: {
      completionMode: 'Indexed',
      completions: i.shards,
      parallelism: i.shards,
      // A failed shard fails alone (the others finish their share); it is not retried: a rollout that stopped
      // on its budget must not start again by itself. Re-run the Job with --resume instead.
      backoffLimitPerIndex: 0,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'rollout',
              image: i.image,
              command: ['fsm-edge'],
              args,
              env: [
                { name: 'FSM_EDGE_STATE_DIR', value: STATE_DIR },
                // The root filesystem is read-only: a writable scratch directory for anything that needs one.
                { name: 'HOME', value: '/tmp' },
                ...i.secretEnv.map((n) => ({ name: n, valueFrom: { secretKeyRef: { name: names.secret, key: n } } })),
              ],
              volumeMounts: [
                { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
                { name: 'bundles', mountPath: BUNDLES_DIR, readOnly: true },
                { name: 'state', mountPath: STATE_DIR },
                { name: 'tmp', mountPath: '/tmp' },
              ],
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            },
          ],
          volumes: [
            // 0400: SSH keys are readable by the pod's user only.
            { name: 'config', projected: { defaultMode: 0o400, sources } },
            { name: 'bundles', persistentVolumeClaim: { claimName: i.bundleClaim, readOnly: true } },
            { name: 'state', persistentVolumeClaim: { claimName: i.stateClaim } },
            { name: 'tmp', emptyDir: {} },
          ],
        },
      },
    },
  };
}

/** The kubectl lines that create what the Job mounts (values come from files: no secret on a command line). */
export function setupCommands(i: EmitJobInput): string[] {
  const names = jobNames(i.fleet);
  const q = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const from = (f: JobFile) => `--from-file=${q(`${itemKey(f.path)}=${f.source}`)}`;
  const lines = [
    `kubectl -n ${i.namespace} create configmap ${names.config} ${[{ path: i.fleetFile, source: i.fleetFile }, ...i.configFiles].map(from).join(' ')}`,
  ];
  if (i.secretFiles.length || i.secretEnv.length) {
    const env = i.secretEnv.map((n) => `--from-file=${n}=FILE-HOLDING-${n}`);
    lines.push(`kubectl -n ${i.namespace} create secret generic ${names.secret} ${[...i.secretFiles.map(from), ...env].join(' ')}`);
  }
  lines.push(
    `# the bundle directory ${i.bundle}/ on the claim ${i.bundleClaim}; claim ${i.stateClaim} (ReadWriteMany) for state and reports`,
    `# after the Job: fsm-edge report merge --out DIR ${STATE_DIR}/rollouts/${i.fleet}-*-s*of${i.shards}`,
  );
  return lines;
}
