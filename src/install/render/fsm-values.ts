// FSM chart values for a POP: every image from the bundle (IfNotPresent, never `latest`), a resource profile
// sized for 2-core POPs, ingress and multicluster when the POP joins a hub, and the interception mapping.
// The merged values (chart defaults + ours) are validated against the chart's own values.schema.json before
// anything is written — Helm would do the same on the POP, minutes later, behind a Job.

import { Ajv } from 'ajv';
import { interceptionValues, versionAtLeast, type InterceptionMode } from './interception.js';
import { DEFAULT_GATEWAY_PORT } from './registration.js';

export type ResourceProfile = 'edge-small' | 'edge-medium' | 'upstream';

type Res = { requests: { cpu: string; memory: string }; limits: { cpu: string; memory: string } };
const res = (rc: string, rm: string, lc: string, lm: string): Res => ({
  requests: { cpu: rc, memory: rm },
  limits: { cpu: lc, memory: lm },
});

/**
 * Chart defaults request ~1.8 CPU for the control plane alone (fsm.md §4.2) — more than a 2-core POP has after
 * k3s. Requests are what the scheduler reserves, so they are cut hard; limits still allow bursts.
 */
export function profileValues(profile: ResourceProfile, fsmVersion: string): Record<string, unknown> {
  if (profile === 'upstream') return {};
  const v15 = versionAtLeast(fsmVersion, '1.5.0');
  const f = profile === 'edge-small' ? 1 : 2;
  const m = (n: number) => `${n * f}M`;
  const c = (n: number) => `${n * f}m`;
  return {
    fsmController: {
      resource: res(c(100), m(128), c(1000), m(512)),
      repoResources: res(c(50), m(64), c(500), m(256)),
      initResources: res(c(10), m(16), c(200), m(64)),
    },
    injector: { resource: res(c(50), m(64), c(500), m(256)), initResources: res(c(10), m(16), c(200), m(64)) },
    fsmBootstrap: { resource: res(c(50), m(64), c(300), m(256)) },
    fsmIngress: { resources: res(c(50), m(64), c(1000), m(256)) },
    // The per-node interception DaemonSet: xnet (v1.5+) or the legacy interceptor (v1.4).
    ...(v15
      ? {
          fsmXnetwork: {
            xmgt: { resource: res(c(50), m(64), c(500), m(256)) },
            xnet: { resource: res(c(50), m(64), c(500), m(256)) },
            initResources: res(c(10), m(16), c(200), m(64)),
          },
        }
      : { fsmInterceptor: { resource: res(c(50), m(64), c(500), m(256)) } }),
    preinstall: { resources: res(c(10), m(32), c(200), m(128)) },
    cleanup: { resources: res(c(10), m(32), c(200), m(128)) },
  };
}

/** Where an image of the chart comes from, split the way the chart's values want it. */
export interface ImageSource {
  ref: string;
  registry: string;
  name: string;
  tag: string;
}

/** `docker.io/flomesh/fsm-controller:1.5.1` → registry `flomesh`, name `fsm-controller`, tag `1.5.1`. */
export function splitImageRef(ref: string): ImageSource {
  const at = ref.indexOf('@');
  const noDigest = at >= 0 ? ref.slice(0, at) : ref;
  const colon = noDigest.lastIndexOf(':');
  const slash = noDigest.lastIndexOf('/');
  const tag = colon > slash ? noDigest.slice(colon + 1) : '';
  const path = colon > slash ? noDigest.slice(0, colon) : noDigest;
  const name = path.slice(path.lastIndexOf('/') + 1);
  let registry = path.slice(0, Math.max(0, path.lastIndexOf('/')));
  // The chart's own convention: Docker Hub images are written without the registry host.
  registry = registry.replace(/^(docker\.io|index\.docker\.io)\//, '');
  return { ref, registry, name, tag };
}

export function findImage(bundleRefs: string[], name: string): ImageSource | undefined {
  const hits = bundleRefs.map(splitImageRef).filter((s) => s.name === name);
  return hits[0];
}

export interface FsmValuesInput {
  fsmVersion: string;
  namespace: string;
  /** Every image reference the bundle carries for this arch. */
  bundleImages: string[];
  interception: InterceptionMode;
  ingress: boolean;
  /** Enabled when the POP joins a hub (ServiceExport needs the ingress too). */
  multicluster: boolean;
  /**
   * Port of the fsm-ingress Service (`fsm.fsmIngress.http.port`); must be the Cluster's gatewayPort:
   * pass `gatewayPortFor(site.spec)` from render/registration.ts. Default 80 (the chart's).
   */
  ingressHttpPort?: number;
  profile: ResourceProfile;
}

export interface FsmValuesPlan {
  /** The overrides written into the HelmChart's valuesContent. */
  values: Record<string, unknown>;
  /** Images the rendered chart will run with these values; each must be in the bundle. */
  images: string[];
  /** Images the mesh uses later (sidecars, health checks, uninstall) that the bundle lacks. */
  warnings: string[];
  /** The DaemonSet that carries interception (NodeLevel / legacy eBPF), if any. */
  interceptionDaemonSet?: string;
  trafficInterceptionMode: string;
}

export class ImagesMissingError extends Error {
  constructor(readonly missing: string[]) {
    super(
      `the bundle lacks image(s) the FSM chart needs with these settings: ${missing.join(', ')}` +
        `\n  fix: rebuild the bundle with the features this Site enables, or turn them off in the Site (mesh.ingress, mesh.interception)`,
    );
    this.name = 'ImagesMissingError';
  }
}

export function planFsmValues(input: FsmValuesInput): FsmValuesPlan {
  const ic = interceptionValues(input.fsmVersion, input.interception);
  const nodeLevel = ic.trafficInterceptionMode === 'NodeLevel';
  const podLevel = ic.trafficInterceptionMode === 'PodLevel' || ic.trafficInterceptionMode === 'iptables';
  const ingress = input.ingress || input.multicluster;

  // Chart image names (values keys fsm.image.name.*) needed at install time vs later at runtime.
  const required = ['fsm-controller', 'fsm-bootstrap', 'fsm-injector', 'fsm-preinstall', 'fsm-curl', 'pipy-repo'];
  const later = ['fsm-healthcheck', 'fsm-crds'];
  if (podLevel) required.push('pipy', 'fsm-sidecar-init');
  else later.push('pipy');
  if (ingress) required.push('fsm-ingress');
  if (nodeLevel) required.push('fsm-xnetmgmt', 'xnet');
  if (ic.trafficInterceptionMode === 'ebpf') required.push('fsm-interceptor');

  const missing: string[] = [];
  const found = new Map<string, ImageSource>();
  for (const name of required) {
    const src = findImage(input.bundleImages, name);
    if (!src) missing.push(name);
    else found.set(name, src);
  }
  const latest = [...found.values()].filter((s) => s.tag === '' || s.tag === 'latest').map((s) => s.ref);
  if (latest.length) {
    throw new Error(
      `the bundle pins no version for ${latest.join(', ')} ("latest" or no tag); an airgapped POP needs fixed tags\n  fix: pin these images in the recipe and rebuild the bundle`,
    );
  }
  if (missing.length) throw new ImagesMissingError(missing);
  const warnings = later
    .filter((n) => !findImage(input.bundleImages, n))
    .map((n) => `the bundle has no ${n} image; parts of the mesh that use it will not start on this POP`);

  const controller = found.get('fsm-controller')!;
  const values: Record<string, unknown> = {
    fsm: deepMerge(
      {
        meshName: 'fsm',
        fsmNamespace: input.namespace,
        image: { registry: controller.registry, tag: controller.tag, pullPolicy: 'IfNotPresent' },
        ...imageKey('sidecar', findImage(input.bundleImages, 'pipy')),
        ...imageKey('repoServer', found.get('pipy-repo')),
        ...(nodeLevel ? { fsmXnetwork: { xnet: { image: imageFields(found.get('xnet')!) } } } : {}),
        trafficInterceptionMode: ic.trafficInterceptionMode,
        fsmIngress: ingress ? { enabled: true, http: { port: input.ingressHttpPort ?? DEFAULT_GATEWAY_PORT } } : { enabled: false },
        enableMultiClusters: input.multicluster,
        // Nothing that pulls floating tags or eats a small POP's memory.
        deployPrometheus: false,
        deployGrafana: false,
        deployJaeger: false,
        enableFluentbit: false,
      },
      deepMerge(profileValues(input.profile, input.fsmVersion), ic.fsmValues),
    ),
  };
  const images = [...found.values()].map((s) => s.ref);
  return {
    values,
    images,
    warnings,
    trafficInterceptionMode: ic.trafficInterceptionMode,
    ...(ic.daemonSet ? { interceptionDaemonSet: ic.daemonSet } : {}),
  };
}

function imageFields(s: ImageSource): Record<string, string> {
  return { registry: s.registry, name: s.name, tag: s.tag };
}

function imageKey(key: string, s: ImageSource | undefined): Record<string, unknown> {
  return s ? { [key]: { image: imageFields(s) } } : {};
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Helm's merge: maps merge key by key, everything else (lists included) is replaced. */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

export interface ValuesViolation {
  path: string;
  message: string;
}

export class ValuesSchemaError extends Error {
  constructor(
    readonly chart: string,
    readonly violations: ValuesViolation[],
  ) {
    super(`FSM values do not match ${chart}'s values.schema.json: ` + violations.map((v) => `${v.path} ${v.message}`).join('; '));
    this.name = 'ValuesSchemaError';
  }
}

/**
 * Validates chart defaults merged with `overrides` against the chart's schema, as `helm install` does.
 * Returns the merged values.
 */
export function validateFsmValues(
  chart: string,
  schema: Record<string, unknown>,
  defaults: Record<string, unknown>,
  overrides: Record<string, unknown>,
): Record<string, unknown> {
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const fn = ajv.compile(withoutNestedIds(schema) as Record<string, unknown>);
  const merged = deepMerge(defaults, overrides);
  if (!fn(merged)) {
    const violations = (fn.errors ?? []).map((e) => ({
      path: e.instancePath.replace(/\//g, '.') || '.',
      message:
        e.keyword === 'enum'
          ? `${e.message}: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
          : (e.message ?? e.keyword),
    }));
    throw new ValuesSchemaError(chart, violations);
  }
  return merged;
}

/**
 * FSM's schema gives nested nodes `$id`s that are JSON pointers, several of them equal. Helm's validator
 * ignores them; ajv treats them as identifiers and refuses the duplicates. `$ref`s point at `#/definitions/…`
 * from the root, so dropping the nested ids changes no meaning.
 */
function withoutNestedIds(node: unknown, root = true): unknown {
  if (Array.isArray(node)) return node.map((x) => withoutNestedIds(x, false));
  if (!isObject(node)) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$id' && !root && typeof v === 'string') continue;
    out[k] = withoutNestedIds(v, false);
  }
  return out;
}
