// `k3s kubectl` (and the kubectl symlink), as far as installers and recovery scripts use it:
// get (--raw, tables, -o json|yaml|name|jsonpath), apply -f, delete, wait --for=condition, rollout status, logs,
// version. Talks to the API with /etc/rancher/k3s/k3s.yaml unless KUBECONFIG/--kubeconfig says otherwise.
import fs from 'node:fs';
import YAML from 'yaml';
import { loadKubeconfig, kubeRequest, type KubeTarget } from './kube-http.js';
import { K3S_VERSION } from './build-info.js';

interface Res {
  group: string;
  version: string;
  name: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  singular: string;
}

class Usage extends Error {}

function parse(args: string[]) {
  const pos: string[] = [];
  const opt: Record<string, string | true> = {};
  const short: Record<string, string> = { n: 'namespace', o: 'output', A: 'all-namespaces', f: 'filename', l: 'selector' };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) opt[a.slice(2, eq)] = a.slice(eq + 1);
      else {
        const k = a.slice(2);
        if (['all-namespaces', 'watch', 'force', 'server-side', 'ignore-not-found', 'no-headers', 'previous'].includes(k)) opt[k] = true;
        else opt[k] = args[++i] ?? '';
      }
    } else if (a.startsWith('-') && a.length >= 2) {
      const k = short[a[1]!] ?? a.slice(1);
      if (k === 'all-namespaces' || a === '-p') opt[k === 'p' ? 'previous' : k] = true;
      else if (a.length > 2) opt[k] = a.slice(2).replace(/^=/, '');
      else opt[k] = args[++i] ?? '';
    } else pos.push(a);
  }
  return { pos, opt };
}

async function discover(t: KubeTarget): Promise<Res[]> {
  const out: Res[] = [];
  const getJson = async (p: string) => {
    const r = await kubeRequest(t, 'GET', p);
    if (r.status !== 200) throw new Error(`Error from server: GET ${p}: ${r.status}`);
    return JSON.parse(r.body) as Record<string, unknown>;
  };
  const add = (group: string, version: string, list: Record<string, unknown>) => {
    for (const r of (list.resources as Array<Record<string, unknown>>) ?? []) {
      if (String(r.name).includes('/')) continue;
      out.push({
        group,
        version,
        name: String(r.name),
        kind: String(r.kind),
        namespaced: r.namespaced === true,
        shortNames: (r.shortNames as string[]) ?? [],
        singular: String(r.singularName || String(r.kind).toLowerCase()),
      });
    }
  };
  add('', 'v1', await getJson('/api/v1'));
  const groups = (await getJson('/apis')).groups as Array<{ name: string; preferredVersion: { version: string } }>;
  for (const g of groups ?? []) add(g.name, g.preferredVersion.version, await getJson(`/apis/${g.name}/${g.preferredVersion.version}`));
  return out;
}

function resolve(all: Res[], spec: string): Res {
  const [word, group] = [spec.split('.')[0]!.toLowerCase(), spec.split('.').slice(1).join('.')];
  const r = all.find(
    (x) =>
      (x.name === word || x.singular === word || x.shortNames.includes(word) || x.kind.toLowerCase() === word) &&
      (!group || x.group === group),
  );
  if (!r) throw new Error(`error: the server doesn't have a resource type "${spec}"`);
  return r;
}

const basePath = (r: Res, ns?: string) =>
  `${r.group ? `/apis/${r.group}/${r.version}` : '/api/v1'}${r.namespaced && ns ? `/namespaces/${ns}` : ''}/${r.name}`;

function age(ts?: string): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : s < 172800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
}

type Obj = {
  kind?: string;
  metadata: { name: string; namespace?: string; creationTimestamp?: string; uid?: string; labels?: Record<string, string> };
  status?: Record<string, unknown>;
  spec?: Record<string, unknown>;
};

function row(r: Res, o: Obj): Record<string, string> {
  const st = (o.status ?? {}) as Record<string, any>;
  const conds = (st.conditions ?? []) as Array<{ type: string; status: string }>;
  switch (r.kind) {
    case 'Node': {
      const ready = conds.find((c) => c.type === 'Ready');
      const roles = Object.keys(o.metadata.labels ?? {})
        .filter((k) => k.startsWith('node-role.kubernetes.io/'))
        .map((k) => k.split('/')[1])
        .sort()
        .join(',');
      return {
        NAME: o.metadata.name,
        STATUS: ready?.status === 'True' ? 'Ready' : 'NotReady',
        ROLES: roles || '<none>',
        AGE: age(o.metadata.creationTimestamp),
        VERSION: st.nodeInfo?.kubeletVersion ?? '',
      };
    }
    case 'Pod': {
      const cs = (st.containerStatuses ?? []) as Array<{
        ready: boolean;
        restartCount: number;
        state: Record<string, { reason?: string }>;
      }>;
      const waiting = cs.map((c) => c.state.waiting?.reason ?? c.state.terminated?.reason).find(Boolean);
      return {
        NAME: o.metadata.name,
        READY: `${cs.filter((c) => c.ready).length}/${cs.length}`,
        STATUS: st.phase === 'Succeeded' ? 'Completed' : (waiting ?? st.phase ?? 'Pending'),
        RESTARTS: String(cs.reduce((a, c) => a + (c.restartCount ?? 0), 0)),
        AGE: age(o.metadata.creationTimestamp),
      };
    }
    case 'Deployment': {
      const want = (o.spec?.replicas as number | undefined) ?? 1;
      return {
        NAME: o.metadata.name,
        READY: `${st.readyReplicas ?? 0}/${want}`,
        'UP-TO-DATE': String(st.updatedReplicas ?? 0),
        AVAILABLE: String(st.availableReplicas ?? 0),
        AGE: age(o.metadata.creationTimestamp),
      };
    }
    case 'DaemonSet':
      return {
        NAME: o.metadata.name,
        DESIRED: String(st.desiredNumberScheduled ?? 0),
        CURRENT: String(st.currentNumberScheduled ?? 0),
        READY: String(st.numberReady ?? 0),
        'UP-TO-DATE': String(st.updatedNumberScheduled ?? 0),
        AVAILABLE: String(st.numberAvailable ?? 0),
        AGE: age(o.metadata.creationTimestamp),
      };
    case 'Job': {
      const failed = conds.some((c) => c.type === 'Failed' && c.status === 'True');
      const done = conds.some((c) => c.type === 'Complete' && c.status === 'True');
      return {
        NAME: o.metadata.name,
        STATUS: failed ? 'Failed' : done ? 'Complete' : 'Running',
        COMPLETIONS: `${st.succeeded ?? 0}/1`,
        AGE: age(o.metadata.creationTimestamp),
      };
    }
    default:
      return { NAME: o.metadata.name, AGE: age(o.metadata.creationTimestamp) };
  }
}

function table(rows: Array<Record<string, string>>, noHeaders: boolean): string {
  if (!rows.length) return '';
  const cols = Object.keys(rows[0]!);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)));
  const fmt = (vals: string[]) => vals.map((v, i) => (i === vals.length - 1 ? v : v.padEnd(w[i]! + 3))).join('');
  return [...(noHeaders ? [] : [fmt(cols)]), ...rows.map((r) => fmt(cols.map((c) => r[c] ?? '')))].join('\n') + '\n';
}

/** kubectl's JSONPath subset: `{.a.b}`, `{.items[0].x}`, `{.items[?(@.type=="Ready")].status}`, `a\\.b` escaped dots. */
export function jsonpath(o: unknown, expr: string): string {
  const body = expr.replace(/^\{|\}$/g, '').replace(/^\./, '');
  const parts: string[] = [];
  let cur = '';
  let depth = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '\\' && body[i + 1] === '.') {
      cur += '.';
      i++;
    } else if (c === '.' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else {
      if (c === '[') depth++;
      if (c === ']') depth--;
      cur += c;
    }
  }
  if (cur) parts.push(cur);
  let node: unknown = o;
  for (const part of parts.filter(Boolean)) {
    const m = /^([^[]*)(?:\[(\d+|\*|\?\(@\.(\w+)=="([^"]*)"\))\])?$/.exec(part);
    if (!m) return '';
    if (m[1]) node = (node as Record<string, unknown> | undefined)?.[m[1]];
    if (m[2] !== undefined && Array.isArray(node)) {
      if (m[2] === '*') continue;
      node = m[3] ? node.find((x) => String((x as Record<string, unknown>)[m[3]!]) === m[4]) : node[Number(m[2])];
    }
  }
  return node === undefined || node === null ? '' : typeof node === 'object' ? JSON.stringify(node) : String(node);
}

function output(r: Res, items: Obj[], single: boolean, opt: Record<string, string | true>, allNs: boolean): string {
  const o = typeof opt.output === 'string' ? opt.output : '';
  const listObj = { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } };
  if (o === 'json') return JSON.stringify(single ? items[0] : listObj, null, 4) + '\n';
  if (o === 'yaml') return YAML.stringify(single ? items[0] : listObj);
  if (o === 'name') return items.map((i) => `${r.singular}${r.group ? `.${r.group}` : ''}/${i.metadata.name}`).join('\n') + '\n';
  if (o.startsWith('jsonpath=')) return jsonpath(single ? items[0] : listObj, o.slice('jsonpath='.length));
  if (!items.length) return '';
  return table(
    items.map((i) => (allNs ? { NAMESPACE: i.metadata.namespace ?? '', ...row(r, i) } : row(r, i))),
    opt['no-headers'] === true,
  );
}

export async function runKubectl(args: string[]): Promise<number> {
  const { pos, opt } = parse(args);
  const verb = pos[0];
  const out = (s: string) => process.stdout.write(s);
  try {
    if (!verb)
      throw new Usage(
        'kubectl controls the Kubernetes cluster manager (k3s STAND-IN: get, apply, delete, wait, rollout status, logs, version)',
      );
    const file = (opt.kubeconfig as string) || process.env.KUBECONFIG || '/etc/rancher/k3s/k3s.yaml';
    if (verb === 'version' && opt.client === true) {
      out(`Client Version: ${K3S_VERSION}\nKustomize Version: v5.7.1\n`);
      return 0;
    }
    const t = loadKubeconfig(file);
    const ns = (opt.namespace as string) || 'default';
    const allNs = opt['all-namespaces'] === true;
    if (verb === 'version') {
      const r = await kubeRequest(t, 'GET', '/version');
      const v = JSON.parse(r.body) as { gitVersion: string };
      out(`Client Version: ${K3S_VERSION}\nKustomize Version: v5.7.1\nServer Version: ${v.gitVersion}\n`);
      return 0;
    }
    if (verb === 'get' && typeof opt.raw === 'string') {
      const r = await kubeRequest(t, 'GET', opt.raw);
      if (r.status >= 400) {
        process.stderr.write(`Error from server (${r.status === 404 ? 'NotFound' : r.status}): ${r.body.trim()}\n`);
        return 1;
      }
      out(r.body.endsWith('\n') || r.body === 'ok' ? r.body + (r.body === 'ok' ? '\n' : '') : r.body + '\n');
      return 0;
    }
    const all = await discover(t);
    if (verb === 'get') {
      if (!pos[1]) throw new Usage('You must specify the type of resource to get.');
      const [type, name] = pos[1].includes('/') ? pos[1].split('/') : [pos[1], pos[2]];
      const results: string[] = [];
      for (const ty of type!.split(',')) {
        const r = resolve(all, ty);
        const p = basePath(r, allNs ? undefined : ns);
        const sel = typeof opt.selector === 'string' ? `?labelSelector=${encodeURIComponent(opt.selector)}` : '';
        const resp = await kubeRequest(t, 'GET', name ? `${p}/${name}` : `${p}${sel}`);
        if (resp.status === 404 && name) {
          if (opt['ignore-not-found'] === true) continue;
          process.stderr.write(`Error from server (NotFound): ${r.name}${r.group ? `.${r.group}` : ''} "${name}" not found\n`);
          return 1;
        }
        if (resp.status >= 400) throw new Error(`Error from server: ${JSON.parse(resp.body).message ?? resp.body}`);
        const body = JSON.parse(resp.body) as { items?: Obj[] } & Obj;
        const items = name ? [body] : (body.items ?? []);
        if (!items.length && !name)
          process.stderr.write(allNs || !r.namespaced ? 'No resources found\n' : `No resources found in ${ns} namespace.\n`);
        results.push(output(r, items, !!name, opt, allNs && r.namespaced));
      }
      out(results.join(''));
      return 0;
    }
    if (verb === 'apply' || verb === 'create') {
      const f = opt.filename as string;
      if (!f) throw new Usage('error: must specify one of -f and -k');
      const docs = YAML.parseAllDocuments(f === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(f, 'utf8'))
        .map((d) => d.toJS() as Obj & { apiVersion: string; kind: string })
        .filter(Boolean);
      let rc = 0;
      for (const d of docs) {
        const r = all.find((x) => x.kind === d.kind && `${x.group ? `${x.group}/` : ''}${x.version}` === d.apiVersion);
        if (!r) {
          process.stderr.write(
            `error: resource mapping not found for name: "${d.metadata?.name}" namespace: "${d.metadata?.namespace ?? ''}" from "${f}": no matches for kind "${d.kind}" in version "${d.apiVersion}"\nensure CRDs are installed first\n`,
          );
          rc = 1;
          continue;
        }
        const dn = d.metadata.namespace ?? ns;
        const p = `${basePath(r, dn)}/${d.metadata.name}?fieldManager=kubectl&force=true`;
        const resp = await kubeRequest(t, 'PATCH', p, JSON.stringify(d), 'application/apply-patch+yaml');
        if (resp.status >= 400) {
          process.stderr.write(
            `Error from server: error when applying "${f}": ${(JSON.parse(resp.body) as { message?: string }).message ?? resp.body}\n`,
          );
          rc = 1;
        } else out(`${r.singular}${r.group ? `.${r.group}` : ''}/${d.metadata.name} serverside-applied\n`);
      }
      return rc;
    }
    if (verb === 'delete') {
      const [type, name] = pos[1]?.includes('/') ? pos[1].split('/') : [pos[1], pos[2]];
      if (!type || !name) throw new Usage('error: resource(s) were provided, but no name was specified');
      const r = resolve(all, type);
      const resp = await kubeRequest(t, 'DELETE', `${basePath(r, ns)}/${name}`);
      if (resp.status === 404) {
        if (opt['ignore-not-found'] === true) return 0;
        process.stderr.write(`Error from server (NotFound): ${r.name} "${name}" not found\n`);
        return 1;
      }
      out(`${r.singular}${r.group ? `.${r.group}` : ''} "${name}" deleted\n`);
      return 0;
    }
    if (verb === 'wait' || (verb === 'rollout' && pos[1] === 'status')) {
      const target = verb === 'wait' ? pos[1] : pos[2];
      if (!target?.includes('/')) throw new Usage('error: arguments in resource/name form must have a single resource and name');
      const [type, name] = target.split('/') as [string, string];
      const r = resolve(all, type);
      const timeoutS = parseDuration(typeof opt.timeout === 'string' ? opt.timeout : verb === 'wait' ? '30s' : '0s');
      const cond = verb === 'wait' ? String(opt.for ?? '').replace(/^condition=/, '') : '';
      const [condType, condWant = 'True'] = cond.split('=');
      const deadline = Date.now() + (timeoutS || 1e9) * 1000;
      for (;;) {
        const resp = await kubeRequest(t, 'GET', `${basePath(r, ns)}/${name}`);
        if (resp.status === 200) {
          const o = JSON.parse(resp.body) as Obj;
          const st = (o.status ?? {}) as Record<string, any>;
          if (verb === 'wait') {
            const c = ((st.conditions ?? []) as Array<{ type: string; status: string }>).find(
              (x) => x.type.toLowerCase() === condType!.toLowerCase(),
            );
            if (c && c.status.toLowerCase() === condWant.toLowerCase()) {
              out(`${r.singular}${r.group ? `.${r.group}` : ''}/${name} condition met\n`);
              return 0;
            }
          } else {
            const want = r.kind === 'DaemonSet' ? st.desiredNumberScheduled : ((o.spec?.replicas as number | undefined) ?? 1);
            const have = r.kind === 'DaemonSet' ? st.numberAvailable : st.availableReplicas;
            if (want !== undefined && (have ?? 0) >= want && want > 0) {
              out(
                r.kind === 'DaemonSet'
                  ? `daemon set "${name}" successfully rolled out\n`
                  : `deployment "${name}" successfully rolled out\n`,
              );
              return 0;
            }
            if (Date.now() < deadline)
              out(`Waiting for deployment "${name}" rollout to finish: ${have ?? 0} of ${want ?? 1} updated replicas are available...\n`);
          }
        } else if (resp.status !== 404) throw new Error(`Error from server: ${resp.body}`);
        if (Date.now() >= deadline) {
          process.stderr.write(
            verb === 'wait'
              ? `error: timed out waiting for the condition on ${r.name}/${name}\n`
              : 'error: timed out waiting for the condition\n',
          );
          return 1;
        }
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
    if (verb === 'logs') {
      const target = pos[1] ?? '';
      const pods = all.find((x) => x.kind === 'Pod')!;
      let podObjs: Obj[];
      if (target.startsWith('job/')) {
        const resp = await kubeRequest(
          t,
          'GET',
          `${basePath(pods, ns)}?labelSelector=${encodeURIComponent(`job-name=${target.slice(4)}`)}`,
        );
        podObjs = ((JSON.parse(resp.body) as { items?: Obj[] }).items ?? []).slice(-1);
      } else {
        const resp = await kubeRequest(t, 'GET', `${basePath(pods, ns)}/${target.replace(/^pods?\//, '')}`);
        podObjs = resp.status === 200 ? [JSON.parse(resp.body) as Obj] : [];
      }
      if (!podObjs.length) {
        process.stderr.write(`error: no pods found for ${target}\n`);
        return 1;
      }
      // the kubelet's CRI log files: /var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log
      const pod = podObjs[0]!;
      const statuses = (pod.status?.containerStatuses ?? []) as Array<{
        name: string;
        restartCount?: number;
        state: Record<string, { message?: string; reason?: string }>;
      }>;
      const c = statuses.find((x) => x.name === opt.container) ?? statuses[0];
      if (!c) {
        process.stderr.write(`Error from server (BadRequest): container is waiting to start: ContainerCreating\n`);
        return 1;
      }
      const restart = (c.restartCount ?? 0) - (opt.previous === true ? 1 : 0);
      const logFile = `/var/log/pods/${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}/${c.name}/${restart}.log`;
      if (opt.previous === true && restart < 0) {
        process.stderr.write(
          `Error from server (BadRequest): previous terminated container "${c.name}" in pod "${pod.metadata.name}" not found\n`,
        );
        return 1;
      }
      const read = (f: string) => {
        try {
          return fs.readFileSync(f, 'utf8');
        } catch {
          return undefined;
        }
      };
      // in CrashLoopBackOff no new instance exists yet: the newest one is the one that just exited
      let text =
        read(logFile) ??
        (opt.previous !== true && c.state.waiting?.reason === 'CrashLoopBackOff'
          ? read(logFile.replace(/\d+\.log$/, `${restart - 1}.log`))
          : undefined);
      if (text === undefined) {
        const w = c.state.waiting;
        if (w && opt.previous !== true) {
          process.stderr.write(
            `Error from server (BadRequest): container "${c.name}" in pod "${pod.metadata.name}" is waiting to start: ${w.reason ?? 'ContainerCreating'}\n`,
          );
          return 1;
        }
        text = '';
      }
      for (const line of text.split('\n')) if (line) out(`${line.split(' ').slice(3).join(' ')}\n`);
      return 0;
    }
    throw new Usage(
      `error: unknown command "${verb}" for "kubectl" (k3s STAND-IN supports get, apply, create, delete, wait, rollout status, logs, version)`,
    );
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
}

function parseDuration(s: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(s);
  if (!m) return 30;
  return Number(m[1]) * (m[2] === 'm' ? 60 : m[2] === 'h' ? 3600 : 1);
}
