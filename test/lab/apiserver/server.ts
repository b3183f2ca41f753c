// LAB STAND-IN: the HTTP(S) layer of the lab Kubernetes API server — discovery, CRUD, patch, apply,
// subresources, watch, authentication and RBAC — over the shared ObjectStore.
import { existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { authorize, decide, forbiddenMessage, requestName, TokenAuthority, type Attributes } from './auth.js';
import { garbageCollector, namespaceController, tokenController } from './controllers/core.js';
import { ApiError, badRequest, forbidden, methodNotAllowed, unauthorized, unsupportedMediaType } from './errors.js';
import { applyMergePatch, isObj } from './patch.js';
import { apiVersionOf } from './resources.js';
import { labelMatcher, fieldMatcher } from './selectors.js';
import { CONTROLLER_USER, ObjectStore, type StoreSnapshot } from './store.js';
import type {
  ApiServer,
  ApiServerOptions,
  Controller,
  ControllerContext,
  KubeObject,
  PatchType,
  ResourceType,
  UserInfo,
  VersionInfo,
  WriteOptions,
} from './types.js';

const DEFAULT_VERSION: VersionInfo = {
  major: '1',
  minor: '31',
  gitVersion: 'v1.31.4+k3s1',
  gitCommit: 'a562d090b0c2e5d5e6a8d2c7e1b3f0a9c8d7e6f5',
  gitTreeState: 'clean',
  buildDate: '2024-12-19T00:00:00Z',
  goVersion: 'go1.22.9',
  compiler: 'gc',
  platform: `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`,
};

const FAULTS_CONFIGMAP = 'lab-apiserver-faults';

interface Route {
  group: string;
  version: string;
  namespace?: string;
  plural: string;
  name?: string;
  subresource?: string;
}

/** `/api/v1/namespaces/x/secrets/y/status` → route parts (resource resolution happens later). */
function parseResourcePath(path: string, store: ObjectStore): Route | undefined {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) {
    group = '';
    version = parts[1] as string;
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    group = parts[1] as string;
    version = parts[2] as string;
    rest = parts.slice(3);
  } else return undefined;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const r = store.resourceByPlural(group, version, rest[2] as string);
    if (r?.namespaced) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
  }
  const [plural, name, subresource, ...extra] = rest;
  if (!plural || extra.length) return undefined;
  return {
    group,
    version,
    plural,
    ...(namespace !== undefined ? { namespace } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(subresource !== undefined ? { subresource } : {}),
  };
}

function patchTypeOf(contentType: string): PatchType | undefined {
  const ct = contentType.split(';')[0]?.trim().toLowerCase();
  if (ct === 'application/json-patch+json') return 'json';
  if (ct === 'application/merge-patch+json') return 'merge';
  if (ct === 'application/strategic-merge-patch+json') return 'strategic';
  if (ct === 'application/apply-patch+yaml' || ct === 'application/apply-patch+cbor') return 'apply';
  return undefined;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJsonBody(text: string): unknown {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(e as Error).message}`);
  }
}

function userFromCert(sock: TLSSocket): UserInfo | undefined {
  if (!sock.authorized) return undefined;
  const cert = sock.getPeerCertificate();
  if (!cert?.subject?.CN) return undefined;
  const cn = Array.isArray(cert.subject.CN) ? cert.subject.CN[0] : cert.subject.CN;
  const o = cert.subject.O;
  const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
  return { username: cn as string, groups: [...groups, 'system:authenticated'] };
}

export async function createApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const log = opts.log ?? (() => {});
  const store = new ObjectStore();
  const tokens = new TokenAuthority(opts.tls.key);
  const faults = new Map<string, string>();
  const rbac = opts.auth?.rbac !== false;
  const version = { ...DEFAULT_VERSION, ...(opts.version ?? {}) };
  const host = opts.host ?? '127.0.0.1';

  if (opts.dataFile && existsSync(opts.dataFile)) {
    store.restore(JSON.parse(readFileSync(opts.dataFile, 'utf8')) as StoreSnapshot);
    log(`restored ${store.snapshot().objects.length} objects from ${opts.dataFile}`);
  }
  let saveTimer: NodeJS.Timeout | undefined;
  const save = () => {
    saveTimer = undefined;
    if (!opts.dataFile) return;
    const tmp = `${opts.dataFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(store.snapshot()), { mode: 0o600 });
    renameSync(tmp, opts.dataFile);
  };
  store.onChange = () => {
    if (opts.dataFile && !saveTimer) saveTimer = setTimeout(save, 50);
  };

  // CRDs from files: created if missing, replaced if the file changed (like fsm-bootstrap's applyOrUpdateCRDs)
  for (const file of opts.crdFiles ?? []) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const crd = doc.toJS() as KubeObject | null;
      if (!crd || crd.kind !== 'CustomResourceDefinition') continue;
      const live = store.get('apiextensions.k8s.io/v1', 'CustomResourceDefinition', crd.metadata.name as string);
      if (live)
        store.update(
          { ...crd, metadata: { ...crd.metadata, resourceVersion: live.metadata.resourceVersion } },
          { fieldManager: 'lab-crd-loader' },
        );
      else store.create(crd, { fieldManager: 'lab-crd-loader' });
    }
  }

  const fault = (name: string): string | undefined => {
    const f = faults.get(name);
    if (f) return f;
    const cm = store.get('v1', 'ConfigMap', FAULTS_CONFIGMAP, 'kube-system');
    const v = (cm?.data as Record<string, string> | undefined)?.[name];
    return v ? v : undefined;
  };

  const issueToken = (namespace: string, serviceAccount: string, expirationSeconds = 3600): string => {
    const sa = store.get('v1', 'ServiceAccount', serviceAccount, namespace);
    if (!sa)
      throw new ApiError(404, 'NotFound', `serviceaccounts "${serviceAccount}" not found`, {
        name: serviceAccount,
        kind: 'serviceaccounts',
      });
    return tokens.issue(sa, { expirationSeconds }).token;
  };

  // ---------------------------------------------------------------- discovery
  const groupVersions = () => {
    const byGroup = new Map<string, string[]>();
    for (const r of store.allResources()) {
      if (!r.group) continue;
      const vs = byGroup.get(r.group) ?? [];
      if (!vs.includes(r.version)) vs.push(r.version);
      byGroup.set(r.group, vs);
    }
    return byGroup;
  };
  const apiGroup = (name: string, versions: string[]) => {
    const sorted = [...versions].sort(kubeVersionCompare);
    const gv = sorted.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
    return { name, versions: gv, preferredVersion: gv[0] };
  };
  const resourceList = (group: string, version: string) => {
    const rs = store.allResources().filter((r) => r.group === group && r.version === version);
    if (!rs.length) return undefined;
    const resources: unknown[] = [];
    for (const r of rs) {
      resources.push({
        name: r.plural,
        singularName: r.singular,
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: r.verbs,
        ...(r.shortNames ? { shortNames: r.shortNames } : {}),
        ...(r.categories ? { categories: r.categories } : {}),
      });
      for (const sub of r.subresources) {
        if (sub === 'status')
          resources.push({
            name: `${r.plural}/status`,
            singularName: '',
            namespaced: r.namespaced,
            kind: r.kind,
            verbs: ['get', 'patch', 'update'],
          });
        if (sub === 'scale')
          resources.push({
            name: `${r.plural}/scale`,
            singularName: '',
            namespaced: r.namespaced,
            group: 'autoscaling',
            version: 'v1',
            kind: 'Scale',
            verbs: ['get', 'patch', 'update'],
          });
        if (sub === 'token')
          resources.push({
            name: `${r.plural}/token`,
            singularName: '',
            namespaced: r.namespaced,
            group: 'authentication.k8s.io',
            version: 'v1',
            kind: 'TokenRequest',
            verbs: ['create'],
          });
      }
    }
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources };
  };

  // ---------------------------------------------------------------- request handling
  const send = (res: ServerResponse, code: number, body: unknown, warnings: string[] = []) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string | string[]> = {
      'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
      'Cache-Control': 'no-cache, private',
    };
    if (warnings.length) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
    res.writeHead(code, headers);
    res.end(text);
  };

  let advertised = '';

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://lab');
    const path = url.pathname;
    const q = url.searchParams;
    const method = (req.method ?? 'GET').toUpperCase();

    // authentication
    let user: UserInfo | undefined;
    const authz = req.headers.authorization;
    user = userFromCert(req.socket as TLSSocket);
    if (!user && authz?.toLowerCase().startsWith('bearer ')) {
      const tok = authz.slice(7).trim();
      user = opts.auth?.staticTokens?.[tok] ?? tokens.authenticate(tok, store);
    }
    if (!user) throw unauthorized();

    const check = (a: Attributes) => {
      if (!rbac) return;
      const d = decide(store, user as UserInfo, a);
      if (d.allowed) return;
      throw forbidden(
        forbiddenMessage(user as UserInfo, a, d.reason),
        a.path === undefined ? { ...(a.name ? { name: a.name } : {}), group: a.group ?? '', kind: a.resource ?? '' } : undefined,
      );
    };

    // non-resource endpoints
    if (/^\/(healthz|livez|readyz)(\/.*)?$/.test(path)) {
      check({ verb: 'get', path });
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed();
      // A busy server (a slow board importing images): the health answer comes, but late.
      const late = Number(fault('apiserver-health-delay'));
      if (late > 0) await new Promise((resolve) => setTimeout(resolve, late * 1000));
      const f = fault('apiserver-health');
      if (f) return send(res, 500, `[-]lab-fault failed: ${f}\n${path.slice(1)} check failed`);
      return send(res, 200, 'ok');
    }
    if (path === '/version' || path === '/version/') {
      check({ verb: 'get', path });
      return send(res, 200, version);
    }
    if (path === '/api' || path === '/api/') {
      check({ verb: 'get', path });
      return send(res, 200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: advertised.replace(/^https:\/\//, '') }],
      });
    }
    if (path === '/apis' || path === '/apis/') {
      check({ verb: 'get', path });
      const groups = [...groupVersions()].map(([g, vs]) => apiGroup(g, vs));
      return send(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups });
    }
    const gm = /^\/apis\/([^/]+)\/?$/.exec(path);
    if (gm) {
      check({ verb: 'get', path });
      const vs = groupVersions().get(gm[1] as string);
      if (!vs) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      return send(res, 200, { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(gm[1] as string, vs) });
    }
    const vm = /^\/api\/(v1)\/?$/.exec(path) ?? /^\/apis\/([^/]+\/[^/]+)\/?$/.exec(path);
    if (vm) {
      check({ verb: 'get', path });
      const gv = vm[1] as string;
      const [g, v] = gv.includes('/') ? (gv.split('/') as [string, string]) : ['', gv];
      const list = resourceList(g, v);
      if (!list) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      return send(res, 200, list);
    }

    const route = parseResourcePath(path, store);
    if (!route) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const r = store.resourceByPlural(route.group, route.version, route.plural);
    if (!r) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    if (route.subresource && !r.subresources.includes(route.subresource))
      throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const av = apiVersionOf(r);
    const ns = r.namespaced ? route.namespace : undefined;

    let verb: string;
    if (method === 'GET') verb = route.name ? 'get' : q.get('watch') === 'true' || q.get('watch') === '1' ? 'watch' : 'list';
    else if (method === 'POST') verb = 'create';
    else if (method === 'PUT') verb = 'update';
    else if (method === 'PATCH') verb = 'patch';
    else if (method === 'DELETE') verb = route.name ? 'delete' : 'deletecollection';
    else throw methodNotAllowed();
    if (!r.verbs.includes(verb) && !route.subresource) throw methodNotAllowed();
    const rbacName = requestName(verb, route.name, q.get('fieldSelector'));
    // requestinfo.go: for /api/v1/namespaces/<n> the request's namespace is <n> (a Role there may grant it)
    const rbacNs = ns ?? (r.group === '' && r.plural === 'namespaces' ? route.name : undefined);
    check({
      verb,
      group: r.group,
      resource: r.plural,
      ...(route.subresource ? { subresource: route.subresource } : {}),
      ...(rbacNs ? { namespace: rbacNs } : {}),
      ...(rbacName ? { name: rbacName } : {}),
    });

    const warnings: string[] = [];
    const fv = q.get('fieldValidation');
    const wopts: WriteOptions = {
      user,
      fieldManager: q.get('fieldManager') ?? managerFromAgent(req.headers['user-agent']),
      ...(q.get('force') === 'true' ? { force: true } : {}),
      ...(q.getAll('dryRun').includes('All') ? { dryRun: true } : {}),
      ...(fv === 'Strict' || fv === 'Warn' || fv === 'Ignore' ? { fieldValidation: fv } : {}),
      warnings,
    };
    if (q.has('force') && method !== 'PATCH') throw badRequest('force: Invalid value: true: may not be specified for non-apply patch');

    // special resources
    if (r.kind === 'SelfSubjectAccessReview' && method === 'POST') {
      const body = parseJsonBody(await readBody(req)) as {
        spec?: { resourceAttributes?: Record<string, string>; nonResourceAttributes?: { path: string; verb: string } };
      };
      const ra = body?.spec?.resourceAttributes;
      const nra = body?.spec?.nonResourceAttributes;
      const a: Attributes = nra
        ? { verb: nra.verb, path: nra.path }
        : {
            verb: ra?.verb ?? 'get',
            group: ra?.group ?? '',
            resource: ra?.resource ?? '',
            ...(ra?.subresource ? { subresource: ra.subresource } : {}),
            ...(ra?.namespace ? { namespace: ra.namespace } : {}),
            ...(ra?.name ? { name: ra.name } : {}),
          };
      const allowed = !rbac || authorize(store, user, a);
      return send(res, 201, {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SelfSubjectAccessReview',
        metadata: { creationTimestamp: null },
        spec: body?.spec ?? {},
        status: { allowed, ...(allowed ? {} : { reason: '' }) },
      });
    }
    if (route.subresource === 'token') {
      if (method !== 'POST') throw methodNotAllowed();
      const body = (parseJsonBody(await readBody(req)) ?? {}) as { spec?: { expirationSeconds?: number; audiences?: string[] } };
      const sa = store.getOrThrow(r, route.name as string, ns);
      const exp = Math.max(600, Math.min(body.spec?.expirationSeconds ?? 3600, 48 * 3600));
      const t = tokens.issue(sa, { expirationSeconds: exp, ...(body.spec?.audiences?.length ? { audiences: body.spec.audiences } : {}) });
      return send(res, 201, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        metadata: { name: route.name, namespace: ns, creationTimestamp: null },
        spec: {
          audiences: body.spec?.audiences ?? ['https://kubernetes.default.svc.cluster.local'],
          expirationSeconds: exp,
          boundObjectRef: null,
        },
        status: { token: t.token, expirationTimestamp: new Date((t.exp as number) * 1000).toISOString().replace(/\.\d+Z$/, 'Z') },
      });
    }
    if (route.subresource === 'scale') {
      const obj = store.getOrThrow(r, route.name as string, ns);
      const spec = (obj.spec ?? {}) as Record<string, unknown>;
      const scaleOf = (o: KubeObject) => ({
        kind: 'Scale',
        apiVersion: 'autoscaling/v1',
        metadata: {
          name: o.metadata.name,
          namespace: o.metadata.namespace,
          uid: o.metadata.uid,
          resourceVersion: o.metadata.resourceVersion,
          creationTimestamp: o.metadata.creationTimestamp,
        },
        spec: { replicas: (o.spec as Record<string, unknown>)?.replicas ?? 0 },
        status: { replicas: (o.status as Record<string, unknown> | undefined)?.replicas ?? 0 },
      });
      if (method === 'GET') return send(res, 200, scaleOf(obj));
      const body = parseJsonBody(await readBody(req)) as { spec?: { replicas?: number } } | undefined;
      let replicas = body?.spec?.replicas;
      if (method === 'PATCH') {
        const cur = scaleOf(obj);
        const type = patchTypeOf(req.headers['content-type'] ?? '');
        replicas = (applyMergePatch(cur, body) as { spec: { replicas: number } }).spec.replicas;
        if (type === 'json')
          throw unsupportedMediaType('application/json-patch+json', [
            'application/merge-patch+json',
            'application/strategic-merge-patch+json',
          ]);
      }
      if (typeof replicas !== 'number') throw badRequest('spec.replicas is required');
      spec.replicas = replicas;
      return send(res, 200, scaleOf(store.update({ ...obj, spec }, wopts)));
    }

    switch (verb) {
      case 'get': {
        return send(res, 200, store.getOrThrow(r, route.name as string, ns));
      }
      case 'list': {
        const items = store.list(av, r.kind, {
          ...(ns ? { namespace: ns } : {}),
          ...(q.get('labelSelector') ? { labelSelector: q.get('labelSelector') as string } : {}),
          ...(q.get('fieldSelector') ? { fieldSelector: q.get('fieldSelector') as string } : {}),
        });
        return send(res, 200, { apiVersion: av, kind: r.listKind, metadata: { resourceVersion: store.resourceVersion }, items });
      }
      case 'watch':
        return watch(r, ns, q, res);
      case 'create': {
        if (route.name && !route.subresource) throw methodNotAllowed();
        const body = parseJsonBody(await readBody(req));
        const obj = normalizeBody(body, r, ns);
        const created = store.create(obj, wopts);
        return send(res, 201, created, warnings);
      }
      case 'update': {
        if (!route.name) throw methodNotAllowed();
        const obj = normalizeBody(parseJsonBody(await readBody(req)), r, ns);
        if (obj.metadata.name !== route.name)
          throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${route.name})`);
        const subresource = route.subresource === 'status' ? { subresource: 'status' as const } : {};
        return send(res, 200, store.update(obj, { ...wopts, ...subresource }), warnings);
      }
      case 'patch': {
        if (!route.name) throw methodNotAllowed();
        const ct = req.headers['content-type'] ?? '';
        const type = patchTypeOf(ct);
        if (!type)
          throw unsupportedMediaType(ct, [
            'application/json-patch+json',
            'application/merge-patch+json',
            'application/apply-patch+yaml',
            ...(r.custom ? [] : ['application/strategic-merge-patch+json']),
          ]);
        if (wopts.force && type !== 'apply') throw badRequest('force: Invalid value: true: may not be specified for non-apply patch');
        const text = await readBody(req);
        let patch: unknown;
        if (type === 'apply') {
          if (!q.get('fieldManager')) throw badRequest('PATCH, field manager is required for apply requests');
          try {
            patch = parseYaml(text);
          } catch (e) {
            throw badRequest(`error decoding YAML: ${(e as Error).message}`);
          }
        } else patch = parseJsonBody(text);
        const existed = !!store.get(av, r.kind, route.name, ns);
        const subresource = route.subresource === 'status' ? { subresource: 'status' as const } : {};
        const out = store.patch(av, r.kind, route.name, ns, patch, type, { ...wopts, ...subresource });
        return send(res, type === 'apply' && !existed ? 201 : 200, out, warnings);
      }
      case 'delete': {
        const body = parseJsonBody(await readBody(req)) as
          | { preconditions?: { uid?: string; resourceVersion?: string }; dryRun?: string[] }
          | undefined;
        const pre = body?.preconditions;
        if (pre) {
          const cur = store.getOrThrow(r, route.name as string, ns);
          if ((pre.uid && pre.uid !== cur.metadata.uid) || (pre.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion))
            throw new ApiError(
              409,
              'Conflict',
              `Operation cannot be fulfilled on ${r.plural}${r.group ? '.' + r.group : ''} "${route.name}": Precondition failed: UID in precondition: ${pre.uid ?? ''}, UID in object meta: ${cur.metadata.uid}`,
            );
        }
        const out = store.delete(av, r.kind, route.name as string, ns, {
          ...wopts,
          ...(body?.dryRun?.includes('All') ? { dryRun: true } : {}),
        });
        const pending = !!out.metadata.deletionTimestamp;
        if (!pending && !r.custom && r.kind !== 'Namespace')
          return send(res, 200, {
            kind: 'Status',
            apiVersion: 'v1',
            metadata: {},
            status: 'Success',
            details: { name: route.name, group: r.group, kind: r.plural, uid: out.metadata.uid },
          });
        return send(res, pending ? 202 : 200, out);
      }
      case 'deletecollection': {
        const lm = labelMatcher(q.get('labelSelector') ?? undefined);
        const fm = fieldMatcher(q.get('fieldSelector') ?? undefined);
        const items = store.list(av, r.kind, ns ? { namespace: ns } : {}).filter((o) => lm(o) && fm(o));
        for (const o of items) store.delete(av, r.kind, o.metadata.name as string, o.metadata.namespace, wopts);
        return send(res, 200, { apiVersion: av, kind: r.listKind, metadata: { resourceVersion: store.resourceVersion }, items });
      }
    }
    throw methodNotAllowed();
  };

  const watch = (r: ResourceType, ns: string | undefined, q: URLSearchParams, res: ServerResponse) => {
    const av = apiVersionOf(r);
    const sel = {
      ...(ns ? { namespace: ns } : {}),
      ...(q.get('labelSelector') ? { labelSelector: q.get('labelSelector') as string } : {}),
      ...(q.get('fieldSelector') ? { fieldSelector: q.get('fieldSelector') as string } : {}),
    };
    const since = q.get('resourceVersion') ?? '';
    const lines: string[] = [];
    // no resourceVersion (or "0"): synthetic ADDED for what exists, then changes; else replay from there
    if (!since || since === '0') for (const o of store.list(av, r.kind, sel)) lines.push(JSON.stringify({ type: 'ADDED', object: o }));
    let live = false;
    let unsubscribe: () => void;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders(); // like kube-apiserver: a client sees the watch established before the first event
    try {
      unsubscribe = store.watch(av, r.kind, (ev) => (live ? res.write(JSON.stringify(ev) + '\n') : lines.push(JSON.stringify(ev))), {
        ...sel,
        ...(since && since !== '0' ? { sinceResourceVersion: since } : {}),
      });
    } catch (e) {
      // like kube-apiserver: an expired resourceVersion is an ERROR event in the stream, not an HTTP error
      if (!(e instanceof ApiError)) throw e;
      res.end(JSON.stringify({ type: 'ERROR', object: e.status }) + '\n');
      return;
    }
    for (const l of lines) res.write(l + '\n');
    live = true;
    const timeout = Number(q.get('timeoutSeconds') ?? '0');
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    const done = () => {
      unsubscribe();
      if (timer) clearTimeout(timer);
      watchers.delete(res);
    };
    watchers.add(res);
    res.on('close', done);
  };
  const watchers = new Set<ServerResponse>();

  const server = createHttpsServer(
    { cert: opts.tls.cert, key: opts.tls.key, ca: opts.tls.ca, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      handle(req, res).catch((e: unknown) => {
        if (res.headersSent) return res.end();
        if (e instanceof ApiError) {
          log(`${req.method} ${req.url} → ${e.code} ${e.message}`);
          return send(res, e.code, e.status);
        }
        log(`${req.method} ${req.url} → 500 ${(e as Error).stack ?? e}`);
        send(res, 500, {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: `Internal error occurred: ${(e as Error).message}`,
          reason: 'InternalError',
          code: 500,
        });
      });
    },
  );
  server.keepAliveTimeout = 30_000;

  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 6443, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  advertised = opts.advertiseUrl ?? url;

  let unixServer: NetServer | undefined;
  if (opts.unixSocket) {
    const sockPath = opts.unixSocket;
    if (existsSync(sockPath)) unlinkSync(sockPath);
    const u = createNetServer((sock) => server.emit('connection', sock));
    unixServer = u;
    await new Promise<void>((resolve, reject) => {
      u.once('error', reject);
      u.listen(sockPath, () => resolve());
    });
  }

  // controllers: the built-in ones first (they seed namespaces), then the caller's
  const ctx: ControllerContext = { store, url: advertised, caPem: opts.tls.ca, issueToken, fault, log };
  const controllers: Controller[] = [
    namespaceController(store),
    tokenController(store, tokens),
    garbageCollector(store),
    ...(opts.controllers ?? []),
  ];
  store.admission = controllers.filter((c) => c.admit);
  for (const c of controllers) await c.start(ctx);
  log(`lab apiserver listening on ${url}${opts.unixSocket ? ` and ${opts.unixSocket}` : ''}`);

  return {
    url,
    port,
    store,
    faults,
    issueToken,
    async close() {
      for (const c of [...controllers].reverse()) await c.stop?.();
      for (const w of watchers) w.end();
      if (saveTimer) {
        clearTimeout(saveTimer);
        save();
      }
      server.closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (unixServer) await new Promise<void>((resolve) => (unixServer as NetServer).close(() => resolve()));
    },
  };
}

/** kubectl-like default field manager from the user agent (`kubectl/v1.31…` → `kubectl`). */
function managerFromAgent(agent: string | undefined): string {
  const a = (agent ?? 'unknown').split('/')[0] ?? 'unknown';
  return a.slice(0, 128) || 'unknown';
}

/** Fill apiVersion/kind/namespace from the URL like the typed endpoints do, refuse mismatches. */
function normalizeBody(body: unknown, r: ResourceType, ns: string | undefined): KubeObject {
  if (!isObj(body)) throw badRequest('the request body must be a JSON object');
  const obj = body as KubeObject;
  const av = apiVersionOf(r);
  obj.apiVersion ??= av;
  obj.kind ??= r.kind;
  if (obj.kind !== r.kind)
    throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${av})`);
  if (obj.apiVersion !== av) {
    const g = obj.apiVersion.includes('/') ? obj.apiVersion.split('/')[0] : '';
    if (g !== r.group) throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${av})`);
    obj.apiVersion = av;
  }
  obj.metadata = isObj(obj.metadata) ? obj.metadata : {};
  if (r.namespaced) {
    if (obj.metadata.namespace && ns && obj.metadata.namespace !== ns)
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    if (ns) obj.metadata.namespace = ns;
  }
  return obj;
}

/** Kubernetes version priority: GA > beta > alpha, higher numbers first. */
function kubeVersionCompare(a: string, b: string): number {
  const parse = (v: string) => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [0, 0, 0];
    return [m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1, Number(m[1]), Number(m[3] ?? 0)];
  };
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if ((x[i] as number) !== (y[i] as number)) return (y[i] as number) - (x[i] as number);
  return 0;
}

export { CONTROLLER_USER };
