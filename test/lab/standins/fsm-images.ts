// LAB STAND-IN support (never imported by src/): which container images an FSM v1.5.x chart install pulls, read
// from its values the way the chart's templates pick them (see /work/shared/reference/fsm/image-list.v1.5.1.txt).
// Shared by the k3s stand-in's Helm controller (to refuse an install whose images were not imported) and by tests
// that synthesize image archives. Runs on Node 18 inside POPs: no imports.

export type FsmValues = Record<string, unknown>;

/** One image the chart would run, with the feature that needs it. */
export interface FsmImage {
  /** Fully qualified reference as containerd stores it, e.g. `docker.io/flomesh/fsm-controller:1.5.1`. */
  ref: string;
  /** What needs it, e.g. `fsm-controller Deployment`, `NodeLevel: fsm-xnetwork DaemonSet`. */
  usedBy: string;
  /** Pulled at install time (hooks, control plane) rather than only when meshed pods start. */
  install: boolean;
}

const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const str = (v: unknown): string => (v === undefined || v === null ? '' : String(v));

/** `flomesh/x:1` → `docker.io/flomesh/x:1`; `nginx` → `docker.io/library/nginx:latest`; registries with a dot/port kept. */
export function normalizeImageRef(ref: string): string {
  let name = ref;
  let suffix = '';
  const at = name.indexOf('@');
  if (at >= 0) {
    suffix = name.slice(at);
    name = name.slice(0, at);
  } else {
    const colon = name.lastIndexOf(':');
    if (colon > name.lastIndexOf('/')) {
      suffix = name.slice(colon);
      name = name.slice(0, colon);
    } else suffix = ':latest';
  }
  const first = name.split('/')[0]!;
  const hasRegistry = name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasRegistry) name = `docker.io/${name.includes('/') ? name : `library/${name}`}`;
  return name + suffix;
}

/** `<registry>/<name>:<tag>` or `@digest` — the chart's image helper. */
function imageOf(registry: string, name: string, tag: string, digest?: string): string {
  const repo = registry ? `${registry.replace(/\/$/, '')}/${name}` : name;
  return normalizeImageRef(digest ? `${repo}@${digest}` : `${repo}:${tag}`);
}

/**
 * The images an FSM v1.5.x install with these (merged) values runs. `install: true` ones are needed for the
 * Helm install and the control plane to become Ready; the others only when pods are meshed (PodLevel sidecars).
 */
export function fsmImagesFor(values: FsmValues): FsmImage[] {
  const fsm = obj(values.fsm);
  const image = obj(fsm.image);
  const names = obj(image.name);
  const digests = obj(image.digest);
  const registry = str(image.registry);
  const tag = str(image.tag);
  const cp = (key: string, def: string) => imageOf(registry, str(names[key]) || def, tag, str(digests[key]) || undefined);
  const sub = (img: unknown, defName: string) => {
    const o = obj(img);
    return imageOf(str(o.registry) || registry, str(o.name) || defName, str(o.tag) || tag);
  };
  const out: FsmImage[] = [
    { ref: cp('fsmPreinstall', 'fsm-preinstall'), usedBy: 'helm pre-install hook Job fsm-preinstall', install: true },
    { ref: cp('fsmBootstrap', 'fsm-bootstrap'), usedBy: 'fsm-bootstrap Deployment', install: true },
    { ref: cp('fsmController', 'fsm-controller'), usedBy: 'fsm-controller Deployment', install: true },
    { ref: cp('fsmInjector', 'fsm-injector'), usedBy: 'fsm-injector Deployment', install: true },
    { ref: cp('fsmCurl', 'fsm-curl'), usedBy: 'init containers of the control plane', install: true },
  ];
  const repoServer = obj(fsm.repoServer);
  if (repoServer.standalone !== true) {
    out.push({ ref: sub(repoServer.image, 'pipy-repo'), usedBy: 'fsm-pipy-repo container in fsm-controller', install: true });
  }
  const mode = str(fsm.trafficInterceptionMode) || 'PodLevel';
  if (mode === 'NodeLevel') {
    out.push({ ref: cp('fsmXnetmgmt', 'fsm-xnetmgmt'), usedBy: 'NodeLevel: fsm-xnetwork DaemonSet (fsm-xmgt)', install: true });
    out.push({
      ref: sub(obj(obj(fsm.fsmXnetwork).xnet).image, 'xnet'),
      usedBy: 'NodeLevel: fsm-xnetwork DaemonSet (fsm-xnet)',
      install: true,
    });
  } else {
    out.push({ ref: sub(obj(fsm.sidecar).image, 'pipy'), usedBy: 'PodLevel: sidecar in meshed pods', install: false });
    out.push({ ref: cp('fsmSidecarInit', 'fsm-sidecar-init'), usedBy: 'PodLevel: init container in meshed pods', install: false });
    out.push({ ref: cp('fsmHealthcheck', 'fsm-healthcheck'), usedBy: 'PodLevel: health-check sidecar for TCP probes', install: false });
  }
  const ingress = obj(fsm.fsmIngress);
  const gateway = obj(fsm.fsmGateway);
  if (ingress.enabled === true && gateway.enabled !== true) {
    out.push({ ref: cp('fsmIngress', 'fsm-ingress'), usedBy: 'fsm-ingress Deployment', install: true });
  }
  if (gateway.enabled === true) out.push({ ref: cp('fsmGateway', 'fsm-gateway'), usedBy: 'Gateway API gateways', install: false });
  if (obj(fsm.egressGateway).enabled === true) {
    out.push({ ref: sub(repoServer.image, 'pipy-repo'), usedBy: 'fsm-egress-gateway Deployment', install: true });
  }
  const serviceLB = obj(fsm.serviceLB);
  if (serviceLB.enabled === true)
    out.push({ ref: sub(serviceLB.image, 'mirrored-klipper-lb'), usedBy: 'serviceLB DaemonSets', install: false });
  const extra: Array<[string, string, string]> = [
    ['deployPrometheus', 'prometheus', 'prometheus'],
    ['deployGrafana', 'grafana', 'grafana'],
    ['deployJaeger', 'tracing', 'all-in-one'],
    ['enableFluentbit', 'fluentBit', 'fluent-bit'],
  ];
  for (const [flag, key, def] of extra) {
    if (fsm[flag] === true) out.push({ ref: sub(obj(fsm[key]).image, def), usedBy: `${flag}`, install: true });
  }
  const seen = new Set<string>();
  return out.filter((i) => (seen.has(i.ref) ? false : (seen.add(i.ref), true)));
}
