// Validation and defaulting of the built-in kinds — only what kube-apiserver would refuse that an installer
// could plausibly send wrong; everything else is stored as data.
import { randomInt } from 'node:crypto';
import type { StatusCause } from './errors.js';
import { isObj } from './patch.js';
import type { KubeObject, ResourceType } from './types.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Kinds whose names must be DNS-1123 labels rather than subdomains. */
const LABEL_NAMED = new Set(['Namespace', 'Service']);

export function validateMeta(r: ResourceType, obj: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const name = obj.metadata.name ?? '';
  if (!name)
    causes.push({ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' });
  else if (LABEL_NAMED.has(r.kind) && !r.custom) {
    if (name.length > 63 || !DNS1123_LABEL.test(name))
      causes.push({
        reason: 'FieldValueInvalid',
        message: `Invalid value: "${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
        field: 'metadata.name',
      });
  } else if (r.kind === 'ClusterRole' || r.kind === 'Role' || r.kind === 'RoleBinding' || r.kind === 'ClusterRoleBinding') {
    if (name.includes('/') || name.includes('%') || name === '.' || name === '..')
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: "${name}": may not contain '/' or '%'`, field: 'metadata.name' });
  } else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    causes.push({
      reason: 'FieldValueInvalid',
      message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
      field: 'metadata.name',
    });
  }
  for (const [k, v] of Object.entries(obj.metadata.labels ?? {})) {
    if (!QUALIFIED_NAME.test(k))
      causes.push({
        reason: 'FieldValueInvalid',
        message: `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`,
        field: 'metadata.labels',
      });
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v))
      causes.push({
        reason: 'FieldValueInvalid',
        message: `Invalid value: ${JSON.stringify(v)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
        field: `metadata.labels`,
      });
  }
  for (const [k, v] of Object.entries(obj.metadata.annotations ?? {})) {
    if (typeof v !== 'string')
      causes.push({
        reason: 'FieldValueTypeInvalid',
        message: `Invalid value: ${JSON.stringify(v)}: annotation values must be strings`,
        field: `metadata.annotations[${k}]`,
      });
  }
  return causes;
}

function randomClusterIp(): string {
  return `10.43.${randomInt(0, 255)}.${randomInt(1, 254)}`;
}

/** Defaulting and validation per kind. Mutates `obj`. `old` is set on update. */
export function prepareBuiltin(r: ResourceType, obj: KubeObject, old: KubeObject | undefined): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = isObj(obj.spec) ? obj.spec : undefined;
  switch (r.kind) {
    case 'Secret': {
      obj.type ??= old?.type ?? 'Opaque';
      if (old && old.type !== obj.type)
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${JSON.stringify(obj.type)}: field is immutable`,
          field: 'type',
        });
      const data = (isObj(obj.data) ? obj.data : {}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(data)) {
        if (typeof v !== 'string' || v.length % 4 !== 0 || !BASE64.test(v))
          causes.push({
            reason: 'FieldValueInvalid',
            message: `Invalid value: ${JSON.stringify(v)}: illegal base64 data`,
            field: `data[${k}]`,
          });
      }
      if (isObj(obj.stringData)) {
        for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(String(v)).toString('base64');
        delete obj.stringData;
      }
      if (Object.keys(data).length) obj.data = data;
      if (obj.type === 'kubernetes.io/service-account-token' && !obj.metadata.annotations?.['kubernetes.io/service-account.name'])
        causes.push({
          reason: 'FieldValueRequired',
          message: 'Required value',
          field: 'metadata.annotations[kubernetes.io/service-account.name]',
        });
      if (old?.immutable === true && JSON.stringify(old.data) !== JSON.stringify(obj.data))
        causes.push({ reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set', field: 'data' });
      break;
    }
    case 'ConfigMap':
      if (old?.immutable === true && JSON.stringify(old.data) !== JSON.stringify(obj.data))
        causes.push({ reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set', field: 'data' });
      break;
    case 'Service': {
      const s = (spec ?? {}) as Record<string, unknown>;
      obj.spec = s;
      s.type ??= 'ClusterIP';
      if (s.clusterIP === undefined)
        s.clusterIP =
          (old?.spec as Record<string, unknown> | undefined)?.clusterIP ?? (s.type === 'ExternalName' ? undefined : randomClusterIp());
      if (s.type !== 'ExternalName' && (!Array.isArray(s.ports) || s.ports.length === 0) && s.clusterIP !== 'None')
        causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.ports' });
      break;
    }
    case 'Namespace':
      obj.spec = { finalizers: ['kubernetes'], ...(spec ?? {}) };
      obj.status = { phase: 'Active', ...(isObj(obj.status) ? obj.status : {}) };
      obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name ?? '' };
      break;
    case 'Deployment':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'StatefulSet': {
      const sel = spec?.selector;
      if (!isObj(sel)) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.selector' });
      const tmpl = (spec?.template as { metadata?: { labels?: Record<string, string> } } | undefined)?.metadata?.labels ?? {};
      const ml = (isObj(sel) ? (sel.matchLabels as Record<string, string> | undefined) : undefined) ?? {};
      if (isObj(sel) && Object.entries(ml).some(([k, v]) => tmpl[k] !== v))
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${JSON.stringify(tmpl)}: \`selector\` does not match template \`labels\``,
          field: 'spec.template.metadata.labels',
        });
      if (old && JSON.stringify((old.spec as Record<string, unknown>)?.selector) !== JSON.stringify(sel))
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${JSON.stringify(sel)}: field is immutable`,
          field: 'spec.selector',
        });
      if (r.kind === 'Deployment' && spec && spec.replicas === undefined) spec.replicas = 1;
      break;
    }
    case 'Job': {
      if (!spec || !isObj(spec.template)) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.template' });
      if (spec) {
        spec.backoffLimit ??= 6;
        spec.completions ??= 1;
        spec.parallelism ??= 1;
      }
      break;
    }
    case 'Role':
    case 'ClusterRole':
      causes.push(...policyRuleCauses(obj, r.kind === 'Role'));
      break;
    case 'RoleBinding':
    case 'ClusterRoleBinding': {
      const ref = obj.roleRef as Record<string, unknown> | undefined;
      if (!isObj(ref) || !ref.name || !ref.kind) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: 'roleRef' });
      else if (old && JSON.stringify(old.roleRef) !== JSON.stringify(ref))
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${JSON.stringify(ref)}: cannot change roleRef`,
          field: 'roleRef',
        });
      else causes.push(...bindingCauses(obj, r.kind === 'RoleBinding'));
      break;
    }
    case 'CustomResourceDefinition': {
      const s = spec as Record<string, unknown> | undefined;
      const names = s?.names as Record<string, unknown> | undefined;
      if (!s?.group || !names?.plural || !names?.kind)
        causes.push({
          reason: 'FieldValueRequired',
          message: 'Required value: group, names.plural and names.kind are required',
          field: 'spec',
        });
      else if (obj.metadata.name !== `${names.plural}.${s.group}`)
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: "${obj.metadata.name}": must be spec.names.plural+"."+spec.group`,
          field: 'metadata.name',
        });
      if (!Array.isArray(s?.versions) || (s.versions as unknown[]).length === 0)
        causes.push({
          reason: 'FieldValueRequired',
          message: 'Required value: must have exactly one version marked as storage version',
          field: 'spec.versions',
        });
      break;
    }
  }
  return causes;
}

/** pkg/apis/rbac/validation/validation.go ValidatePolicyRule (Role: isNamespaced). */
function policyRuleCauses(obj: KubeObject, namespaced: boolean): StatusCause[] {
  const causes: StatusCause[] = [];
  const rules = (obj.rules ?? []) as Array<Record<string, string[] | undefined>>;
  if (!Array.isArray(rules)) return [{ reason: 'FieldValueInvalid', message: 'Invalid value: rules must be a list', field: 'rules' }];
  rules.forEach((rule, i) => {
    const at = `rules[${i}]`;
    const len = (k: string) => (Array.isArray(rule[k]) ? (rule[k] as string[]).length : 0);
    if (!len('verbs'))
      causes.push({ reason: 'FieldValueRequired', message: 'Required value: verbs must contain at least one value', field: `${at}.verbs` });
    if (len('nonResourceURLs')) {
      const v = JSON.stringify(rule.nonResourceURLs);
      if (namespaced)
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${v}: namespaced rules cannot apply to non-resource URLs`,
          field: `${at}.nonResourceURLs`,
        });
      if (len('apiGroups') || len('resources') || len('resourceNames'))
        causes.push({
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${v}: rules cannot apply to both regular resources and non-resource URLs`,
          field: `${at}.nonResourceURLs`,
        });
      return;
    }
    if (!len('apiGroups'))
      causes.push({
        reason: 'FieldValueRequired',
        message: 'Required value: resource rules must supply at least one api group',
        field: `${at}.apiGroups`,
      });
    if (!len('resources'))
      causes.push({
        reason: 'FieldValueRequired',
        message: 'Required value: resource rules must supply at least one resource',
        field: `${at}.resources`,
      });
  });
  return causes;
}

/** pkg/apis/rbac/validation/validation.go ValidateRoleBinding / ValidateClusterRoleBinding / ValidateRoleBindingSubject. */
function bindingCauses(obj: KubeObject, namespaced: boolean): StatusCause[] {
  const causes: StatusCause[] = [];
  const ref = obj.roleRef as { apiGroup?: string; kind: string; name: string };
  if (ref.apiGroup !== 'rbac.authorization.k8s.io')
    causes.push({
      reason: 'FieldValueNotSupported',
      message: `Unsupported value: "${ref.apiGroup ?? ''}": supported values: "rbac.authorization.k8s.io"`,
      field: 'roleRef.apiGroup',
    });
  const kinds = namespaced ? ['Role', 'ClusterRole'] : ['ClusterRole'];
  if (!kinds.includes(ref.kind))
    causes.push({
      reason: 'FieldValueNotSupported',
      message: `Unsupported value: "${ref.kind}": supported values: ${kinds.map((k) => `"${k}"`).join(', ')}`,
      field: 'roleRef.kind',
    });
  ((obj.subjects ?? []) as Array<Record<string, string | undefined>>).forEach((sub, i) => {
    const at = `subjects[${i}]`;
    if (!sub.name) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: `${at}.name` });
    if (sub.kind === 'ServiceAccount') {
      if (sub.apiGroup)
        causes.push({
          reason: 'FieldValueNotSupported',
          message: `Unsupported value: "${sub.apiGroup}": supported values: ""`,
          field: `${at}.apiGroup`,
        });
      if (!namespaced && !sub.namespace) causes.push({ reason: 'FieldValueRequired', message: 'Required value', field: `${at}.namespace` });
    } else if (sub.kind !== 'User' && sub.kind !== 'Group')
      causes.push({
        reason: 'FieldValueNotSupported',
        message: `Unsupported value: "${sub.kind ?? ''}": supported values: "ServiceAccount", "User", "Group"`,
        field: `${at}.kind`,
      });
  });
  return causes;
}

/** Kinds whose status a create resets (the strategies' PrepareForCreate). */
export function statusResetOnCreate(r: ResourceType): unknown {
  if (r.custom) return r.subresources.includes('status') ? null : undefined;
  switch (r.kind) {
    case 'Deployment':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'StatefulSet':
    case 'Job':
    case 'CronJob':
      return {};
    case 'Pod':
      return { phase: 'Pending', qosClass: 'BestEffort' };
    case 'Service':
      return { loadBalancer: {} };
    default:
      return undefined;
  }
}
