// Validates custom resources against the real upstream CRD schemas before they leave the controller, so a bad
// HelmChart or Cluster is refused here with the field path — not by an API server on a far-away POP or hub.

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import clusterCrd from './crds/cluster.multicluster.flomesh.io.v1.5.1.json' with { type: 'json' };
import helmChartCrd from './crds/helmchart.helm.cattle.io.v0.17.7.json' with { type: 'json' };

// ajv-formats is CommonJS; its default export arrives wrapped under ESM interop.
type AddFormats = (ajv: Ajv) => Ajv;
const addFormats: AddFormats =
  (addFormatsModule as unknown as { default?: AddFormats }).default ?? (addFormatsModule as unknown as AddFormats);

interface CrdDocument {
  spec: {
    group: string;
    names: { kind: string };
    versions: Array<{ name: string; schema?: { openAPIV3Schema?: Record<string, unknown> } }>;
  };
}

export interface CrdViolation {
  /** JSON path of the offending field, e.g. `.spec.gatewayPort`. */
  path: string;
  message: string;
}

export class CrdValidationError extends Error {
  constructor(
    readonly kind: string,
    readonly violations: CrdViolation[],
  ) {
    super(`${kind} does not match its CRD schema: ${violations.map((v) => `${v.path || '.'} ${v.message}`).join('; ')}`);
    this.name = 'CrdValidationError';
  }
}

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
// Kubernetes OpenAPI formats that ajv-formats does not know; ranges are enforced by `type: integer` bounds.
for (const f of ['int32', 'int64', 'byte', 'quantity']) ajv.addFormat(f, true);

const compiled = new Map<string, ValidateFunction>();

function validatorFor(crd: CrdDocument, apiVersion: string): ValidateFunction {
  const key = `${crd.spec.names.kind}:${apiVersion}`;
  const hit = compiled.get(key);
  if (hit) return hit;
  const version = apiVersion.split('/')[1];
  const v = crd.spec.versions.find((x) => x.name === version);
  const schema = v?.schema?.openAPIV3Schema;
  if (!schema || apiVersion.split('/')[0] !== crd.spec.group) {
    throw new Error(
      `no schema for ${crd.spec.names.kind} ${apiVersion}; the CRD serves ${crd.spec.versions.map((x) => x.name).join(', ')}`,
    );
  }
  const fn = ajv.compile(schema);
  compiled.set(key, fn);
  return fn;
}

function toViolations(errors: ErrorObject[] | null | undefined): CrdViolation[] {
  return (errors ?? []).map((e) => ({
    path: e.instancePath.replace(/\//g, '.'),
    message:
      e.keyword === 'enum'
        ? `${e.message}: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
        : (e.message ?? e.keyword),
  }));
}

function validate(crd: CrdDocument, obj: { apiVersion?: string; kind?: string }): void {
  const kind = crd.spec.names.kind;
  if (obj.kind !== kind) throw new CrdValidationError(kind, [{ path: '.kind', message: `must be ${kind}` }]);
  const fn = validatorFor(crd, obj.apiVersion ?? '');
  if (!fn(obj)) throw new CrdValidationError(kind, toViolations(fn.errors));
}

/** `multicluster.flomesh.io/v1alpha1` Cluster, FSM v1.5.1 schema. */
export function validateCluster(obj: { apiVersion?: string; kind?: string }): void {
  validate(clusterCrd as unknown as CrdDocument, obj);
}

/** `helm.cattle.io/v1` HelmChart, helm-controller v0.17.7 schema. */
export function validateHelmChart(obj: { apiVersion?: string; kind?: string }): void {
  validate(helmChartCrd as unknown as CrdDocument, obj);
}
