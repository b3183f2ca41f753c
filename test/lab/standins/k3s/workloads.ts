// Kubelet + workload controllers, simulated: a Deployment/DaemonSet/StatefulSet becomes Ready when the node is
// Ready, every image its pods run is in containerd for this platform (airgap: nothing can be pulled), and any
// host precondition registered for it holds. Otherwise its pod shows the reason where the kubelet puts it
// (container state waiting: ErrImageNeverPull / ImagePullBackOff / CrashLoopBackOff with a message).
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Controller, ControllerContext, KubeObject, Store } from '../../apiserver/index.js';
import { ApiError } from '../../apiserver/index.js';
import type { AgentState } from './agent-state.js';
import { log } from './log.js';

/**
 * A workload may carry host preconditions its pods check at start (the stand-in's way of simulating what the
 * container would find on the host), as JSON in this annotation: `{ "files": [...], "dirs": [...],
 * "bpffs": "/opt/bpf" }` with a message per failure.
 */
export const HOST_CHECK_ANNOTATION = 'k3s-standin.fsm-edge.io/host-check';

interface HostCheck {
  /** Paths that must exist, each with the error the container logs when missing. */
  paths?: Array<{ path: string; error: string }>;
  /** A directory where a bpf filesystem must be mounted. */
  bpffs?: { path: string; error: string };
}

function hostCheckFailure(w: KubeObject): string | undefined {
  const raw = w.metadata.annotations?.[HOST_CHECK_ANNOTATION];
  if (!raw) return undefined;
  let c: HostCheck;
  try {
    c = JSON.parse(raw) as HostCheck;
  } catch {
    return `bad ${HOST_CHECK_ANNOTATION} annotation`;
  }
  for (const p of c.paths ?? []) if (!fs.existsSync(p.path)) return p.error;
  if (c.bpffs) {
    let mounts = '';
    try {
      mounts = fs.readFileSync('/proc/self/mounts', 'utf8');
    } catch {
      /* treated as not mounted */
    }
    const want = c.bpffs.path.replace(/\/+$/, '');
    if (
      !mounts.split('\n').some((l) => {
        const f = l.split(' ');
        return f[2] === 'bpf' && f[1] === want;
      })
    )
      return c.bpffs.error;
  }
  return undefined;
}

interface Container {
  name: string;
  image?: string;
  imagePullPolicy?: string;
}

const KINDS: Array<[string, string]> = [
  ['apps/v1', 'Deployment'],
  ['apps/v1', 'DaemonSet'],
  ['apps/v1', 'StatefulSet'],
];

const stamp = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export function workloadController(agent: AgentState): Controller {
  let timer: NodeJS.Timeout | undefined;
  const unsubs: Array<() => void> = [];
  let running = false;
  let again = false;
  return {
    name: 'workloads',
    start(ctx: ControllerContext) {
      const run = async () => {
        if (running) return void (again = true);
        running = true;
        try {
          do {
            again = false;
            await agent.refreshImages();
            for (const [av, kind] of KINDS) for (const w of ctx.store.list(av, kind)) reconcile(ctx.store, agent, w);
          } while (again);
        } catch (e) {
          log.error(`workload controller: ${(e as Error).message}`);
        } finally {
          running = false;
        }
      };
      for (const [av, kind] of KINDS) unsubs.push(ctx.store.watch(av, kind, (ev) => ev.type !== 'DELETED' && void run()));
      timer = setInterval(() => void run(), 3000);
      void run();
    },
    stop() {
      clearInterval(timer);
      unsubs.forEach((u) => u());
    },
  };
}

function problemsOf(agent: AgentState, w: KubeObject, node: KubeObject | undefined): { reason: string; message: string } | undefined {
  if (!node) return { reason: 'Unschedulable', message: '0/0 nodes are available: no nodes registered.' };
  const ready = ((node.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? []).find(
    (c) => c.type === 'Ready',
  );
  if (ready?.status !== 'True')
    return {
      reason: 'Unschedulable',
      message: `0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.`,
    };
  const pod = (w.spec as { template?: { spec?: { containers?: Container[]; initContainers?: Container[] } } }).template?.spec ?? {};
  for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
    if (!c.image) continue;
    const p = agent.imageProblem(c.image);
    if (p) {
      const never = c.imagePullPolicy === 'Never';
      return {
        reason: never ? 'ErrImageNeverPull' : 'ImagePullBackOff',
        message: never
          ? `Container image "${c.image}" is not present with pull policy of Never`
          : `Back-off pulling image "${c.image}": ErrImagePull: ${agent.pullError(c.image)}`,
      };
    }
  }
  const failure = hostCheckFailure(w);
  if (failure) return { reason: 'CrashLoopBackOff', message: failure };
  return undefined;
}

function reconcile(store: Store, agent: AgentState, w: KubeObject) {
  if (w.metadata.deletionTimestamp) return;
  const node = store.get('v1', 'Node', agent.nodeName);
  const problem = problemsOf(agent, w, node);
  const spec = w.spec as { replicas?: number };
  const want = w.kind === 'DaemonSet' ? (node ? 1 : 0) : (spec.replicas ?? 1);
  const ok = !problem;
  const gen = w.metadata.generation ?? 1;
  const old = (w.status ?? {}) as Record<string, unknown>;
  let status: Record<string, unknown>;
  if (w.kind === 'DaemonSet') {
    status = {
      currentNumberScheduled: want,
      desiredNumberScheduled: want,
      numberMisscheduled: 0,
      numberReady: ok ? want : 0,
      numberAvailable: ok ? want : 0,
      ...(ok ? {} : { numberUnavailable: want }),
      updatedNumberScheduled: want,
      observedGeneration: gen,
    };
  } else {
    const cond = (type: string, st: boolean, reason: string, message: string) => {
      const prev = ((old.conditions as Array<Record<string, string>> | undefined) ?? []).find((c) => c.type === type);
      const same = prev && prev.status === (st ? 'True' : 'False') && prev.reason === reason;
      return {
        type,
        status: st ? 'True' : 'False',
        reason,
        message,
        lastUpdateTime: same ? prev.lastUpdateTime : stamp(),
        lastTransitionTime: same ? prev.lastTransitionTime : stamp(),
      };
    };
    status = {
      observedGeneration: gen,
      replicas: want,
      updatedReplicas: want,
      ...(ok ? { readyReplicas: want, availableReplicas: want } : { unavailableReplicas: want }),
      conditions: [
        ok
          ? cond('Available', true, 'MinimumReplicasAvailable', 'Deployment has minimum availability.')
          : cond('Available', false, 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.'),
        ok
          ? cond('Progressing', true, 'NewReplicaSetAvailable', `ReplicaSet "${w.metadata.name}-${hash5(w)}" has successfully progressed.`)
          : cond('Progressing', true, 'ReplicaSetUpdated', `ReplicaSet "${w.metadata.name}-${hash5(w)}" is progressing.`),
      ],
    };
  }
  if (JSON.stringify(strip(status)) !== JSON.stringify(strip(old))) {
    try {
      store.updateStatus({ ...w, status });
    } catch (e) {
      if (!(e instanceof ApiError && (e.code === 409 || e.code === 404))) throw e;
    }
  }
  if (node) syncPod(store, agent, w, problem);
}

const strip = (s: Record<string, unknown>) =>
  JSON.parse(JSON.stringify(s, (k, v) => (k === 'lastUpdateTime' || k === 'lastTransitionTime' ? undefined : v)));

function hash5(w: KubeObject): string {
  return crypto
    .createHash('sha256')
    .update(JSON.stringify((w.spec as { template?: unknown }).template ?? {}))
    .digest('hex')
    .slice(0, 10);
}

/** One pod per workload (single-node POP), carrying the kubelet's view of why it is not running. */
function syncPod(store: Store, agent: AgentState, w: KubeObject, problem: { reason: string; message: string } | undefined) {
  const ns = w.metadata.namespace!;
  const h = hash5(w);
  const name = w.kind === 'Deployment' ? `${w.metadata.name}-${h}-${h.slice(0, 5)}` : `${w.metadata.name}-${h.slice(0, 5)}`;
  const tmpl =
    (w.spec as { template?: { metadata?: { labels?: Record<string, string> }; spec?: { containers?: Container[] } } }).template ?? {};
  for (const p of store.list('v1', 'Pod', { namespace: ns })) {
    const owner = p.metadata.ownerReferences?.find((o) => o.uid === w.metadata.uid);
    if (owner && p.metadata.name !== name) store.delete('v1', 'Pod', p.metadata.name!, ns);
  }
  let pod = store.get('v1', 'Pod', name, ns);
  if (!pod) {
    pod = store.create({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: ns,
        labels: { ...(tmpl.metadata?.labels ?? {}) },
        ownerReferences: [
          {
            apiVersion: w.apiVersion,
            kind: w.kind,
            name: w.metadata.name!,
            uid: w.metadata.uid!,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: { ...(tmpl.spec ?? {}), nodeName: agent.nodeName },
    });
  }
  const containers = tmpl.spec?.containers ?? [];
  const ok = !problem;
  const status = {
    phase: ok ? 'Running' : 'Pending',
    conditions: [
      { type: 'PodScheduled', status: 'True' },
      { type: 'Ready', status: ok ? 'True' : 'False', ...(ok ? {} : { reason: 'ContainersNotReady' }) },
    ],
    containerStatuses: containers.map((c) => ({
      name: c.name,
      image: c.image,
      ready: ok,
      restartCount: 0,
      started: ok,
      state: ok ? { running: { startedAt: stamp() } } : { waiting: { reason: problem!.reason, message: problem!.message } },
    })),
  };
  const old = (pod.status ?? {}) as Record<string, unknown>;
  const cmp = (s: unknown) => JSON.stringify(s, (k, v) => (k === 'startedAt' ? undefined : v));
  if (cmp(old.containerStatuses) !== cmp(status.containerStatuses) || old.phase !== status.phase) {
    try {
      store.updateStatus({ ...pod, status });
    } catch (e) {
      if (!(e instanceof ApiError && (e.code === 409 || e.code === 404))) throw e;
    }
  }
}
