// Validation of custom resources against their CRD's openAPIV3Schema, the way kube-apiserver does it:
// prune unknown fields (unless x-kubernetes-preserve-unknown-fields), apply defaults, then validate and
// report each violation as a Status cause naming the field (`spec.gatewayPort`).
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { StatusCause } from './errors.js';

type Schema = Record<string, unknown>;

const INT32 = { type: 'number' as const, validate: (n: number) => Number.isInteger(n) && n >= -2147483648 && n <= 2147483647 };
const INT64 = { type: 'number' as const, validate: (n: number) => Number.isInteger(n) };
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const DURATION = /^([+-]?(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$|^0$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const KNOWN_FORMATS: Record<string, unknown> = {
  int32: INT32,
  int64: INT64,
  'date-time': DATE_TIME,
  duration: DURATION,
  byte: { type: 'string' as const, validate: (s: string) => s.length % 4 === 0 && BASE64.test(s) },
  float: true,
  double: true,
  password: true,
};

function createAjv(): Ajv {
  // strict:false — CRD schemas carry x-kubernetes-* and description keywords Ajv does not know.
  return new Ajv({ strict: false, allErrors: true, useDefaults: true, formats: KNOWN_FORMATS as never });
}

/** Turn a structural CRD schema into JSON Schema Ajv understands (int-or-string, unknown formats). */
export function toJsonSchema(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(toJsonSchema);
  if (!s || typeof s !== 'object') return s;
  const src = s as Schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(src)) {
    if (k === 'x-kubernetes-validations' || k === 'description' || k === 'example') continue;
    if (k === 'properties' || k === 'patternProperties' || k === 'definitions') {
      out[k] = Object.fromEntries(Object.entries(v as Schema).map(([pk, pv]) => [pk, toJsonSchema(pv)]));
    } else if (k === 'format' && typeof v === 'string' && !(v in KNOWN_FORMATS)) {
    } else {
      out[k] = typeof v === 'object' ? toJsonSchema(v) : v;
    }
  }
  if (src['x-kubernetes-int-or-string'] === true && out.type === undefined) {
    delete out.anyOf;
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  if (out.nullable === true && out.type === undefined) delete out.nullable; // Ajv requires `type` with nullable
  return out;
}

/** Remove fields the schema does not know; returns their paths (`spec.foo`). metadata is left alone. */
export function prune(value: unknown, schema: Schema | undefined, path: string, dropped: string[], isRoot = false): void {
  if (!schema) return;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  const props = schema.properties as Record<string, Schema> | undefined;
  if (preserve && !props) return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => prune(v, schema.items as Schema | undefined, `${path}[${i}]`, dropped));
    return;
  }
  if (!value || typeof value !== 'object') return;
  const obj = value as Record<string, unknown>;
  const additional = schema.additionalProperties;
  for (const key of Object.keys(obj)) {
    const child = path ? `${path}.${key}` : key;
    if (isRoot && (key === 'apiVersion' || key === 'kind' || key === 'metadata')) continue;
    if (props && key in props) prune(obj[key], props[key], child, dropped);
    else if (additional && typeof additional === 'object') prune(obj[key], additional as Schema, child, dropped);
    else if (additional === true || preserve) continue;
    else {
      delete obj[key];
      dropped.push(child);
    }
  }
}

function fieldOf(instancePath: string): string {
  // `/spec/rules/0/path` → `spec.rules[0].path`
  return instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v));
}

function valueAt(root: unknown, instancePath: string): unknown {
  let cur = root;
  for (const p of instancePath.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur;
}

/** kube-apiserver wording for each kind of violation. */
export function causesFrom(errors: ErrorObject[], root: unknown): StatusCause[] {
  const causes: StatusCause[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    let field = fieldOf(e.instancePath);
    const value = valueAt(root, e.instancePath);
    let cause: StatusCause;
    switch (e.keyword) {
      case 'required': {
        field = field
          ? `${field}.${(e.params as { missingProperty: string }).missingProperty}`
          : (e.params as { missingProperty: string }).missingProperty;
        cause = { reason: 'FieldValueRequired', message: 'Required value', field };
        break;
      }
      case 'enum': {
        const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(show).join(', ');
        cause = { reason: 'FieldValueNotSupported', message: `Unsupported value: ${show(value)}: supported values: ${allowed}`, field };
        break;
      }
      case 'type': {
        const want = (e.params as { type: string | string[] }).type;
        const got =
          value === null
            ? 'null'
            : Array.isArray(value)
              ? 'array'
              : typeof value === 'number'
                ? Number.isInteger(value)
                  ? 'integer'
                  : 'number'
                : typeof value;
        cause = {
          reason: 'FieldValueTypeInvalid',
          message: `Invalid value: "${got}": ${field} in body must be of type ${Array.isArray(want) ? want.join(',') : want}: ${show(got)}`,
          field,
        };
        break;
      }
      case 'anyOf':
      case 'oneOf':
        // int-or-string: the per-branch `type` errors are more confusing than this
        cause = {
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${show(value)}: ${field} in body must be of type integer or string`,
          field,
        };
        break;
      case 'maximum':
      case 'minimum':
      case 'exclusiveMaximum':
      case 'exclusiveMinimum': {
        const lim = (e.params as { limit: number }).limit;
        const rel =
          e.keyword === 'maximum'
            ? 'less than or equal to'
            : e.keyword === 'minimum'
              ? 'greater than or equal to'
              : e.keyword === 'exclusiveMaximum'
                ? 'less than'
                : 'greater than';
        cause = { reason: 'FieldValueInvalid', message: `Invalid value: ${show(value)}: ${field} in body should be ${rel} ${lim}`, field };
        break;
      }
      case 'pattern':
        cause = {
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${show(value)}: ${field} in body should match '${(e.params as { pattern: string }).pattern}'`,
          field,
        };
        break;
      case 'maxLength':
      case 'minLength':
      case 'maxItems':
      case 'minItems': {
        const lim = (e.params as { limit: number }).limit;
        const what = e.keyword.endsWith('Length') ? 'chars long' : 'items';
        const rel = e.keyword.startsWith('max') ? 'at most' : 'at least';
        const reason =
          e.keyword === 'maxItems' ? 'FieldValueTooMany' : e.keyword === 'maxLength' ? 'FieldValueTooLong' : 'FieldValueInvalid';
        cause = { reason, message: `Invalid value: ${show(value)}: ${field} in body should be ${rel} ${lim} ${what}`, field };
        break;
      }
      case 'format':
        cause = {
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${show(value)}: ${field} in body must be of type ${(e.params as { format: string }).format}: ${show(value)}`,
          field,
        };
        break;
      default:
        cause = { reason: 'FieldValueInvalid', message: `Invalid value: ${show(value)}: ${e.message ?? e.keyword}`, field };
    }
    const key = `${cause.field}|${cause.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      causes.push(cause);
    }
  }
  // anyOf reports its branches' type errors first; keep only the anyOf summary for that field
  const anyOfFields = new Set(errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf').map((e) => fieldOf(e.instancePath)));
  return causes.filter((c) => !(c.reason === 'FieldValueTypeInvalid' && c.field !== undefined && anyOfFields.has(c.field)));
}

export interface CompiledSchema {
  /** Prune, default and validate in place. Returns pruned field paths and violations. */
  check(obj: Record<string, unknown>): { dropped: string[]; causes: StatusCause[] };
}

const ajv = createAjv();
const cache = new Map<string, CompiledSchema>();

export function compileCrdSchema(openAPIV3Schema: Schema): CompiledSchema {
  const key = JSON.stringify(openAPIV3Schema);
  const hit = cache.get(key);
  if (hit) return hit;
  const json = toJsonSchema(openAPIV3Schema) as Schema;
  // metadata is validated as ObjectMeta by the server, not by the CRD schema
  if (json.properties && typeof json.properties === 'object') (json.properties as Schema).metadata = { type: 'object' };
  const validate: ValidateFunction = ajv.compile(json);
  const compiled: CompiledSchema = {
    check(obj) {
      const dropped: string[] = [];
      prune(obj, openAPIV3Schema, '', dropped, true);
      const ok = validate(obj);
      return { dropped, causes: ok ? [] : causesFrom(validate.errors ?? [], obj) };
    },
  };
  cache.set(key, compiled);
  return compiled;
}

/**
 * The smallest object a structural schema accepts: every required field with its default or a zero value
 * (first enum value, minimum, minItems copies). What fsm-bootstrap-like seeders start from before setting
 * the fields they care about.
 */
export function skeletonFromSchema(s: Schema | undefined): unknown {
  if (!s) return undefined;
  if (s.default !== undefined) return JSON.parse(JSON.stringify(s.default));
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
  if (s['x-kubernetes-int-or-string'] === true) return 0;
  switch (s.type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = (s.properties ?? {}) as Record<string, Schema>;
      for (const k of (s.required as string[] | undefined) ?? []) out[k] = skeletonFromSchema(props[k]) ?? {};
      return out;
    }
    case 'array': {
      const n = Number(s.minItems ?? 0);
      return Array.from({ length: n }, () => skeletonFromSchema(s.items as Schema));
    }
    case 'integer':
    case 'number':
      return typeof s.minimum === 'number' ? s.minimum : 0;
    case 'boolean':
      return false;
    case 'string':
      return 'x'.repeat(Number(s.minLength ?? 0));
    default:
      return undefined;
  }
}

/** Fill the required fields missing anywhere in `value` (recursively, where `value` has objects) from the schema. */
export function completeFromSchema(value: unknown, s: Schema | undefined): unknown {
  if (!s) return value;
  if (value === undefined) return skeletonFromSchema(s);
  if (Array.isArray(value)) return value.map((v) => completeFromSchema(v, s.items as Schema | undefined));
  if (!value || typeof value !== 'object' || s.type !== 'object') return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  const props = (s.properties ?? {}) as Record<string, Schema>;
  for (const k of (s.required as string[] | undefined) ?? []) if (out[k] === undefined) out[k] = skeletonFromSchema(props[k]) ?? {};
  for (const [k, v] of Object.entries(out)) if (props[k]) out[k] = completeFromSchema(v, props[k]);
  return out;
}
