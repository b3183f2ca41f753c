// k3s's Helm controller (helm-controller), simulated: every HelmChart gets a `helm-install-<name>` Job whose
// pod runs the install. The stand-in performs what klipper-helm's `helm install` would check on an airgapped
// node: the chart can be fetched (only /static/charts and chartContent work offline), values (chart defaults ←
// valuesContent ← values ← HelmChartConfig ← set) satisfy the chart's values.schema.json, and the images the
// values select are in containerd. A failed attempt shows up where it does with k3s — the pod's terminated state
// (what `kubectl logs job/helm-install-x` prints), a Warning Event — and after `backOffLimit` failures the Job's
// Failed condition and the HelmChart's `Failed=True` condition ("Job failed"). Stand-in differences: retries
// back off in seconds instead of minutes, and missing images fail the attempt at once (helm would wait for
// its `timeout` first) naming every missing image.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Ajv } from 'ajv';
import YAML from 'yaml';
import type { Controller, ControllerContext, KubeObject, Store } from '../../apiserver/index.js';
import { ApiError } from '../../apiserver/index.js';
import { deepMerge, applySet, type Values } from '../helm-values.js';
import { fsmImagesFor, normalizeImageRef } from '../fsm-images.js';
import type { AgentState } from './agent-state.js';
import { readChartArchive } from './chart-archive.js';
import { fsmReleaseObjects } from './fsm-release.js';
import { log } from './log.js';

const HC = 'helm.cattle.io/v1';
const HASH_ANNOTATION = 'helmcharts.helm.cattle.io/configHash';
const stamp = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export interface HelmControllerOptions {
  dataDir: string;
  agent: AgentState;
  /** helm-job-image or the release default (klipper-helm). */
  jobImage: string;
}

interface Outcome {
  ok: boolean;
  /** What helm printed (the pod's log / terminated message). */
  output: string;
}

export function helmController(opts: HelmControllerOptions): Controller {
  const timers = new Map<string, NodeJS.Timeout>();
  const unsubs: Array<() => void> = [];
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
            void reconcile(ctx, opts, ns, name, kick).catch((e) => log.error(`helm-controller ${key}: ${(e as Error).message}`));
          }, delayMs),
        );
      };
      unsubs.push(ctx.store.watch(HC, 'HelmChart', (ev) => ev.type !== 'DELETED' && kick(ev.object.metadata.namespace!, ev.object.metadata.name!)));
      unsubs.push(ctx.store.watch(HC, 'HelmChartConfig', (ev) => kick(ev.object.metadata.namespace!, ev.object.metadata.name!)));
      const all = () => {
        for (const hc of ctx.store.list(HC, 'HelmChart')) kick(hc.metadata.namespace!, hc.metadata.name!);
      };
      tick = setInterval(all, 5000);
      all();
    },
    stop() {
      clearInterval(tick);
      timers.forEach((t) => clearTimeout(t));
      unsubs.forEach((u) => u());
    },
  };
}

function configHash(store: Store, hc: KubeObject): string {
  const hcc = store.get(HC, 'HelmChartConfig', hc.metadata.name!, hc.metadata.namespace);
  return 'SHA256=' + crypto.createHash('sha256').update(JSON.stringify([hc.spec, hcc?.spec ?? null])).digest('hex').toUpperCase();
}

async function reconcile(ctx: ControllerContext, opts: HelmControllerOptions, ns: string, name: string, kick: (ns: string, name: string, delayMs?: number) => void) {
  const { store } = ctx;
  const hc = store.get(HC, 'HelmChart', name, ns);
  if (!hc || hc.metadata.deletionTimestamp) return;
  const jobName = `helm-install-${name}`;
  const hash = configHash(store, hc);
  let job = store.get('batch/v1', 'Job', jobName, ns);
  if (job && job.metadata.annotations?.[HASH_ANNOTATION] !== hash) {
    deleteJob(store, job);
    job = undefined;
  }
  const spec = (hc.spec ?? {}) as Record<string, unknown>;
  if (!job) {
    job = store.create(jobObject(hc, jobName, hash, opts.jobImage));
    setChartStatus(store, hc, jobName, undefined);
    event(store, hc, 'Normal', 'ApplyJob', `Applying HelmChart using Job ${ns}/${jobName}`);
  }
  const js = (job.status ?? {}) as { succeeded?: number; failed?: number; conditions?: Array<{ type: string; status: string }> };
  if (js.succeeded || js.conditions?.some((c) => c.type === 'Failed' && c.status === 'True')) return;

  // The pod needs the node and the job image first; until then it waits (as a real pod would).
  const node = store.get('v1', 'Node', opts.agent.nodeName);
  await opts.agent.refreshImages();
  const podName = `${jobName}-${(js.failed ?? 0).toString(36)}${hash.slice(7, 11).toLowerCase()}`;
  if (!node) return void upsertPod(store, job, podName, opts, { waiting: { reason: 'Pending', message: '0/0 nodes are available' } });
  const imgProblem = opts.agent.imageProblem(jobImageOf(job));
  if (imgProblem) return void upsertPod(store, job, podName, opts, { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${jobImageOf(job)}": ${imgProblem}` } });

  const outcome = await runInstall(ctx, opts, hc);
  const backoffLimit = typeof spec.backOffLimit === 'number' ? spec.backOffLimit : 1000;
  const fresh = store.get('batch/v1', 'Job', jobName, ns);
  if (!fresh || fresh.metadata.uid !== job.metadata.uid) return;
  if (outcome.ok) {
    upsertPod(store, fresh, podName, opts, { terminated: { exitCode: 0, reason: 'Completed', message: outcome.output } }, 'Succeeded');
    const now = stamp();
    store.updateStatus({
      ...fresh,
      status: {
        ...(fresh.status as object),
        active: 0,
        ready: 0,
        succeeded: 1,
        completionTime: now,
        conditions: [
          { type: 'SuccessCriteriaMet', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods', lastProbeTime: now, lastTransitionTime: now },
          { type: 'Complete', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods', lastProbeTime: now, lastTransitionTime: now },
        ],
      },
    });
    setChartStatus(store, store.get(HC, 'HelmChart', name, ns) ?? hc, jobName, undefined);
    log.info(`helm-controller: ${ns}/${jobName} completed`);
    return;
  }
  const failed = ((fresh.status as { failed?: number } | undefined)?.failed ?? 0) + 1;
  upsertPod(store, fresh, podName, opts, { terminated: { exitCode: 1, reason: 'Error', message: outcome.output } }, 'Failed');
  event(store, fresh, 'Warning', 'BackOff', `helm install failed: ${outcome.output.split('\n')[0]}`);
  log.error(`helm-controller: ${ns}/${jobName} attempt ${failed} failed: ${outcome.output.replace(/\n/g, ' ')}`);
  const now = stamp();
  if (failed > backoffLimit) {
    store.updateStatus({
      ...fresh,
      status: {
        ...(fresh.status as object),
        active: 0,
        failed,
        conditions: [
          { type: 'FailureTarget', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now },
          { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now },
        ],
      },
    });
    const latest = store.get(HC, 'HelmChart', name, ns) ?? hc;
    setChartStatus(store, latest, jobName, outcome.output);
    event(store, latest, 'Warning', 'JobFailed', `Job ${ns}/${jobName} failed: ${outcome.output.split('\n')[0]}`);
    return;
  }
  store.updateStatus({ ...fresh, status: { ...(fresh.status as object), active: 1, failed, startTime: (fresh.status as { startTime?: string }).startTime ?? now } });
  kick(ns, name, Math.min(30_000, 1000 * 2 ** Math.min(failed, 5)));
}

function jobImageOf(job: KubeObject): string {
  return ((job.spec as { template: { spec: { containers: Array<{ image: string }> } } }).template.spec.containers[0]?.image) ?? '';
}

function jobObject(hc: KubeObject, jobName: string, hash: string, defaultImage: string): KubeObject {
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
    ['TARGET_NAMESPACE', String(spec.targetNamespace ?? 'default')],
    ['AUTH_PASS_CREDENTIALS', 'false'],
    ['INSECURE_SKIP_TLS_VERIFY', String(spec.insecureSkipTLSVerify ?? false)],
    ['PLAIN_HTTP', String(spec.plainHTTP ?? false)],
    ['TIMEOUT', String(spec.timeout ?? '')],
    ['FAILURE_POLICY', String(spec.failurePolicy ?? 'reinstall')],
  ].map(([n, v]) => ({ name: n!, value: v! }));
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: jobName,
      namespace: ns,
      labels: { 'helmcharts.helm.cattle.io/chart': hc.metadata.name! },
      annotations: { [HASH_ANNOTATION]: hash },
      ownerReferences: [{ apiVersion: HC, kind: 'HelmChart', name: hc.metadata.name!, uid: hc.metadata.uid!, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      backoffLimit: typeof spec.backOffLimit === 'number' ? spec.backOffLimit : 1000,
      template: {
        metadata: { labels: { 'helmcharts.helm.cattle.io/chart': hc.metadata.name! } },
        spec: {
          restartPolicy: 'OnFailure',
          serviceAccountName: `helm-${hc.metadata.name}`,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          containers: [{ name: 'helm', image, imagePullPolicy: 'IfNotPresent', args: ['install'], env }],
        },
      },
    },
    status: { active: 1, startTime: stamp() },
  };
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

function upsertPod(store: Store, job: KubeObject, name: string, opts: HelmControllerOptions, state: Record<string, unknown>, phase = 'Pending') {
  const ns = job.metadata.namespace!;
  let pod = store.get('v1', 'Pod', name, ns);
  if (!pod) {
    const tmpl = (job.spec as { template: { spec: Record<string, unknown> } }).template;
    pod = store.create({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: ns,
        labels: { 'job-name': job.metadata.name!, 'batch.kubernetes.io/job-name': job.metadata.name!, 'helmcharts.helm.cattle.io/chart': job.metadata.labels?.['helmcharts.helm.cattle.io/chart'] ?? '' },
        ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name!, uid: job.metadata.uid!, controller: true, blockOwnerDeletion: true }],
      },
      spec: { ...tmpl.spec, nodeName: opts.agent.nodeName },
    });
  }
  const image = jobImageOf(job);
  try {
    store.updateStatus({
      ...pod,
      status: {
        phase,
        conditions: [{ type: 'Ready', status: 'False' }],
        containerStatuses: [{ name: 'helm', image, ready: false, restartCount: 0, started: false, state }],
      },
    });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
}

function setChartStatus(store: Store, hc: KubeObject, jobName: string, failure: string | undefined) {
  const now = stamp();
  try {
    store.updateStatus({
      ...hc,
      status: {
        jobName,
        conditions: [
          { type: 'JobCreated', status: 'True', reason: 'Applied', message: `Applying HelmChart using Job ${hc.metadata.namespace}/${jobName}`, lastTransitionTime: now },
          failure
            ? { type: 'Failed', status: 'True', reason: 'Job failed', message: failure, lastTransitionTime: now }
            : { type: 'Failed', status: 'False', reason: '', message: '', lastTransitionTime: now },
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
      metadata: { name: `${obj.metadata.name}.${Date.now().toString(16)}${(eventSeq++).toString(16)}`, namespace: obj.metadata.namespace ?? 'default' },
      involvedObject: { apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata.name, namespace: obj.metadata.namespace, uid: obj.metadata.uid },
      type,
      reason,
      message,
      source: { component: 'helm-controller' },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
  } catch {
    /* events are best effort, as in Kubernetes */
  }
}

/** Strips the nested `$id`s FSM's schema repeats (Helm's gojsonschema ignores them; ajv would refuse). */
function stripIds(node: unknown, root = true): unknown {
  if (Array.isArray(node)) return node.map((n) => stripIds(n, false));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) if (!(k === '$id' && !root)) out[k] = stripIds(v, false);
    return out;
  }
  return node;
}

/** What klipper-helm's `helm install` would conclude on this node. */
async function runInstall(ctx: ControllerContext, opts: HelmControllerOptions, hc: KubeObject): Promise<Outcome> {
  const { store } = ctx;
  const fail = (msg: string): Outcome => ({ ok: false, output: `Error: INSTALLATION FAILED: ${msg}` });
  const spec = (hc.spec ?? {}) as Record<string, unknown>;
  const release = hc.metadata.name!;
  const targetNs = String(spec.targetNamespace ?? 'default');
  const fault = ctx.fault('helm');
  if (fault) return fail(fault);

  // 1. fetch the chart
  let tgz: Buffer;
  const chart = String(spec.chart ?? '');
  if (typeof spec.chartContent === 'string' && spec.chartContent) tgz = Buffer.from(spec.chartContent, 'base64');
  else {
    const m = /^https:\/\/%\{KUBERNETES_API\}%\/static\/(.+)$/.exec(chart);
    if (m) {
      const file = path.join(opts.dataDir, 'server', 'static', m[1]!);
      const url = `https://10.43.0.1:443/static/${m[1]}`;
      if (!fs.existsSync(file)) return fail(`failed to fetch ${url} : 404 Not Found`);
      tgz = fs.readFileSync(file);
    } else {
      const target = /^https?:\/\//.test(chart) ? chart : String(spec.repo ?? '') || `https://charts.helm.sh/stable (chart "${chart}")`;
      const host = /^https?:\/\/([^/:]+)/.exec(target)?.[1] ?? target;
      return fail(`Get "${target}": dial tcp: lookup ${host} on 10.43.0.10:53: server misbehaving`);
    }
  }
  let files;
  try {
    files = readChartArchive(tgz);
  } catch (e) {
    return fail(`failed to load chart: ${(e as Error).message}`);
  }
  const read = (f: string) => files.files.get(`${files.top}/${f}`)?.toString('utf8');
  const chartMeta = (YAML.parse(read('Chart.yaml') ?? '') ?? {}) as { name?: string; version?: string; appVersion?: string };

  // 2. values
  let values: Values;
  try {
    values = (YAML.parse(read('values.yaml') ?? '') ?? {}) as Values;
    if (typeof spec.valuesContent === 'string' && spec.valuesContent.trim()) values = deepMerge(values, (YAML.parse(spec.valuesContent) ?? {}) as Values);
    if (spec.values && typeof spec.values === 'object') values = deepMerge(values, spec.values as Values);
    for (const vs of (spec.valuesSecrets as Array<{ name: string; keys?: string[] }> | undefined) ?? []) {
      const sec = store.get('v1', 'Secret', vs.name, hc.metadata.namespace);
      if (!sec) return fail(`secret "${vs.name}" not found`);
      for (const k of vs.keys ?? []) {
        const data = (sec.data as Record<string, string> | undefined)?.[k];
        if (data === undefined) return fail(`key "${k}" not found in secret ${vs.name}`);
        values = deepMerge(values, (YAML.parse(Buffer.from(data, 'base64').toString('utf8')) ?? {}) as Values);
      }
    }
    const hcc = store.get(HC, 'HelmChartConfig', release, hc.metadata.namespace);
    const hccSpec = (hcc?.spec ?? {}) as Record<string, unknown>;
    if (typeof hccSpec.valuesContent === 'string' && hccSpec.valuesContent.trim()) values = deepMerge(values, (YAML.parse(hccSpec.valuesContent) ?? {}) as Values);
    if (hccSpec.values && typeof hccSpec.values === 'object') values = deepMerge(values, hccSpec.values as Values);
    if (spec.set && typeof spec.set === 'object') values = applySet(values, spec.set as Record<string, unknown>);
  } catch (e) {
    return fail(`failed to parse values: ${(e as Error).message.split('\n')[0]}`);
  }

  // 3. values.schema.json
  const schemaText = read('values.schema.json');
  if (schemaText) {
    const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
    const validate = ajv.compile(stripIds(JSON.parse(schemaText)) as object);
    if (!validate(values)) {
      const lines = (validate.errors ?? []).map((e) => {
        const at = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(root)';
        return `- ${at}: ${e.message ?? e.keyword}${e.params && 'allowedValues' in e.params ? ` ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}` : ''}`;
      });
      return fail(`values don't meet the specifications of the schema(s) in the following chart(s):\n${chartMeta.name ?? files.top}:\n${lines.join('\n')}`);
    }
  }

  // 4. target namespace
  if (!store.get('v1', 'Namespace', targetNs)) {
    if (spec.createNamespace === true) store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: targetNs } });
    else return fail(`create: failed to create: namespaces "${targetNs}" not found`);
  }

  // 5. images (airgap: whatever is not imported cannot run)
  const images = chartMeta.name === 'fsm' ? fsmImagesFor(values).filter((i) => i.install).map((i) => ({ ref: i.ref, usedBy: i.usedBy })) : genericImages(values);
  const missing = images.filter((i) => opts.agent.imageProblem(i.ref));
  if (missing.length) {
    return fail(
      `images not present on node ${opts.agent.nodeName} (airgapped: nothing can be pulled; helm would time out waiting for them): ` +
        missing.map((i) => `${normalizeImageRef(i.ref)} (${i.usedBy})`).join(', '),
    );
  }

  // 6. the release
  const objects = chartMeta.name === 'fsm' ? fsmReleaseObjects(values, targetNs, release, chartMeta.version ?? '') : [];
  for (const o of objects) {
    try {
      store.apply(o, { fieldManager: 'helm', force: true });
    } catch (e) {
      return fail(`${o.kind} "${o.metadata.name}": ${(e as Error).message}`);
    }
  }
  writeReleaseSecret(store, release, targetNs, chartMeta, values);
  return { ok: true, output: `NAME: ${release}\nNAMESPACE: ${targetNs}\nSTATUS: deployed\nREVISION: 1\nCHART: ${chartMeta.name}-${chartMeta.version}` };
}

/** Image references a generic chart's values name (`image: x:y`, `{repository, tag}`, `{registry, name, tag}`). */
function genericImages(values: Values): Array<{ ref: string; usedBy: string }> {
  const out: Array<{ ref: string; usedBy: string }> = [];
  const walk = (node: unknown, at: string) => {
    if (!node || typeof node !== 'object' || Array.isArray(node)) return;
    const o = node as Record<string, unknown>;
    if (typeof o.repository === 'string' && (typeof o.tag === 'string' || typeof o.tag === 'number')) {
      out.push({ ref: `${typeof o.registry === 'string' && o.registry ? `${o.registry}/` : ''}${o.repository}:${o.tag}`, usedBy: at });
    }
    for (const [k, v] of Object.entries(o)) walk(v, at ? `${at}.${k}` : k);
  };
  walk(values, '');
  return out;
}

function writeReleaseSecret(store: Store, release: string, ns: string, chart: { name?: string; version?: string; appVersion?: string }, values: Values) {
  const prev = store.list('v1', 'Secret', { namespace: ns, labelSelector: `owner=helm,name=${release}` });
  const version = prev.length + 1;
  const body = zlib.gzipSync(JSON.stringify({ name: release, namespace: ns, version, info: { status: 'deployed' }, chart: { metadata: chart }, config: values }));
  store.create({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `sh.helm.release.v1.${release}.v${version}`, namespace: ns, labels: { name: release, owner: 'helm', status: 'deployed', version: String(version) } },
    type: 'helm.sh/release.v1',
    data: { release: Buffer.from(body.toString('base64')).toString('base64') },
  });
}
