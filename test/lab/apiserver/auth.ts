// Authentication (client certificates, ServiceAccount tokens, static tokens) and RBAC authorization.
// SA tokens are JWTs (HS256, keyed from the serving key so they survive restarts); like kube-apiserver, a
// token only authenticates while its ServiceAccount (same uid) and, for legacy tokens, its Secret exist.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { ObjectStore } from './store.js';
import type { KubeObject, UserInfo } from './types.js';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

interface Claims {
  iss: string;
  sub: string;
  aud: string[];
  iat: number;
  nbf: number;
  exp?: number;
  'kubernetes.io': { namespace: string; serviceaccount: { name: string; uid: string }; secret?: { name: string; uid: string } };
}

export class TokenAuthority {
  private readonly key: Buffer;
  constructor(servingKeyPem: string) {
    this.key = createHash('sha256').update('lab-apiserver-sa-tokens\n').update(servingKeyPem).digest();
  }

  sign(claims: Claims): string {
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'lab' }));
    const body = b64url(JSON.stringify(claims));
    const sig = createHmac('sha256', this.key).update(`${head}.${body}`).digest();
    return `${head}.${body}.${b64url(sig)}`;
  }

  verify(token: string): Claims | undefined {
    const parts = token.split('.');
    if (parts.length !== 3) return undefined;
    const [head, body, sig] = parts as [string, string, string];
    const want = createHmac('sha256', this.key).update(`${head}.${body}`).digest();
    const got = Buffer.from(sig, 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined;
    try {
      const c = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Claims;
      if (c.exp !== undefined && c.exp * 1000 < Date.now()) return undefined;
      return c;
    } catch {
      return undefined;
    }
  }

  /** Token for a ServiceAccount (TokenRequest when `expirationSeconds` is set, legacy secret token otherwise). */
  issue(sa: KubeObject, opts: { expirationSeconds?: number; secret?: KubeObject; audiences?: string[] }): { token: string; exp?: number } {
    const iat = Math.floor(Date.now() / 1000);
    const exp = opts.expirationSeconds !== undefined ? iat + opts.expirationSeconds : undefined;
    const claims: Claims = {
      iss: ISSUER,
      sub: `system:serviceaccount:${sa.metadata.namespace}:${sa.metadata.name}`,
      aud: opts.audiences ?? [ISSUER],
      iat,
      nbf: iat,
      ...(exp !== undefined ? { exp } : {}),
      'kubernetes.io': {
        namespace: sa.metadata.namespace as string,
        serviceaccount: { name: sa.metadata.name as string, uid: sa.metadata.uid as string },
        ...(opts.secret ? { secret: { name: opts.secret.metadata.name as string, uid: opts.secret.metadata.uid as string } } : {}),
      },
    };
    return { token: this.sign(claims), ...(exp !== undefined ? { exp } : {}) };
  }

  /** The user a bearer token stands for, or undefined (→ 401). */
  authenticate(token: string, store: ObjectStore): UserInfo | undefined {
    const c = this.verify(token);
    if (!c) return undefined;
    const k = c['kubernetes.io'];
    const sa = store.get('v1', 'ServiceAccount', k.serviceaccount.name, k.namespace);
    if (!sa || sa.metadata.uid !== k.serviceaccount.uid) return undefined;
    if (k.secret) {
      const sec = store.get('v1', 'Secret', k.secret.name, k.namespace);
      if (!sec || sec.metadata.uid !== k.secret.uid) return undefined;
    }
    return {
      username: c.sub,
      uid: k.serviceaccount.uid,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${k.namespace}`, 'system:authenticated'],
    };
  }
}

export interface Attributes {
  verb: string;
  /** Resource request: group/resource/subresource/namespace/name. */
  group?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** Non-resource request path (`/version`). */
  path?: string;
}

interface PolicyRule {
  verbs?: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

interface Subject {
  kind: string;
  name: string;
  namespace?: string;
}

// Subjects: plugin/pkg/auth/authorizer/rbac/rbac.go appliesToUser — a ServiceAccount subject without a
// namespace takes the binding's; none at all (ClusterRoleBinding) matches nobody.
function subjectMatches(s: Subject, user: UserInfo, bindingNs: string | undefined): boolean {
  if (s.kind === 'User') return s.name === user.username;
  if (s.kind === 'Group') return user.groups.includes(s.name);
  if (s.kind === 'ServiceAccount') {
    const ns = s.namespace || bindingNs;
    return !!ns && user.username === `system:serviceaccount:${ns}:${s.name}`;
  }
  return false;
}

// pkg/apis/rbac/v1/evaluation_helpers.go (VerbMatches, APIGroupMatches, ResourceMatches, ResourceNameMatches,
// NonResourceURLMatches) via plugin/pkg/auth/authorizer/rbac/rbac.go RuleAllows. Only `*` and `*/<subresource>`
// are wildcards for resources: `deployments/*` matches nothing but itself upstream, so not here either.
function ruleAllows(rule: PolicyRule, a: Attributes): boolean {
  const has = (list: string[] | undefined, v: string) => !!list && (list.includes('*') || list.includes(v));
  if (!has(rule.verbs, a.verb)) return false;
  if (a.path !== undefined)
    return !!rule.nonResourceURLs?.some(
      (u) => u === '*' || u === a.path || (u.endsWith('*') && (a.path as string).startsWith(u.slice(0, -1))),
    );
  if (!has(rule.apiGroups, a.group ?? '')) return false;
  const res = a.subresource ? `${a.resource}/${a.subresource}` : (a.resource as string);
  const resOk = !!rule.resources?.some((r) => r === '*' || r === res || (!!a.subresource && r === `*/${a.subresource}`));
  if (!resOk) return false;
  if (rule.resourceNames?.length) return !!a.name && rule.resourceNames.includes(a.name);
  return true;
}

/** Paths every authenticated user may read (system:discovery, system:public-info-viewer, system:basic-user). */
const PUBLIC_PATHS = [
  /^\/api(\/v1)?\/?$/,
  /^\/apis(\/[^/]+(\/[^/]+)?)?\/?$/,
  /^\/version\/?$/,
  /^\/(healthz|livez|readyz)(\/.*)?$/,
  /^\/openapi\//,
];

export interface Decision {
  allowed: boolean;
  /** Why RBAC could not decide fully (a binding to a missing role), as kube-apiserver appends it to the 403. */
  reason: string;
}

export function authorize(store: ObjectStore, user: UserInfo, a: Attributes): boolean {
  return decide(store, user, a).allowed;
}

/**
 * plugin/pkg/auth/authorizer/rbac/rbac.go Authorize + pkg/registry/rbac/validation/rule.go VisitRulesFor:
 * ClusterRoleBindings first, then the RoleBindings of the request's namespace; a binding whose role is missing
 * grants nothing and is reported as `RBAC: <kind>.rbac.authorization.k8s.io "<name>" not found`.
 */
export function decide(store: ObjectStore, user: UserInfo, a: Attributes): Decision {
  if (user.groups.includes('system:masters')) return { allowed: true, reason: '' };
  if (a.path !== undefined && PUBLIC_PATHS.some((re) => re.test(a.path as string))) return { allowed: true, reason: '' };
  if (a.group === 'authorization.k8s.io' && (a.resource === 'selfsubjectaccessreviews' || a.resource === 'selfsubjectrulesreviews'))
    return { allowed: true, reason: '' };
  const errors: string[] = [];
  const rulesOf = (kind: string, name: string, ns?: string): PolicyRule[] => {
    const role =
      kind === 'ClusterRole'
        ? store.get('rbac.authorization.k8s.io/v1', 'ClusterRole', name)
        : kind === 'Role' && ns
          ? store.get('rbac.authorization.k8s.io/v1', 'Role', name, ns)
          : undefined;
    if (!role) {
      errors.push(`${kind.toLowerCase()}.rbac.authorization.k8s.io "${name}" not found`);
      return [];
    }
    return (role.rules as PolicyRule[] | undefined) ?? [];
  };
  for (const b of store.list('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding')) {
    if (!((b.subjects as Subject[] | undefined) ?? []).some((s) => subjectMatches(s, user, undefined))) continue;
    const ref = b.roleRef as { kind: string; name: string };
    if (rulesOf('ClusterRole', ref.name).some((r) => ruleAllows(r, a))) return { allowed: true, reason: '' };
  }
  if (a.namespace && a.path === undefined) {
    for (const b of store.list('rbac.authorization.k8s.io/v1', 'RoleBinding', { namespace: a.namespace })) {
      if (!((b.subjects as Subject[] | undefined) ?? []).some((s) => subjectMatches(s, user, a.namespace))) continue;
      const ref = b.roleRef as { kind: string; name: string };
      if (rulesOf(ref.kind, ref.name, a.namespace).some((r) => ruleAllows(r, a))) return { allowed: true, reason: '' };
    }
  }
  const reason = errors.length === 0 ? '' : `RBAC: ${errors.length === 1 ? errors[0] : `[${errors.join(', ')}]`}`;
  return { allowed: false, reason };
}

/**
 * kube-apiserver's 403 wording: k8s.io/apiserver pkg/endpoints/handlers/responsewriters/errors.go
 * ForbiddenStatusError, wrapped by k8s.io/apimachinery pkg/api/errors/errors.go NewForbidden.
 */
export function forbiddenMessage(user: UserInfo, a: Attributes, reason = ''): string {
  const why = reason ? `: ${reason}` : '';
  if (a.path !== undefined) return `forbidden: User "${user.username}" cannot ${a.verb} path "${a.path}"${why}`;
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const what = a.name
    ? `${a.resource}${a.group ? '.' + a.group : ''} "${a.name}" is forbidden`
    : `${a.resource}${a.group ? '.' + a.group : ''} is forbidden`;
  const scope = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
  return `${what}: User "${user.username}" cannot ${a.verb} resource "${res}" in API group "${a.group ?? ''}" ${scope}${why}`;
}

/**
 * The name RBAC sees for a request (k8s.io/apiserver pkg/endpoints/request/requestinfo.go GetRequestInfo):
 * the path's name, or for list/watch a field selector `metadata.name=<n>` (so resourceNames can allow one object's
 * informer). For the `namespaces` resource the namespace is the name itself.
 */
export function requestName(verb: string, pathName: string | undefined, fieldSelector: string | null): string | undefined {
  if (pathName !== undefined) return pathName;
  if ((verb !== 'list' && verb !== 'watch') || !fieldSelector) return undefined;
  const terms = fieldSelector
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  // RequiresExactMatch: a term metadata.name=X or metadata.name==X (other terms may be present too)
  for (const t of terms) {
    const m = /^metadata\.name(==?)(.*)$/.exec(t);
    if (m && m[2] && !/[/%]/.test(m[2]) && m[2] !== '.' && m[2] !== '..') return m[2];
  }
  return undefined;
}
