// klipper-helm, the image of every helm-controller Job, simulated: its `entry` script (k3s-io/klipper-helm `entry`,
// v0.17.7 era, helm v4) decides from the release's current status what to run, and `helm install`/`uninstall`
// do what they would on an airgapped node. What the container prints goes to its log (stdout/stderr, bash
// xtrace included: `set -x`); only the script's own status lines go to /dev/termination-log (TERM_LOG), which
// is what the kubelet puts into `lastState.terminated.message` — helm's own error is in the log, not there.
//
// Release records are helm's Secrets `sh.helm.release.v1.<name>.v<N>` (labels owner=helm, name, status, version,
// and the config-hash label klipper passes with `--labels`), body base64(gzip(JSON)) with `info.status` and
// `info.description` ("Release \"x\" failed: …" after a failure, as helm's failRelease writes it).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Ajv } from 'ajv';
import YAML from 'yaml';
import type { ControllerContext, KubeObject, Store } from '../../apiserver/index.js';
import { deepMerge, applySet, type Values } from '../helm-values.js';
import { fsmImagesFor } from '../fsm-images.js';
import type { AgentState } from './agent-state.js';
import { readChartArchive } from './chart-archive.js';
import { fsmReleaseObjects } from './fsm-release.js';

const HC = 'helm.cattle.io/v1';
export const CONFIG_HASH_LABEL = 'helmcharts.helm.cattle.io/configHash';

/** One run of the container: exit code, what it printed (log lines), what it wrote to TERM_LOG. */
export interface KlipperRun {
  exitCode: number;
  log: Array<{ stream: 'stdout' | 'stderr'; line: string }>;
  termLog: string;
}

export interface KlipperEnv {
  mode: 'install' | 'delete';
  release: string;
  targetNamespace: string;
  failurePolicy: string;
  timeoutSeconds: number;
  /** EXPECTED_RELEASE_REVISION as helm-controller injected it at Job creation ("0" when there was none). */
  expectedRevision: string;
  configHash: string;
  /** Still the same Job attempt? (false once the Job was replaced or the HelmChart deleted.) */
  current: () => boolean;
}

export interface KlipperContext {
  ctx: ControllerContext;
  dataDir: string;
  agent: AgentState;
  hc: KubeObject;
}

export interface ReleaseInfo {
  version: number;
  status: string;
  hash: string;
  secret: KubeObject;
}

/** The newest release record (helm-controller's latestRelease: highest `version` label). */
export function latestRelease(store: Store, release: string, ns: string): ReleaseInfo | undefined {
  let best: ReleaseInfo | undefined;
  for (const s of store.list('v1', 'Secret', { namespace: ns, labelSelector: `owner=helm,name=${release}` })) {
    if ((s as { type?: string }).type !== 'helm.sh/release.v1') continue;
    const v = Number(s.metadata.labels?.version);
    if (Number.isInteger(v) && (!best || v > best.version))
      best = { version: v, status: s.metadata.labels?.status ?? '', hash: s.metadata.labels?.[CONFIG_HASH_LABEL] ?? '', secret: s };
  }
  return best;
}

function encodeRelease(doc: Record<string, unknown>): string {
  return Buffer.from(zlib.gzipSync(JSON.stringify(doc)).toString('base64')).toString('base64');
}

function decodeRelease(s: KubeObject): Record<string, unknown> {
  const data = (s.data as Record<string, string> | undefined)?.release ?? '';
  return JSON.parse(zlib.gunzipSync(Buffer.from(Buffer.from(data, 'base64').toString('utf8'), 'base64')).toString('utf8')) as Record<
    string,
    unknown
  >;
}

function writeRelease(
  store: Store,
  r: {
    release: string;
    ns: string;
    version: number;
    status: string;
    description: string;
    hash: string;
    chart?: Record<string, unknown>;
    values?: Values;
  },
) {
  const name = `sh.helm.release.v1.${r.release}.v${r.version}`;
  const labels = {
    name: r.release,
    owner: 'helm',
    status: r.status,
    version: String(r.version),
    ...(r.hash ? { [CONFIG_HASH_LABEL]: r.hash } : {}),
  };
  const old = store.get('v1', 'Secret', name, r.ns);
  const prev = old ? decodeRelease(old) : {};
  const doc = {
    ...prev,
    name: r.release,
    namespace: r.ns,
    version: r.version,
    info: { ...((prev.info as object) ?? {}), status: r.status, description: r.description },
    ...(r.chart ? { chart: { metadata: r.chart } } : {}),
    ...(r.values ? { config: r.values } : {}),
  };
  const obj: KubeObject = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: r.ns, labels },
    type: 'helm.sh/release.v1',
    data: { release: encodeRelease(doc) },
  } as KubeObject;
  if (old) store.update({ ...old, metadata: { ...old.metadata, labels }, data: obj.data } as KubeObject);
  else store.create(obj);
}

function setReleaseStatus(store: Store, rel: ReleaseInfo, release: string, ns: string, status: string, description: string) {
  writeRelease(store, { release, ns, version: rel.version, status, description, hash: rel.hash });
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

type Rendered =
  | { ok: true; chart: { name?: string; version?: string; appVersion?: string }; values: Values }
  | { ok: false; error: string };

/** helm's load + values + schema steps (nothing is stored yet: a failure here leaves no release). */
function renderChart(store: Store, dataDir: string, hc: KubeObject): Rendered {
  const fail = (msg: string): Rendered => ({ ok: false, error: msg });
  const spec = (hc.spec ?? {}) as Record<string, unknown>;
  const release = hc.metadata.name!;
  // 1. fetch the chart
  let tgz: Buffer;
  const chart = String(spec.chart ?? '');
  if (typeof spec.chartContent === 'string' && spec.chartContent) tgz = Buffer.from(spec.chartContent, 'base64');
  else {
    const m = /^https:\/\/%\{KUBERNETES_API\}%\/static\/(.+)$/.exec(chart);
    if (m) {
      const file = path.join(dataDir, 'server', 'static', m[1]!);
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
    if (typeof spec.valuesContent === 'string' && spec.valuesContent.trim())
      values = deepMerge(values, (YAML.parse(spec.valuesContent) ?? {}) as Values);
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
    if (typeof hccSpec.valuesContent === 'string' && hccSpec.valuesContent.trim())
      values = deepMerge(values, (YAML.parse(hccSpec.valuesContent) ?? {}) as Values);
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
      return fail(
        `values don't meet the specifications of the schema(s) in the following chart(s):\n${chartMeta.name ?? files.top}:\n${lines.join('\n')}`,
      );
    }
  }

  return { ok: true, chart: chartMeta, values };
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

/** `600s`, `10m`, `1h30m` → seconds (helm's default --timeout is 5m). */
export function parseTimeout(s: string): number {
  if (!s) return 300;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(h|m|s|ms)/g))
    total += Number(m[1]) * ({ h: 3600, m: 60, s: 1, ms: 0.001 } as Record<string, number>)[m[2]!]!;
  return total || 300;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * FSM's `fsm-preinstall` hook Job (helm.sh/hook: pre-install): helm creates it and waits — even without `--wait`
 * — until it completes or `--timeout` passes. Its pod cannot start without its image, and on an airgapped node
 * nothing pulls it. Returns an error message, `undefined` on success, or `'abandoned'`.
 */
async function preinstallHook(k: KlipperContext, env: KlipperEnv, values: Values): Promise<string | undefined> {
  const { store } = k.ctx;
  const hook = fsmImagesFor(values).find((i) => i.usedBy.includes('pre-install hook'));
  if (!hook) return undefined;
  const ns = env.targetNamespace;
  const jobName = 'fsm-preinstall';
  const pullPolicy = String(((values.fsm as Values | undefined)?.image as Values | undefined)?.pullPolicy ?? 'IfNotPresent');
  for (const o of store.list('v1', 'Pod', { namespace: ns, labelSelector: `job-name=${jobName}` }))
    store.delete('v1', 'Pod', o.metadata.name!, ns);
  if (store.get('batch/v1', 'Job', jobName, ns)) store.delete('batch/v1', 'Job', jobName, ns); // before-hook-creation
  const job = store.create({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: jobName,
      namespace: ns,
      annotations: { 'helm.sh/hook': 'pre-install', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' },
    },
    spec: {
      backoffLimit: 0,
      template: {
        spec: { restartPolicy: 'Never', containers: [{ name: 'fsm-preinstall', image: hook.ref, imagePullPolicy: pullPolicy }] },
      },
    },
    status: { active: 1 },
  } as KubeObject);
  const pod = store.create({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `${jobName}-${Math.random().toString(36).slice(2, 7)}`,
      namespace: ns,
      labels: { 'job-name': jobName, 'batch.kubernetes.io/job-name': jobName },
      ownerReferences: [
        { apiVersion: 'batch/v1', kind: 'Job', name: jobName, uid: job.metadata.uid!, controller: true, blockOwnerDeletion: true },
      ],
    },
    spec: { ...(job.spec as { template: { spec: object } }).template.spec, nodeName: k.agent.nodeName },
  } as KubeObject);
  const deadline = Date.now() + env.timeoutSeconds * 1000;
  for (;;) {
    if (!env.current()) return 'abandoned';
    await k.agent.refreshImages(2000);
    const problem = k.agent.imageProblem(hook.ref);
    if (!problem) break;
    const waiting =
      pullPolicy === 'Never'
        ? { reason: 'ErrImageNeverPull', message: `Container image "${hook.ref}" is not present with pull policy of Never` }
        : { reason: 'ImagePullBackOff', message: `Back-off pulling image "${hook.ref}": ErrImagePull: ${k.agent.pullError(hook.ref)}` };
    const cur = store.get('v1', 'Pod', pod.metadata.name!, ns);
    if (cur) {
      try {
        store.updateStatus({
          ...cur,
          status: {
            phase: 'Pending',
            containerStatuses: [
              { name: 'fsm-preinstall', image: hook.ref, ready: false, restartCount: 0, started: false, state: { waiting } },
            ],
          },
        });
      } catch {
        /* raced with a delete */
      }
    }
    if (Date.now() >= deadline)
      return `failed pre-install: resource not ready, name: ${jobName}, kind: Job, status: InProgress\ncontext deadline exceeded`;
    await sleep(1000);
  }
  // the hook ran (the stand-in's preinstall checks nothing) and hook-succeeded deletes it
  for (const o of store.list('v1', 'Pod', { namespace: ns, labelSelector: `job-name=${jobName}` }))
    store.delete('v1', 'Pod', o.metadata.name!, ns);
  store.delete('batch/v1', 'Job', jobName, ns);
  return undefined;
}

/** `helm uninstall --wait`: the release's objects (annotated with its name) and its records go. */
function uninstall(store: Store, release: string, ns: string) {
  for (const [av, kind] of [
    ['apps/v1', 'Deployment'],
    ['apps/v1', 'DaemonSet'],
    ['v1', 'ConfigMap'],
    ['v1', 'Service'],
    ['batch/v1', 'Job'],
  ] as const) {
    for (const o of store.list(av, kind, { namespace: ns })) {
      if (
        o.metadata.annotations?.['meta.helm.sh/release-name'] !== release &&
        !(kind === 'Job' && o.metadata.annotations?.['helm.sh/hook'])
      )
        continue;
      for (const p of store.list('v1', 'Pod', { namespace: ns })) {
        if (p.metadata.ownerReferences?.some((r) => r.uid === o.metadata.uid)) store.delete('v1', 'Pod', p.metadata.name!, ns);
      }
      store.delete(av, kind, o.metadata.name!, ns);
    }
  }
  for (const s of store.list('v1', 'Secret', { namespace: ns, labelSelector: `owner=helm,name=${release}` }))
    store.delete('v1', 'Secret', s.metadata.name!, ns);
}

/** The container's run: klipper-helm's `entry` with `$1` = install|delete. */
export async function runKlipper(k: KlipperContext, env: KlipperEnv): Promise<KlipperRun> {
  const { store } = k.ctx;
  const logLines: KlipperRun['log'] = [];
  let termLog = '';
  const x = (cmd: string) => logLines.push({ stream: 'stderr', line: `+ ${cmd}` });
  const out = (line: string) => logLines.push({ stream: 'stdout', line });
  const err = (line: string) => line.split('\n').forEach((l) => logLines.push({ stream: 'stderr', line: l }));
  const term = (line: string) => {
    x(`echo '${line}'`);
    termLog += `${line}\n`;
  };
  const exit = (exitCode: number): KlipperRun => ({ exitCode, log: logLines, termLog });
  const { release, targetNamespace: ns } = env;
  const spec = (k.hc.spec ?? {}) as Record<string, unknown>;
  const chartUrl = String(spec.chart ?? '').replace('%{KUBERNETES_API}%', '10.43.0.1:443');
  x(`CHART=${chartUrl}`);
  const rel = latestRelease(store, release, ns);
  x(
    `read -r STATUS REVISION APPLY_METHOD _  # helm status --namespace ${ns} ${release} → ${rel ? `${rel.status} ${rel.version}` : 'not found'}`,
  );
  const revisionMismatch = (v: number) => {
    if (env.expectedRevision === '' || env.expectedRevision === String(v)) return false;
    const msg = `Current release revision ${v} does not match expected revision ${env.expectedRevision}`;
    term(msg);
    out(msg);
    return true;
  };

  if (env.mode === 'delete') {
    if (!rel) {
      term('No helm chart installed; nothing to delete');
      return exit(0);
    }
    if (revisionMismatch(rel.version)) return exit(0);
    term('Uninstalling helm chart');
    x(`helm uninstall ${release} --namespace ${ns} --wait`);
    uninstall(store, release, ns);
    out(`release "${release}" uninstalled`);
    return exit(0);
  }

  const helm = async (verb: 'install' | 'upgrade', version: number): Promise<KlipperRun> => {
    const what = verb === 'install' ? 'INSTALLATION' : 'UPGRADE';
    x(
      `helm ${verb} ${verb === 'install' ? '--create-namespace ' : ''}${release} ${chartUrl} --timeout ${env.timeoutSeconds}s --labels ${CONFIG_HASH_LABEL}=${env.configHash} --values /config/values-01_HelmChart.yaml`,
    );
    const fault = k.ctx.fault('helm');
    if (fault) return (err(`Error: ${what} FAILED: ${fault}`), exit(1));
    const r = renderChart(store, k.dataDir, k.hc);
    if (!r.ok) return (err(`Error: ${what} FAILED: ${r.error}`), exit(1));
    if (!store.get('v1', 'Namespace', ns)) {
      if (spec.createNamespace === true) store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      else return (err(`Error: ${what} FAILED: create: failed to create: namespaces "${ns}" not found`), exit(1));
    }
    const pending = verb === 'install' ? 'pending-install' : 'pending-upgrade';
    writeRelease(store, {
      release,
      ns,
      version,
      status: pending,
      description: verb === 'install' ? 'Initial install underway' : 'Preparing upgrade',
      hash: env.configHash,
      chart: r.chart,
      values: r.values,
    });
    const failRelease = (msg: string) => {
      writeRelease(store, {
        release,
        ns,
        version,
        status: 'failed',
        description: `Release "${release}" failed: ${msg}`,
        hash: env.configHash,
      });
      err(`Error: ${what} FAILED: ${msg}`);
      return exit(1);
    };
    if (verb === 'install' && r.chart.name === 'fsm') {
      const hookErr = await preinstallHook(k, env, r.values);
      if (hookErr === 'abandoned') return exit(143);
      if (hookErr) return failRelease(hookErr);
    }
    // fault `helm-apply`: an object the API refuses (a webhook, a conflict) — the release is stored, then failed
    const applyFault = k.ctx.fault('helm-apply');
    if (applyFault) return failRelease(applyFault);
    // helm runs without --wait: objects are created, nobody waits for their pods (or their images)
    const objects = r.chart.name === 'fsm' ? fsmReleaseObjects(r.values, ns, release, r.chart.version ?? '') : [];
    for (const o of objects) {
      try {
        store.apply(o, { fieldManager: 'helm', force: true });
      } catch (e) {
        return failRelease(`${o.kind} "${o.metadata.name}": ${(e as Error).message}`);
      }
    }
    for (const s of store.list('v1', 'Secret', { namespace: ns, labelSelector: `owner=helm,name=${release},status=deployed` })) {
      const v = Number(s.metadata.labels?.version);
      if (v !== version)
        writeRelease(store, {
          release,
          ns,
          version: v,
          status: 'superseded',
          description: 'Superseded',
          hash: s.metadata.labels?.[CONFIG_HASH_LABEL] ?? '',
        });
    }
    writeRelease(store, {
      release,
      ns,
      version,
      status: 'deployed',
      description: verb === 'install' ? 'Install complete' : 'Upgrade complete',
      hash: env.configHash,
    });
    out(`NAME: ${release}`);
    out(`NAMESPACE: ${ns}`);
    out('STATUS: deployed');
    out(`REVISION: ${version}`);
    return exit(0);
  };

  if (!rel) {
    term('Installing helm chart');
    return helm('install', 1);
  }
  if (revisionMismatch(rel.version)) return exit(0);
  let status = rel.status;
  if (/^(pending-install|pending-upgrade|pending-rollback|superseded|uninstalling)$/.test(status)) {
    out(`Previous helm job was interrupted, updating status from ${status} to failed`);
    term(`Resetting helm release status from '${status}' to 'failed'`);
    setReleaseStatus(store, rel, release, ns, 'failed', `Release "${release}" failed: interrupted (status was ${status})`);
    if (status === 'pending-upgrade' || status === 'superseded') {
      term('Retrying upgrade of helm chart');
      out(`Retrying upgrade of ${release}`);
      return helm('upgrade', rel.version + 1);
    }
    status = 'failed';
  }
  if (status === 'deployed') {
    out(`Already installed ${release}`);
    term('Upgrading helm chart');
    out(`Upgrading ${release}`);
    return helm('upgrade', rel.version + 1);
  }
  if (/^(deleted|failed|null|unknown)$/.test(status)) {
    switch (env.failurePolicy || 'reinstall') {
      case 'abort': {
        const msg = `Release status is '${status}' and failure policy is '${env.failurePolicy}'; waiting for operator intervention`;
        termLog += `${msg}\n`;
        out(msg);
        return exit(1);
      }
      case 'reinstall':
        term(`Uninstalling ${status} helm chart`);
        uninstall(store, release, ns);
        out('Deleted');
        term('Installing helm chart');
        return helm('install', 1);
      case 'retry':
        term(`Upgrading ${release} from failed state`);
        await helm('upgrade', rel.version + 1);
        return exit(0);
      default:
        term(`Unknown failure policy '${env.failurePolicy}'`);
        out(`Unknown failure policy '${env.failurePolicy}'`);
        return exit(1);
    }
  }
  term('Installing helm chart');
  return helm('install', rel.version + 1);
}
