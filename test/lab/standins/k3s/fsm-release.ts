// What the FSM v1.5.x chart's templates would create, simulated from the merged values: the control-plane
// Deployments (fsm-controller, fsm-bootstrap, fsm-injector, fsm-ingress / fsm-egress-gateway when enabled), the
// fsm-xnetwork DaemonSet for NodeLevel interception (with the host preconditions xnet checks when it starts),
// and ConfigMap preset-mesh-config. fsm-bootstrap, once Available, installs FSM's CRDs and creates MeshConfig
// `fsm-mesh-config` from the preset, as the real fsm-bootstrap does.
import type { Controller, ControllerContext, KubeObject } from '../../apiserver/index.js';
import YAML from 'yaml';
import { normalizeImageRef } from '../fsm-images.js';
import type { Values } from '../helm-values.js';
import { EMBEDDED_CRDS, KUBE_VERSION } from './build-info.js';
import { HOST_CHECK_ANNOTATION } from './workloads.js';
import { log } from './log.js';

const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const str = (v: unknown, d = ''): string => (v === undefined || v === null || v === '' ? d : String(v));

export function fsmReleaseObjects(values: Values, ns: string, release: string, chartVersion: string): KubeObject[] {
  const fsm = obj(values.fsm);
  const image = obj(fsm.image);
  const names = obj(image.name);
  const registry = str(image.registry);
  const tag = str(image.tag);
  const pullPolicy = str(image.pullPolicy, 'IfNotPresent');
  const cp = (key: string, def: string) => normalizeImageRef(`${registry ? `${registry}/` : ''}${str(names[key], def)}:${tag}`);
  const sub = (img: unknown, def: string) => {
    const o = obj(img);
    const reg = str(o.registry, registry);
    return normalizeImageRef(`${reg ? `${reg}/` : ''}${str(o.name, def)}:${str(o.tag, tag)}`);
  };
  const labels = (app: string) => ({
    app,
    'app.kubernetes.io/name': 'flomesh.io',
    'app.kubernetes.io/instance': str(fsm.meshName, 'fsm'),
    'app.kubernetes.io/version': chartVersion,
    'app.kubernetes.io/managed-by': 'Helm',
  });
  const meta = (name: string, app: string, annotations: Record<string, string> = {}) => ({
    name,
    namespace: ns,
    labels: labels(app),
    annotations: { 'meta.helm.sh/release-name': release, 'meta.helm.sh/release-namespace': ns, ...annotations },
  });
  const curl = { name: 'init-curl', image: cp('fsmCurl', 'fsm-curl'), imagePullPolicy: pullPolicy };
  const workload = (
    kind: 'Deployment' | 'DaemonSet',
    name: string,
    containers: Array<{ name: string; image: string }>,
    init: boolean,
    annotations: Record<string, string> = {},
  ): KubeObject => ({
    apiVersion: 'apps/v1',
    kind,
    metadata: meta(name, name, annotations),
    spec: {
      ...(kind === 'Deployment' ? { replicas: 1 } : {}),
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, 'flomesh.io/app': name } },
        spec: {
          serviceAccountName: name,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          ...(init ? { initContainers: [curl] } : {}),
          containers: containers.map((c) => ({ ...c, imagePullPolicy: pullPolicy })),
        },
      },
    },
  });

  const out: KubeObject[] = [];
  const repoServer = obj(fsm.repoServer);
  const controllerContainers = [{ name: 'fsm-controller', image: cp('fsmController', 'fsm-controller') }];
  if (repoServer.standalone !== true) controllerContainers.push({ name: 'fsm-pipy-repo', image: sub(repoServer.image, 'pipy-repo') });
  out.push(workload('Deployment', 'fsm-controller', controllerContainers, true));
  out.push(workload('Deployment', 'fsm-injector', [{ name: 'fsm-injector', image: cp('fsmInjector', 'fsm-injector') }], true));
  out.push(workload('Deployment', 'fsm-bootstrap', [{ name: 'fsm-bootstrap', image: cp('fsmBootstrap', 'fsm-bootstrap') }], false));
  if (obj(fsm.fsmIngress).enabled === true && obj(fsm.fsmGateway).enabled !== true) {
    out.push(workload('Deployment', 'fsm-ingress', [{ name: 'fsm-ingress', image: cp('fsmIngress', 'fsm-ingress') }], true));
  }
  if (obj(fsm.egressGateway).enabled === true)
    out.push(
      workload(
        'Deployment',
        str(obj(fsm.egressGateway).name, 'fsm-egress-gateway'),
        [{ name: 'pipy', image: sub(repoServer.image, 'pipy-repo') }],
        false,
      ),
    );
  const mode = str(fsm.trafficInterceptionMode, 'PodLevel');
  if (mode === 'NodeLevel') {
    const xnet = obj(obj(fsm.fsmXnetwork).xnet);
    const paths = obj(xnet.nodePaths);
    const k8s = obj(paths.k8s);
    const k3s = obj(paths.k3s);
    // the chart's helper: k8s paths verbatim; k3s on Kubernetes >= 1.29 uses the static CNI dir, ignoring cniBin
    const kubeMinor = Number(/^v1\.(\d+)/.exec(KUBE_VERSION)?.[1] ?? 0);
    const chosen = k8s.enable === true ? k8s : k3s;
    const cniBin =
      k8s.enable === true
        ? str(k8s.cniBin, '/opt/cni/bin')
        : k3s.enable === true && kubeMinor >= 29
          ? '/var/lib/rancher/k3s/data/cni'
          : str(k3s.cniBin, '/bin');
    const cniNetd = str(chosen.cniNetd, '/etc/cni/net.d');
    const sysFs = str(chosen.sysFs, '/opt').replace(/\/+$/, '');
    const check = {
      paths: [
        { path: `${cniBin}/loopback`, error: `${cniBin} is not cni bin directory for missing loopback cli` },
        { path: cniNetd, error: `open ${cniNetd}: no such file or directory (CNI config directory)` },
      ],
      bpffs: {
        path: `${sysFs}/bpf`,
        error: `bpf filesystem is not mounted at ${sysFs}/bpf (xnet pins its maps under ${sysFs}/bpf/fsm; mount bpffs there, or make ${sysFs} writable for xnet)`,
      },
    };
    out.push(
      workload(
        'DaemonSet',
        'fsm-xnetwork',
        [
          { name: 'fsm-xmgt', image: cp('fsmXnetmgmt', 'fsm-xnetmgmt') },
          { name: 'fsm-xnet', image: sub(xnet.image, 'xnet') },
        ],
        true,
        { [HOST_CHECK_ANNOTATION]: JSON.stringify(check) },
      ),
    );
  }
  out.push({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: meta('preset-mesh-config', 'fsm-bootstrap'),
    data: { 'preset-mesh-config.json': JSON.stringify(presetMeshConfigSpec(values)) },
  });
  return out;
}

/** The MeshConfig spec FSM derives from chart values (the parts an installer reads back). */
function presetMeshConfigSpec(values: Values): Record<string, unknown> {
  const fsm = obj(values.fsm);
  const image = obj(fsm.image);
  const cs = obj(values.clusterSet);
  const repo = obj(obj(fsm.repoServer).image);
  return {
    clusterSet: {
      isManaged: cs.isManaged === true,
      uid: '',
      controlPlaneUID: str(cs.controlPlaneUID),
      name: str(cs.name, 'local'),
      region: str(cs.region, 'default'),
      zone: str(cs.zone, 'default'),
      group: str(cs.group, 'default'),
      properties: [],
    },
    connector: {
      DO_NOT_EDIT_viaGateway: 'viaGateway Managed by fsm-connector-gateway.',
      lb: { type: 'ActiveActive', masterNamespace: '', slaveNamespaces: [] },
      viaGateway: {
        clusterIP: '',
        externalIP: '',
        ingressAddr: '',
        ingressHTTPPort: 0,
        ingressGRPCPort: 0,
        egressAddr: '',
        egressHTTPPort: 0,
        egressGRPCPort: 0,
      },
    },
    image: {
      registry: str(image.registry, 'flomesh'),
      tag: str(image.tag),
      pullPolicy: str(image.pullPolicy, 'IfNotPresent'),
      name: obj(image.name),
      digest: obj(image.digest),
    },
    misc: { repoServerImage: `${str(repo.registry, str(image.registry))}/${str(repo.name, 'pipy-repo')}:${str(repo.tag)}` },
    traffic: {
      interceptionMode: str(fsm.trafficInterceptionMode, 'PodLevel'),
      enableEgress: fsm.enableEgress !== false,
      enablePermissiveTrafficPolicyMode: fsm.enablePermissiveTrafficPolicyMode === true,
      serviceAccessMode: str(fsm.serviceAccessMode, 'mixed'),
      http1PerRequestLoadBalancing: false,
      http2PerRequestLoadBalancing: false,
      inboundPortExclusionList: [],
      outboundPortExclusionList: [],
      outboundIPRangeExclusionList: [],
      outboundIPRangeInclusionList: [],
      networkInterfaceExclusionList: [],
    },
  };
}

/** fsm-bootstrap's start-up work, run when its Deployment is Available. */
export function fsmBootstrapController(): Controller {
  let timer: NodeJS.Timeout | undefined;
  return {
    name: 'fsm-bootstrap',
    start(ctx: ControllerContext) {
      const run = () => {
        try {
          bootstrap(ctx);
        } catch (e) {
          log.error(`fsm-bootstrap: ${(e as Error).message}`);
        }
      };
      timer = setInterval(run, 2000);
      run();
    },
    stop() {
      clearInterval(timer);
    },
  };
}

const reported = new Set<string>();

function bootstrap(ctx: ControllerContext) {
  const { store } = ctx;
  for (const d of store.list('apps/v1', 'Deployment', { labelSelector: 'app=fsm-bootstrap' })) {
    const ns = d.metadata.namespace!;
    const available = ((d.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? []).some(
      (c) => c.type === 'Available' && c.status === 'True',
    );
    if (!available) continue;
    if (
      store.resourceFor('config.flomesh.io/v1alpha3', 'MeshConfig') &&
      store.get('config.flomesh.io/v1alpha3', 'MeshConfig', 'fsm-mesh-config', ns)
    )
      continue;
    for (const [file, text] of Object.entries(EMBEDDED_CRDS)) {
      if (!/flomesh\.io_/.test(file)) continue;
      for (const doc of YAML.parseAllDocuments(text)) {
        const crd = doc.toJS() as KubeObject | null;
        if (!crd || crd.kind !== 'CustomResourceDefinition') continue;
        if (!store.get('apiextensions.k8s.io/v1', 'CustomResourceDefinition', crd.metadata.name!))
          store.create(crd, { fieldManager: 'fsm-bootstrap' });
      }
    }
    const preset = store.get('v1', 'ConfigMap', 'preset-mesh-config', ns);
    const json = (preset?.data as Record<string, string> | undefined)?.['preset-mesh-config.json'];
    if (!json) continue;
    try {
      store.create(
        {
          apiVersion: 'config.flomesh.io/v1alpha3',
          kind: 'MeshConfig',
          metadata: { name: 'fsm-mesh-config', namespace: ns },
          spec: JSON.parse(json),
        },
        { fieldManager: 'fsm-bootstrap' },
      );
      log.info(`fsm-bootstrap: created MeshConfig ${ns}/fsm-mesh-config`);
    } catch (e) {
      const msg = `fsm-bootstrap: MeshConfig ${ns}/fsm-mesh-config refused: ${(e as Error).message}`;
      if (!reported.has(msg)) log.error(msg);
      reported.add(msg);
    }
  }
}
