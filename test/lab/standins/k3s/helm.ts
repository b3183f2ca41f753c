// k3s's Helm controller (k3s-io/helm-controller v0.17.7 pkg/controllers/chart/chart.go), simulated together
// with the kubelet and Job controller parts a HelmChart's life goes through:
// * every HelmChart gets finalizer `wrangler.cattle.io/on-helm-chart-remove` and a Job `helm-install-<name>`
//   (restartPolicy OnFailure, backoffLimit = spec.backOffLimit or 1000, env FAILURE_POLICY, TIMEOUT,
//   EXPECTED_RELEASE_REVISION = the release revision when the Job was made ("0" when none), CONFIG_HASH);
// * its pod runs klipper-helm (klipper.ts). A failed run restarts the SAME pod's container after the kubelet's
//   back-off (10 s, doubling, max 5 min): meanwhile `state.waiting.reason` is CrashLoopBackOff and
//   `lastState.terminated` holds exit code 1 and the termination-log text — klipper's own status lines, not
//   helm's error, which is only in the container log (/var/log/pods/<ns>_<pod>_<uid>/helm/<restart>.log);
// * when the restarts reach backoffLimit the Job controller fails the Job (BackoffLimitExceeded) and deletes the
//   pod (its logs go with it); helm-controller then sets the HelmChart's `Failed=True`, reason "Job failed",
//   message "Job has reached configured number of retries without succeeding" and a JobFailed event;
// * a completed Job whose release is not `deployed` with this config hash is replaced (new expected revision);
// * a changed spec (config hash) replaces the Job; an in-flight helm run is cut off (a release it created stays
//   `pending-install`, as when klipper's pod is killed);
// * deleting the HelmChart runs `helm-delete-<name>` (klipper `delete`: helm uninstall), then removes the
//   chart's Jobs and the finalizer.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Controller, ControllerContext, KubeObject, Store } from '../../apiserver/index.js';
import { ApiError } from '../../apiserver/index.js';
import type { AgentState } from './agent-state.js';
import { latestRelease, parseTimeout, runKlipper, type KlipperRun } from './klipper.js';
import { log } from './log.js';

const HC = 'helm.cattle.io/v1';
const HASH_ANNOTATION = 'helmcharts.helm.cattle.io/configHash';
const CHART_LABEL = 'helmcharts.helm.cattle.io/chart';
export const HELM_FINALIZER = 'wrangler.cattle.io/on-helm-chart-remove';
const JOB_FAILED_MESSAGE = 'Job has reached configured number of retries without succeeding';
const stamp = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export interface HelmControllerOptions {
  dataDir: string;
  agent: AgentState;
  /** helm-job-image or the release default (klipper-helm). */
  jobImage: string;
  /** Where the kubelet keeps container logs. Default /var/log/pods. */
  podLogDir?: string;
  /** The kubelet's CrashLoopBackOff delay before restart n (1-based). Default 10 s · 2^(n-1), max 300 s. */
  restartDelayMs?: (restart: number) => number;
}

const kubeletBackoff = (n: number) => Math.min(300_000, 10_000 * 2 ** (n - 1));

export function helmController(opts: HelmControllerOptions): Controller {
  const timers = new Map<string, NodeJS.Timeout>();
  const unsubs: Array<() => void> = [];
  /** Job uids whose container is running right now. */
  const running = new Set<string>();
  /** Pod uid → earliest time of the next container start (CrashLoopBackOff). */
  const notBefore = new Map<string, number>();
  let tick: NodeJS.Timeout | undefined;
  return {
    name: 'helm',
    start(ctx: ControllerContext) {
      const kick = (ns: string, name: string, delayMs = 200) => {
        const key = `${ns}/${name}`;
        if (timers.has(key)) return;
        timers.set(
          key,
          setTimeout(() => {
            timers.delete(key);
            void reconcile({ ctx, opts, running, notBefore, kick }, ns, name).catch((e) =>
              log.error(`helm-controller ${key}: ${(e as Error).message}`),
            );
          }, delayMs),
        );
      };
      unsubs.push(
        ctx.store.watch(HC, 'HelmChart', (ev) => ev.type !== 'DELETED' && kick(ev.object.metadata.namespace!, ev.object.metadata.name!)),
      );
      unsubs.push(ctx.store.watch(HC, 'HelmChartConfig', (ev) => kick(ev.object.metadata.namespace!, ev.object.metadata.name!)));
      const all = () => {
        for (const hc of ctx.store.list(HC, 'HelmChart')) kick(hc.metadata.namespace!, hc.metadata.name!);
      };
      tick = setInterval(all, 2000);
      all();
    },
    stop() {
      clearInterval(tick);
      timers.forEach((t) => clearTimeout(t));
      unsubs.forEach((u) => u());
    },
  };
}

interface Env {
  ctx: ControllerContext;
  opts: HelmControllerOptions;
  running: Set<string>;
  notBefore: Map<string, number>;
  kick: (ns: string, name: string, delayMs?: number) => void;
}

function configHash(store: Store, hc: KubeObject): string {
  const hcc = store.get(HC, 'HelmChartConfig', hc.metadata.name!, hc.metadata.namespace);
  return (
    'SHA256=' +
    crypto
      .createHash('sha256')
      .update(JSON.stringify([hc.spec, hcc?.spec ?? null]))
      .digest('hex')
      .toUpperCase()
  );
}

const hashLabel = (hash: string) => hash.replace(/^SHA256=/, '').slice(0, 63);
const jobCond = (job: KubeObject, type: string) =>
  ((job.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? []).some(
    (c) => c.type === type && c.status === 'True',
  );
const envOf = (job: KubeObject, name: string) =>
  (
    (job.spec as { template: { spec: { containers: Array<{ env?: Array<{ name: string; value: string }> }> } } }).template.spec
      .containers[0]?.env ?? []
  ).find((e) => e.name === name)?.value ?? '';

async function reconcile(env: Env, ns: string, name: string) {
  const { store } = env.ctx;
  let hc = store.get(HC, 'HelmChart', name, ns);
  if (!hc) return;
  const spec = (hc.spec ?? {}) as Record<string, unknown>;
  if (!spec.chart && !spec.chartContent) return; // shouldManage
  if (!hc.metadata.deletionTimestamp && !(hc.metadata.finalizers ?? []).includes(HELM_FINALIZER)) {
    try {
      hc = store.update({
        ...hc,
        metadata: {
          ...hc.metadata,
          finalizers: [...(hc.metadata.finalizers ?? []), HELM_FINALIZER],
          annotations: { ...(hc.metadata.annotations ?? {}), 'helmcharts.cattle.io/managed-by': 'helm-controller' },
        },
      });
    } catch (e) {
      if (e instanceof ApiError && e.code === 409) return env.kick(ns, name);
      throw e;
    }
  }
  if (hc.metadata.deletionTimestamp) return onRemove(env, hc);
  return onChange(env, hc);
}

function releaseOf(hc: KubeObject) {
  const spec = (hc.spec ?? {}) as Record<string, unknown>;
  return { release: hc.metadata.name!, targetNs: String(spec.targetNamespace || hc.metadata.namespace) };
}

async function onChange(env: Env, hc: KubeObject) {
  const { store } = env.ctx;
  const ns = hc.metadata.namespace!;
  const jobName = `helm-install-${hc.metadata.name}`;
  const hash = configHash(store, hc);
  const { release, targetNs } = releaseOf(hc);
  let job = store.get('batch/v1', 'Job', jobName, ns);
  if (job && job.metadata.annotations?.[HASH_ANNOTATION] !== hash) {
    deleteJob(store, job);
    job = undefined;
  }
  if (job && jobCond(job, 'Complete')) {
    const rel = latestRelease(store, release, targetNs);
    if (rel?.status === 'deployed' && rel.hash === hashLabel(hash)) return;
    // "Job is completed but release status or hash is incorrect": a new Job with the current revision
    deleteJob(store, job);
    job = undefined;
  }
  if (!job) {
    const rel = latestRelease(store, release, targetNs);
    job = store.create(jobObject(hc, jobName, hash, env.opts.jobImage, 'install', String(rel?.version ?? 0)));
    setChartStatus(store, hc, jobName, false);
    event(
      store,
      hc,
      'Normal',
      'ApplyJob',
      `Applying HelmChart from ${String((hc.spec as Record<string, unknown>).chart ?? 'chartContent')} using Job ${ns}/${jobName} `,
    );
  }
  if (jobCond(job, 'Failed')) {
    const failed = ((hc.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? []).some(
      (c) => c.type === 'Failed' && c.status === 'True',
    );
    if (!failed) {
      event(store, hc, 'Warning', 'JobFailed', JOB_FAILED_MESSAGE);
      setChartStatus(store, hc, jobName, true);
    }
    return;
  }
  await runJobPod(env, hc, job, 'install');
}

async function onRemove(env: Env, hc: KubeObject) {
  const { store } = env.ctx;
  const ns = hc.metadata.namespace!;
  const name = hc.metadata.name!;
  const jobName = `helm-delete-${name}`;
  // wrangler's apply set now holds only the delete Job: the install Job (and its running pod) is pruned
  const install = store.get('batch/v1', 'Job', `helm-install-${name}`, ns);
  if (install) deleteJob(store, install);
  let job = store.get('batch/v1', 'Job', jobName, ns);
  if (job && jobCond(job, 'Complete')) {
    event(store, hc, 'Normal', 'RemoveJob', `Uninstalled HelmChart using Job ${ns}/${jobName}, removing resources`);
    deleteJob(store, job);
    for (const s of [`chart-values-${name}`]) if (store.get('v1', 'Secret', s, ns)) store.delete('v1', 'Secret', s, ns);
    const fresh = store.get(HC, 'HelmChart', name, ns);
    if (fresh) {
      try {
        store.update({
          ...fresh,
          metadata: { ...fresh.metadata, finalizers: (fresh.metadata.finalizers ?? []).filter((f) => f !== HELM_FINALIZER) },
        });
      } catch (e) {
        if (!(e instanceof ApiError && (e.code === 409 || e.code === 404))) throw e;
      }
    }
    return;
  }
  if (!job) {
    const { release, targetNs } = releaseOf(hc);
    const rel = latestRelease(store, release, targetNs);
    job = store.create(jobObject(hc, jobName, configHash(store, hc), env.opts.jobImage, 'delete', String(rel?.version ?? 0)));
    event(store, hc, 'Normal', 'RemoveJob', `Uninstalling HelmChart using Job ${ns}/${jobName} `);
    try {
      store.updateStatus({ ...hc, status: { ...((hc.status as object) ?? {}), jobName } });
    } catch {
      /* next pass */
    }
  }
  if (jobCond(job, 'Failed')) return;
  await runJobPod(env, hc, job, 'delete');
}

/** The Job's pod: waits for node and image, runs klipper, restarts on failure until backoffLimit. */
async function runJobPod(env: Env, hc: KubeObject, job: KubeObject, mode: 'install' | 'delete') {
  const { store } = env.ctx;
  const { opts, agent } = { opts: env.opts, agent: env.opts.agent };
  const ns = job.metadata.namespace!;
  if (env.running.has(job.metadata.uid!)) return;
  let pod = store.list('v1', 'Pod', { namespace: ns, labelSelector: `job-name=${job.metadata.name}` })[0];
  if (!pod) pod = createPod(store, job, agent.nodeName);
  const cs = ((pod.status as { containerStatuses?: Array<Record<string, unknown>> } | undefined)?.containerStatuses ?? [])[0] ?? {};
  const restarts = Number(cs.restartCount ?? 0);
  const wait = (env.notBefore.get(pod.metadata.uid!) ?? 0) - Date.now();
  if (wait > 0) return env.kick(ns, hc.metadata.name!, wait + 50);

  const node = store.get('v1', 'Node', agent.nodeName);
  await agent.refreshImages();
  const image = jobImageOf(job);
  if (!node) return void podStatus(store, pod, 'Pending', { waiting: { reason: 'ContainerCreating' } }, restarts, cs.lastState);
  if (agent.imageProblem(image)) {
    return void podStatus(
      store,
      pod,
      'Pending',
      { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}": ErrImagePull: ${agent.pullError(image)}` } },
      restarts,
      cs.lastState,
    );
  }

  const jobUid = job.metadata.uid!;
  const current = () =>
    store.get('batch/v1', 'Job', job.metadata.name!, ns)?.metadata.uid === jobUid &&
    Boolean(store.get(HC, 'HelmChart', hc.metadata.name!, hc.metadata.namespace));
  const startedAt = stamp();
  podStatus(store, pod, 'Running', { running: { startedAt } }, restarts, cs.lastState);
  if (!(job.status as { startTime?: string } | undefined)?.startTime)
    updateJobStatus(store, job, { active: 1, ready: 1, startTime: startedAt });
  env.running.add(jobUid);
  let run: KlipperRun;
  try {
    const { release, targetNs } = releaseOf(hc);
    run = await runKlipper(
      { ctx: env.ctx, dataDir: opts.dataDir, agent, hc },
      {
        mode,
        release,
        targetNamespace: targetNs,
        failurePolicy: envOf(job, 'FAILURE_POLICY'),
        timeoutSeconds: parseTimeout(envOf(job, 'TIMEOUT')),
        expectedRevision: envOf(job, 'EXPECTED_RELEASE_REVISION'),
        configHash: envOf(job, 'CONFIG_HASH'),
        current,
      },
    );
  } finally {
    env.running.delete(jobUid);
  }
  if (!current()) return; // killed: the Job was replaced or the chart deleted while helm ran
  writeContainerLog(opts.podLogDir ?? '/var/log/pods', pod, restarts, run);
  const finishedAt = stamp();
  const terminated = {
    exitCode: run.exitCode,
    reason: run.exitCode === 0 ? 'Completed' : 'Error',
    message: run.termLog,
    startedAt,
    finishedAt,
  };
  const fresh = store.get('batch/v1', 'Job', job.metadata.name!, ns)!;
  if (run.exitCode === 0) {
    podStatus(store, pod, 'Succeeded', { terminated }, restarts, cs.lastState);
    updateJobStatus(store, fresh, {
      active: 0,
      ready: 0,
      succeeded: 1,
      completionTime: finishedAt,
      conditions: [
        {
          type: 'SuccessCriteriaMet',
          status: 'True',
          reason: 'CompletionsReached',
          message: 'Reached expected number of succeeded pods',
          lastProbeTime: finishedAt,
          lastTransitionTime: finishedAt,
        },
        {
          type: 'Complete',
          status: 'True',
          reason: 'CompletionsReached',
          message: 'Reached expected number of succeeded pods',
          lastProbeTime: finishedAt,
          lastTransitionTime: finishedAt,
        },
      ],
    });
    log.info(`helm-controller: ${ns}/${job.metadata.name} completed`);
    return env.kick(hc.metadata.namespace!, hc.metadata.name!);
  }
  const restartCount = restarts + 1;
  const backoffLimit = Number((fresh.spec as { backoffLimit?: number }).backoffLimit ?? 1000);
  log.error(
    `helm-controller: ${ns}/${job.metadata.name} run ${restartCount} exited ${run.exitCode}: ${run.termLog.trim().replace(/\n/g, ' | ')}`,
  );
  if (restartCount >= backoffLimit || backoffLimit === 0) {
    // Job controller: BackoffLimitExceeded, active pods deleted (their logs with them)
    updateJobStatus(store, fresh, {
      active: 0,
      ready: 0,
      failed: 1,
      conditions: [
        {
          type: 'FailureTarget',
          status: 'True',
          reason: 'BackoffLimitExceeded',
          message: 'Job has reached the specified backoff limit',
          lastProbeTime: finishedAt,
          lastTransitionTime: finishedAt,
        },
        {
          type: 'Failed',
          status: 'True',
          reason: 'BackoffLimitExceeded',
          message: 'Job has reached the specified backoff limit',
          lastProbeTime: finishedAt,
          lastTransitionTime: finishedAt,
        },
      ],
    });
    deletePod(store, pod, opts.podLogDir ?? '/var/log/pods');
    return env.kick(hc.metadata.namespace!, hc.metadata.name!);
  }
  const delay = (opts.restartDelayMs ?? kubeletBackoff)(restartCount);
  env.notBefore.set(pod.metadata.uid!, Date.now() + delay);
  podStatus(
    store,
    pod,
    'Running',
    {
      waiting: {
        reason: 'CrashLoopBackOff',
        message: `back-off ${Math.round(delay / 1000)}s restarting failed container=helm pod=${pod.metadata.name}_${ns}(${pod.metadata.uid})`,
      },
    },
    restartCount,
    { terminated },
  );
  event(
    store,
    pod,
    'Warning',
    'BackOff',
    `Back-off restarting failed container helm in pod ${pod.metadata.name}_${ns}(${pod.metadata.uid})`,
  );
  env.kick(hc.metadata.namespace!, hc.metadata.name!, delay + 50);
}

function jobImageOf(job: KubeObject): string {
  return (job.spec as { template: { spec: { containers: Array<{ image: string }> } } }).template.spec.containers[0]?.image ?? '';
}

function jobObject(
  hc: KubeObject,
  jobName: string,
  hash: string,
  defaultImage: string,
  mode: 'install' | 'delete',
  expectedRevision: string,
): KubeObject {
  const spec = (hc.spec ?? {}) as Record<string, unknown>;
  const ns = hc.metadata.namespace!;
  const image = typeof spec.jobImage === 'string' && spec.jobImage ? spec.jobImage : defaultImage;
  const env = [
    ['NAME', hc.metadata.name!],
    ['VERSION', String(spec.version ?? '')],
    ['REPO', String(spec.repo ?? '')],
    ['HELM_DRIVER', String(spec.driver ?? 'secret')],
    ['CHART_NAMESPACE', ns],
    ['CHART', String(spec.chart ?? '')],
    ['HELM_VERSION', ''],
    ['TARGET_NAMESPACE', String(spec.targetNamespace || ns)],
    ['AUTH_PASS_CREDENTIALS', 'false'],
    ['INSECURE_SKIP_TLS_VERIFY', String(spec.insecureSkipTLSVerify ?? false)],
    ['PLAIN_HTTP', String(spec.plainHTTP ?? false)],
    ...(spec.timeout ? [['TIMEOUT', String(spec.timeout)]] : []),
    ['FAILURE_POLICY', String(spec.failurePolicy || 'reinstall')],
    ['EXPECTED_RELEASE_REVISION', expectedRevision],
    ['CONFIG_HASH', hashLabel(hash)],
  ].map(([n, v]) => ({ name: n!, value: v! }));
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: jobName,
      namespace: ns,
      labels: { [CHART_LABEL]: hc.metadata.name! },
      annotations: { [HASH_ANNOTATION]: hash },
      ownerReferences: [
        { apiVersion: HC, kind: 'HelmChart', name: hc.metadata.name!, uid: hc.metadata.uid!, controller: true, blockOwnerDeletion: true },
      ],
    },
    spec: {
      backoffLimit: typeof spec.backOffLimit === 'number' ? spec.backOffLimit : 1000,
      template: {
        metadata: { labels: { [CHART_LABEL]: hc.metadata.name! }, annotations: { [HASH_ANNOTATION]: hash } },
        spec: {
          restartPolicy: 'OnFailure',
          serviceAccountName: `helm-${hc.metadata.name}`,
          priorityClassName: 'system-cluster-critical',
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          containers: [
            {
              name: 'helm',
              image,
              imagePullPolicy: 'IfNotPresent',
              args: mode === 'install' ? ['install', ...(spec.createNamespace ? ['--create-namespace'] : [])] : ['delete'],
              env,
              terminationMessagePath: '/dev/termination-log',
              terminationMessagePolicy: 'File',
            },
          ],
        },
      },
    },
    status: {},
  };
}

function createPod(store: Store, job: KubeObject, nodeName: string): KubeObject {
  const ns = job.metadata.namespace!;
  const tmpl = (job.spec as { template: { spec: Record<string, unknown> } }).template;
  return store.create({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `${job.metadata.name}-${crypto.randomBytes(3).toString('hex').slice(0, 5)}`,
      namespace: ns,
      labels: {
        'job-name': job.metadata.name!,
        'batch.kubernetes.io/job-name': job.metadata.name!,
        'controller-uid': job.metadata.uid!,
        [CHART_LABEL]: job.metadata.labels?.[CHART_LABEL] ?? '',
      },
      ownerReferences: [
        {
          apiVersion: 'batch/v1',
          kind: 'Job',
          name: job.metadata.name!,
          uid: job.metadata.uid!,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: { ...tmpl.spec, nodeName },
  });
}

function podStatus(store: Store, pod: KubeObject, phase: string, state: Record<string, unknown>, restartCount: number, lastState: unknown) {
  const cur = store.get('v1', 'Pod', pod.metadata.name!, pod.metadata.namespace);
  if (!cur) return;
  const image = (cur.spec as { containers?: Array<{ image?: string }> }).containers?.[0]?.image ?? '';
  try {
    store.updateStatus({
      ...cur,
      status: {
        phase,
        conditions: [{ type: 'Ready', status: state.running ? 'True' : 'False' }],
        containerStatuses: [
          {
            name: 'helm',
            image,
            ready: Boolean(state.running),
            restartCount,
            started: Boolean(state.running),
            state,
            ...(lastState && Object.keys(lastState as object).length ? { lastState } : { lastState: {} }),
          },
        ],
      },
    });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
}

function updateJobStatus(store: Store, job: KubeObject, status: Record<string, unknown>) {
  const cur = store.get('batch/v1', 'Job', job.metadata.name!, job.metadata.namespace);
  if (!cur || cur.metadata.uid !== job.metadata.uid) return;
  try {
    store.updateStatus({ ...cur, status: { ...((cur.status as object) ?? {}), ...status } });
  } catch (e) {
    if (!(e instanceof ApiError && (e.code === 409 || e.code === 404))) throw e;
  }
}

/** CRI log format, one file per container start: `<RFC3339Nano> <stream> F <line>`. */
function writeContainerLog(dir: string, pod: KubeObject, restart: number, run: KlipperRun) {
  const d = path.join(dir, `${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}`, 'helm');
  try {
    fs.mkdirSync(d, { recursive: true });
    const ts = new Date().toISOString();
    fs.writeFileSync(path.join(d, `${restart}.log`), run.log.map((l) => `${ts} ${l.stream} F ${l.line}\n`).join(''));
    // the kubelet keeps only the current and the previous container's log
    for (const f of fs.readdirSync(d))
      if (/^\d+\.log$/.test(f) && Number.parseInt(f, 10) < restart - 1) fs.rmSync(path.join(d, f), { force: true });
  } catch (e) {
    log.error(`kubelet: writing the log of ${pod.metadata.name}: ${(e as Error).message}`);
  }
}

function deletePod(store: Store, pod: KubeObject, logDir: string) {
  try {
    store.delete('v1', 'Pod', pod.metadata.name!, pod.metadata.namespace);
  } catch {
    /* already gone */
  }
  fs.rmSync(path.join(logDir, `${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}`), { recursive: true, force: true });
}

function deleteJob(store: Store, job: KubeObject) {
  for (const p of store.list('v1', 'Pod', { namespace: job.metadata.namespace, labelSelector: `job-name=${job.metadata.name}` })) {
    try {
      store.delete('v1', 'Pod', p.metadata.name!, p.metadata.namespace);
    } catch {
      /* already gone */
    }
  }
  try {
    store.delete('batch/v1', 'Job', job.metadata.name!, job.metadata.namespace);
  } catch {
    /* already gone */
  }
}

/** helm-controller's two conditions (pkg/controllers/chart/chart.go OnChange). */
function setChartStatus(store: Store, hc: KubeObject, jobName: string, failed: boolean) {
  const cur = store.get(HC, 'HelmChart', hc.metadata.name!, hc.metadata.namespace) ?? hc;
  try {
    store.updateStatus({
      ...cur,
      status: {
        jobName,
        conditions: [
          {
            type: 'JobCreated',
            status: 'True',
            reason: 'Job created',
            message: `Applying HelmChart using Job ${hc.metadata.namespace}/${jobName}`,
          },
          failed
            ? { type: 'Failed', status: 'True', reason: 'Job failed', message: JOB_FAILED_MESSAGE }
            : { type: 'Failed', status: 'False' },
        ],
      },
    });
  } catch (e) {
    if (!(e instanceof ApiError && (e.code === 409 || e.code === 404))) throw e;
  }
}

let eventSeq = 0;
function event(store: Store, obj: KubeObject, type: string, reason: string, message: string) {
  const now = stamp();
  try {
    store.create({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: {
        name: `${obj.metadata.name}.${Date.now().toString(16)}${(eventSeq++).toString(16)}`,
        namespace: obj.metadata.namespace ?? 'default',
      },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: obj.metadata.name,
        namespace: obj.metadata.namespace,
        uid: obj.metadata.uid,
      },
      type,
      reason,
      message,
      source: { component: obj.kind === 'Pod' ? 'kubelet' : 'helm-controller' },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
  } catch {
    /* events are best effort, as in Kubernetes */
  }
}
