// The FSM release as k3s's helm-controller and klipper-helm really handle it (helm-controller v0.17
// pkg/controllers/chart/chart.go, klipper-helm `entry`):
// * the helm Job restarts its pod on failure (restartPolicy OnFailure); between tries the pod is in
//   CrashLoopBackOff. helm's own error is only in the container log — the termination message holds klipper's
//   status line ("Installing helm chart", "... waiting for operator intervention") — and once the Job reaches its
//   backoffLimit its pods (and logs) are deleted and the HelmChart only says "Job failed". So the error is read
//   from the log while the pod is still there, and from the release record (helm writes `info.description`
//   "Release \"fsm\" failed: …") after that;
// * with `failurePolicy: abort` a release left `failed` (or `pending-*`: helm was cut off) is sticky: every
//   later Job prints "waiting for operator intervention" and exits 1, whatever was fixed. Recovering means
//   uninstalling it: remove the HelmChart (helm-controller runs helm-delete-<name>), then apply it again.

import { gunzipSync } from 'node:zlib';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { K3S_BINARY as POP_K3S_BINARY } from '../engine/pop-layout.js';
import { FatalWaitError, isNotFound, pollUntil } from '../kube/poll.js';
import type { Host } from '../transport/host.js';
import { describeImageWaits, ImageWaitTracker, MISSING_IMAGE_FIX, podsBlockedOnImages, type PopKubeClients } from './pod-health.js';

export const HELM_NAMESPACE = 'kube-system';
const HC_GROUP = { group: 'helm.cattle.io', version: 'v1', plural: 'helmcharts' } as const;
const ADDON_GROUP = { group: 'k3s.cattle.io', version: 'v1', plural: 'addons' } as const;
/** Largest release record we decode (helm's own limit is the 1 MiB Secret). */
const MAX_RELEASE_BYTES = 4 << 20;

export interface ReleaseRecord {
  state: 'absent' | 'deployed' | 'failed' | 'pending' | 'other';
  /** helm's status label: deployed, failed, pending-install, superseded, … */
  status?: string;
  revision?: number;
  /** helm's `info.description`, e.g. `Release "fsm" failed: failed pre-install: …`. */
  description?: string;
}

export interface FsmHelmState {
  state: 'absent' | 'deployed' | 'failed' | 'installing';
  reason?: string;
  /** uid of the current helm-install Job, if any. */
  jobUid?: string;
  release: ReleaseRecord;
}

/** `info.description` of a release Secret's body: base64(gzip(JSON)) (helm's storage driver), size-bounded. */
export function decodeReleaseDescription(data: string | undefined): string | undefined {
  if (!data || data.length > MAX_RELEASE_BYTES * 2) return undefined;
  try {
    let raw = Buffer.from(Buffer.from(data, 'base64').toString('utf8'), 'base64');
    if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw, { maxOutputLength: MAX_RELEASE_BYTES });
    const doc = JSON.parse(raw.toString('utf8')) as { info?: { description?: unknown } };
    return typeof doc.info?.description === 'string' ? doc.info.description.slice(0, 2000) : undefined;
  } catch {
    return undefined;
  }
}

/** The newest record of helm release `name` in `namespace` (Secrets `sh.helm.release.v1.<name>.v<N>`). */
export async function readRelease(kube: PopKubeClients, namespace: string, name: string): Promise<ReleaseRecord> {
  const list = await kube.core.listNamespacedSecret({ namespace, labelSelector: `owner=helm,name=${name}` });
  let best: { v: number; status: string; data?: string } | undefined;
  for (const s of list.items) {
    if (s.type !== 'helm.sh/release.v1') continue;
    const v = Number(s.metadata?.labels?.version);
    if (Number.isInteger(v) && (!best || v > best.v))
      best = { v, status: s.metadata?.labels?.status ?? '', ...(s.data?.release ? { data: s.data.release } : {}) };
  }
  if (!best) return { state: 'absent' };
  const state: ReleaseRecord['state'] =
    best.status === 'deployed'
      ? 'deployed'
      : best.status === 'failed'
        ? 'failed'
        : best.status.startsWith('pending-') || best.status === 'uninstalling'
          ? 'pending'
          : 'other';
  const description = decodeReleaseDescription(best.data);
  return { state, status: best.status, revision: best.v, ...(description ? { description } : {}) };
}

async function readJob(kube: PopKubeClients, name: string): Promise<V1Job | undefined> {
  try {
    return await kube.batch.readNamespacedJob({ name, namespace: HELM_NAMESPACE });
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** The chart URL a helm-controller Job runs (env `CHART` of its container). */
const jobChart = (job: V1Job) => job.spec?.template?.spec?.containers?.[0]?.env?.find((e) => e.name === 'CHART')?.value;

const jobDone = (job: V1Job | undefined, type: 'Complete' | 'Failed') =>
  Boolean(job?.status?.conditions?.some((c) => c.type === type && c.status === 'True'));
const jobActive = (job: V1Job | undefined) => Boolean(job && !jobDone(job, 'Complete') && !jobDone(job, 'Failed'));

/**
 * Where the FSM release stands. `failed` also covers a `pending-*` release no Job is working on (klipper
 * turns those into `failed` on its next run, which `failurePolicy: abort` then refuses to touch).
 */
export async function inspectFsmRelease(kube: PopKubeClients, targetNamespace: string, release = 'fsm'): Promise<FsmHelmState> {
  const rel = await readRelease(kube, targetNamespace, release);
  const job = await readJob(kube, `helm-install-${release}`);
  const jobUid = job?.metadata?.uid;
  const base = { release: rel, ...(jobUid ? { jobUid } : {}) };
  if (rel.state === 'deployed') return { state: 'deployed', ...base };
  // superseded newest: klipper retries the upgrade by itself (entry: "Retrying upgrade"), nothing is stuck
  if (rel.status === 'superseded') return { state: 'installing', ...base };
  if (rel.state === 'failed' || rel.state === 'other')
    return { state: 'failed', reason: rel.description ?? `release ${release} is ${rel.status}`, ...base };
  if (rel.state === 'pending') {
    if (jobActive(job)) return { state: 'installing', ...base };
    return { state: 'failed', reason: `release ${release} was left ${rel.status} (a helm run was cut off)`, ...base };
  }
  return { state: jobActive(job) ? 'installing' : 'absent', ...base };
}

/** Reads the helm container's log of a helm-controller Job pod. */
export type HelmLogReader = (pod: string, opts: { previous: boolean }) => Promise<string>;

const POD_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** `k3s kubectl logs` on the POP, by absolute path (sudo's secure_path may not hold /usr/local/bin). */
export function hostHelmLogReader(host: Host): HelmLogReader {
  return async (pod, { previous }) => {
    if (!POD_NAME.test(pod)) throw new Error(`refusing to read logs of a pod named ${JSON.stringify(pod.slice(0, 80))}`);
    const r = await host.exec(
      `${POP_K3S_BINARY} kubectl -n ${HELM_NAMESPACE} logs ${pod} -c helm --tail=200${previous ? ' --previous' : ''}`,
      { sudo: true, timeoutMs: 20_000 },
    );
    if (r.code !== 0) throw new Error(r.stderr.trim().split('\n').at(-1) || `kubectl logs exited ${r.code}`);
    return r.stdout;
  };
}

/**
 * helm's error in a klipper-helm log: from the first `Error:` line on, without bash's xtrace (`+ …`) lines;
 * else the last lines the script printed.
 */
export function helmErrorFromLog(log: string): string | undefined {
  const lines = log
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l && !l.startsWith('+ '));
  const at = lines.findIndex((l) => l.startsWith('Error:'));
  const picked = at >= 0 ? lines.slice(at) : lines.slice(-3);
  const text = picked.join('\n').trim();
  return text ? text.slice(0, 4000) : undefined;
}

export interface HelmAttempt {
  pod: string;
  /** Failed runs of the container so far (restartCount, + 1 if the current run just ended in error). */
  failures: number;
  /** klipper's termination message of the last failed run. */
  termMessage?: string;
  /** helm's error from the log of the last failed run. */
  helmError?: string;
}

/**
 * The last failed run of a Job's pod, with helm's error read from its log. With `jobUid`, only that Job's pods: a
 * replaced Job's pods carry the same `job-name` label until the garbage collector removes them, and their
 * failures (e.g. the sticky one a way-back HelmChart replaces) are not the new Job's.
 */
export async function lastFailedAttempt(
  kube: PopKubeClients,
  jobName: string,
  readLog: HelmLogReader,
  jobUid?: string,
): Promise<HelmAttempt | undefined> {
  const pods = await kube.core.listNamespacedPod({ namespace: HELM_NAMESPACE, labelSelector: `job-name=${jobName}` });
  let found: HelmAttempt | undefined;
  for (const p of pods.items as V1Pod[]) {
    if (jobUid && !p.metadata?.ownerReferences?.some((o) => o.kind === 'Job' && o.uid === jobUid)) continue;
    const cs = p.status?.containerStatuses?.find((c) => c.name === 'helm') ?? p.status?.containerStatuses?.[0];
    if (!cs || !p.metadata?.name) continue;
    const endedNow = cs.state?.terminated && cs.state.terminated.exitCode !== 0 ? cs.state.terminated : undefined;
    const earlier = cs.lastState?.terminated && cs.lastState.terminated.exitCode !== 0 ? cs.lastState.terminated : undefined;
    const term = endedNow ?? earlier;
    if (!term) continue;
    const failures = (cs.restartCount ?? 0) + (endedNow ? 1 : 0);
    let helmError: string | undefined;
    try {
      helmError = helmErrorFromLog(await readLog(p.metadata.name, { previous: false }));
    } catch {
      helmError = await readLog(p.metadata.name, { previous: true }).then(helmErrorFromLog, () => undefined);
    }
    const termMessage = term.message?.trim() || undefined;
    found = { pod: p.metadata.name, failures, ...(termMessage ? { termMessage } : {}), ...(helmError ? { helmError } : {}) };
  }
  return found;
}

const STICKY = /waiting for operator intervention/;

export interface WaitForHelmJobOptions {
  /** `helm-install-fsm` or `helm-delete-fsm`. */
  jobName: string;
  /** The release's namespace (its hook pods run there). */
  targetNamespace: string;
  release?: string;
  /** A Job with this uid is the one before our change: wait for helm-controller to replace it. */
  previousJobUid?: string;
  /**
   * Only a Job for this chart URL (its `CHART` env, which helm-controller sets from `spec.chart`) is the one to
   * wait for: a way-back HelmChart names a chart no other Job does, so a Job of the failed spec that
   * helm-controller made or kept meanwhile is never mistaken for it.
   */
  chart?: string;
  timeoutMs: number;
  intervalMs?: number;
  readLog: HelmLogReader;
}

/** The "how to recover" line for a failed FSM release. */
export const RECOVER_FIX =
  'correct the cause above, then run the install again: it removes the failed release (helm uninstall through k3s) and installs FSM anew';

/**
 * Waits for a helm-controller Job to finish and (for installs) for the release to be `deployed`. Ends at once,
 * with helm's own error, when a run failed and cannot succeed by retrying: the release is `failed` (sticky with
 * `failurePolicy: abort`), the same error came twice, the Job gave up, or a pod waits for an image that is not
 * on the POP.
 */
export async function waitForHelmJob(kube: PopKubeClients, o: WaitForHelmJobOptions): Promise<void> {
  const release = o.release ?? 'fsm';
  const install = o.jobName.startsWith('helm-install-');
  const images = new ImageWaitTracker();
  let lastError: string | undefined;
  let previousError: string | undefined;
  const fatal = (what: string) =>
    new FatalWaitError(
      `the FSM Helm ${install ? 'install' : 'uninstall'} failed (Job ${HELM_NAMESPACE}/${o.jobName}): ${what}\n  fix: ${install ? RECOVER_FIX : 'see the Job’s pod on the POP (`k3s kubectl -n kube-system describe job ' + o.jobName + '`), then run the install again'}`,
    );
  await pollUntil(
    `the ${o.jobName} Job`,
    async () => {
      const blocked = images.persistent([
        ...(await podsBlockedOnImages(kube, HELM_NAMESPACE, `job-name=${o.jobName}`)),
        ...(install ? await podsBlockedOnImages(kube, o.targetNamespace) : []),
      ]);
      if (blocked.length)
        throw fatal(`pods wait for images that are not on the POP:\n${describeImageWaits(blocked)}\n  (${MISSING_IMAGE_FIX})`);
      const job = await readJob(kube, o.jobName);
      if (!job) return { done: false, state: `waiting for k3s to create Job ${o.jobName}` };
      if (o.previousJobUid && job.metadata?.uid === o.previousJobUid)
        return { done: false, state: 'waiting for k3s to start a Job with the new values' };
      if (o.chart && jobChart(job) !== o.chart) return { done: false, state: `waiting for k3s to start a Job for ${o.chart}` };
      const attempt = await lastFailedAttempt(kube, o.jobName, o.readLog, job.metadata?.uid);
      if (attempt) {
        const said = attempt.helmError ?? attempt.termMessage ?? 'no output';
        if (!STICKY.test(said)) {
          previousError = lastError;
          lastError = said;
        }
      }
      const rel = install ? await readRelease(kube, o.targetNamespace, release) : undefined;
      if (jobDone(job, 'Complete')) {
        if (!install || rel?.state === 'deployed') return { done: true };
        if (rel?.state === 'failed') throw fatal(`release ${release} is failed: ${lastError ?? rel.description ?? 'helm gave no reason'}`);
        return { done: false, state: `Job completed but release ${release} is ${rel?.status ?? 'absent'}; k3s runs it again` };
      }
      if (jobDone(job, 'Failed')) {
        const why = lastError ?? rel?.description ?? job.status?.conditions?.find((c) => c.type === 'Failed')?.message ?? 'no reason given';
        throw fatal(why);
      }
      if (attempt) {
        const sticky = STICKY.test(attempt.termMessage ?? '') || STICKY.test(attempt.helmError ?? '');
        if (install && (rel?.state === 'failed' || sticky)) {
          throw fatal(
            `${lastError ?? rel?.description ?? attempt.termMessage ?? 'helm gave no reason'}${sticky ? `\n  (k3s: "${attempt.termMessage ?? attempt.helmError}")` : ''}`,
          );
        }
        if (lastError && lastError === previousError && attempt.failures >= 2) throw fatal(lastError);
        return { done: false, state: `helm run ${attempt.failures} failed, k3s retries: ${(lastError ?? '').split('\n')[0]}` };
      }
      return { done: false, state: 'helm running' };
    },
    { timeoutMs: o.timeoutMs, intervalMs: o.intervalMs ?? 2000 },
  );
}

export interface RecoverOptions {
  /** The manifest k3s applies the HelmChart from (removed first, so nothing re-applies it meanwhile). */
  manifestPath: string;
  helmChartName?: string;
  targetNamespace: string;
  timeoutMs: number;
  intervalMs?: number;
  readLog: HelmLogReader;
}

async function deleteIgnoringMissing(p: Promise<unknown>): Promise<boolean> {
  try {
    await p;
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/**
 * Uninstalls a failed FSM release so the next apply installs it anew. Removes the manifest and its Addon (k3s's
 * deploy controller skips a re-written file whose checksum its Addon already records), deletes the HelmChart,
 * waits for helm-controller's `helm-delete-<name>` Job and for the release records to be gone. Returns what it
 * did, one line per step.
 */
export async function recoverFailedRelease(kube: PopKubeClients, host: Host, o: RecoverOptions): Promise<string[]> {
  const name = o.helmChartName ?? 'fsm';
  const done: string[] = [];
  const before = await readRelease(kube, o.targetNamespace, name);
  await host.run(`rm -f -- '${o.manifestPath.replace(/'/g, '')}'`, { sudo: true, timeoutMs: 20_000 });
  done.push(`removed ${o.manifestPath}`);
  const addon = o.manifestPath.split('/').pop()!.split('.')[0]!;
  if (await deleteIgnoringMissing(kube.custom.deleteNamespacedCustomObject({ ...ADDON_GROUP, namespace: HELM_NAMESPACE, name: addon }))) {
    done.push(`deleted Addon ${HELM_NAMESPACE}/${addon}`);
  }
  if (await deleteIgnoringMissing(kube.custom.deleteNamespacedCustomObject({ ...HC_GROUP, namespace: HELM_NAMESPACE, name }))) {
    done.push(`deleted HelmChart ${HELM_NAMESPACE}/${name}`);
  }
  const deleteJob = `helm-delete-${name}`;
  await pollUntil(
    `HelmChart ${HELM_NAMESPACE}/${name} to be uninstalled (Job ${deleteJob})`,
    async () => {
      try {
        await kube.custom.getNamespacedCustomObject({ ...HC_GROUP, namespace: HELM_NAMESPACE, name });
      } catch (e) {
        if (isNotFound(e)) return { done: true };
        throw e;
      }
      const job = await readJob(kube, deleteJob);
      if (jobDone(job, 'Failed'))
        throw new FatalWaitError(
          `k3s could not uninstall the failed FSM release (Job ${HELM_NAMESPACE}/${deleteJob} failed)\n  fix: look at that Job on the POP, delete HelmChart ${HELM_NAMESPACE}/${name} by hand, then run the install again`,
        );
      const attempt = job ? await lastFailedAttempt(kube, deleteJob, o.readLog) : undefined;
      return {
        done: false,
        state: attempt
          ? `uninstall run ${attempt.failures} failed: ${(attempt.helmError ?? attempt.termMessage ?? '').split('\n')[0]}`
          : job
            ? 'helm uninstall running'
            : 'waiting for k3s to start the uninstall Job',
      };
    },
    { timeoutMs: o.timeoutMs, intervalMs: o.intervalMs ?? 2000 },
  );
  const after = await readRelease(kube, o.targetNamespace, name);
  if (after.state !== 'absent') {
    throw new FatalWaitError(
      `the HelmChart is gone but release ${name} (revision ${after.revision}, ${after.status}) is still in ${o.targetNamespace}\n  fix: on the POP, \`${POP_K3S_BINARY} kubectl -n ${o.targetNamespace} delete secret -l owner=helm,name=${name}\`, then run the install again`,
    );
  }
  done.push(
    `helm-controller uninstalled release ${name}${before.revision ? ` (revision ${before.revision}, ${before.status}${before.description ? `: ${before.description.split('\n')[0]}` : ''})` : ''}`,
  );
  return done;
}
