import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CrdValidationError } from '../../src/kube/crd-schema.js';
import { buildFsmHelmChart, renderHelmChartManifest } from '../../src/install/render/helm-chart.js';
import { interceptionValues } from '../../src/install/render/interception.js';
import {
  ImagesMissingError,
  planFsmValues,
  splitImageRef,
  validateFsmValues,
  ValuesSchemaError,
  type FsmValuesInput,
} from '../../src/install/render/fsm-values.js';
import { AIRGAP_PULL_ENDPOINT, endpointHost, registryOf, renderK3sConfig, renderRegistries } from '../../src/install/render/k3s-config.js';
import { hostConfigs, isLocalEndpoint, pullEndpoints, pullFailure, renderHostsToml } from '../lab/standins/k3s/registries.js';
import {
  buildClusterObject,
  gatewayPortFor,
  gatewayPortProblem,
  hubAccessChecks,
  HUB_ACCESS_NAME,
  popAccessObjects,
  redactCluster,
  renderHubKubeconfig,
} from '../../src/install/render/registration.js';

const fixture = (v: string, f: string) => new URL(`./fixtures/fsm-${v}/${f}`, import.meta.url);
const chart = (v: string) => ({
  schema: JSON.parse(readFileSync(fixture(v, 'values.schema.json'), 'utf8')) as Record<string, unknown>,
  defaults: parse(readFileSync(fixture(v, 'values.yaml'), 'utf8')) as Record<string, unknown>,
});

function bundleImages(ver: string): string[] {
  const fsm = [
    'fsm-controller',
    'fsm-bootstrap',
    'fsm-injector',
    'fsm-preinstall',
    'fsm-curl',
    'fsm-ingress',
    'fsm-xnetmgmt',
    'fsm-sidecar-init',
    'fsm-healthcheck',
    'fsm-crds',
    'fsm-interceptor',
  ];
  return [
    ...fsm.map((n) => `docker.io/flomesh/${n}:${ver}`),
    'docker.io/flomesh/pipy:1.5.12',
    'docker.io/flomesh/pipy-repo:1.5.12',
    `docker.io/flomesh/xnet:${ver}`,
    'docker.io/rancher/mirrored-pause:3.6',
  ];
}

const base: FsmValuesInput = {
  fsmVersion: '1.5.1',
  namespace: 'fsm-system',
  bundleImages: bundleImages('1.5.1'),
  interception: 'ebpf',
  ingress: true,
  multicluster: true,
  profile: 'edge-small',
};

describe('k3s config.yaml', () => {
  const text = renderK3sConfig({
    nodeName: 'pop-berlin-1',
    tlsSans: ['10.99.0.11', endpointHost('https://pop1.example.net:6443'), '10.99.0.11'],
    nodeLabels: { 'edge.flomesh.io/site': 'pop-berlin-1', region: 'eu' },
    disable: ['traefik'],
    datastore: 'sqlite',
  });
  const doc = parse(text) as Record<string, unknown>;

  it('carries SANs (deduplicated, including the hub-facing endpoint), labels, disables and the token file', () => {
    expect(doc['tls-san']).toEqual(['10.99.0.11', 'pop1.example.net']);
    expect(doc['node-label']).toEqual(['edge.flomesh.io/site=pop-berlin-1', 'region=eu']);
    expect(doc['disable']).toEqual(['traefik']);
    expect(doc['token-file']).toBe('/etc/rancher/k3s/cluster-token');
    expect(doc['write-kubeconfig-mode']).toBe('0600');
    expect(doc['disable-default-registry-endpoint']).toBe(true);
    expect(doc).not.toHaveProperty('token');
  });

  it('uses sqlite by default and cluster-init for etcd', () => {
    expect(doc).not.toHaveProperty('cluster-init');
    const etcd = parse(renderK3sConfig({ nodeName: 'n', tlsSans: [], nodeLabels: {}, disable: [], datastore: 'etcd' }));
    expect(etcd['cluster-init']).toBe(true);
  });

  it('takes the host out of IPv6 endpoints', () => {
    expect(endpointHost('https://[fd00::11]:6443')).toBe('fd00::11');
  });
});

describe('registries.yaml', () => {
  const refs = ['flomesh/fsm-controller:1.5.1', 'ghcr.io/x/y:1', 'registry.k8s.io/pause:3.9', 'localhost:5000/a:1'];
  it('mirrors every registry of the bundle, and any other, to a refusing loopback endpoint', () => {
    const doc = parse(renderRegistries(refs));
    expect(Object.keys(doc.mirrors).sort()).toEqual(['*', 'docker.io', 'ghcr.io', 'localhost:5000', 'registry.k8s.io']);
    for (const m of Object.values(doc.mirrors)) expect(m).toEqual({ endpoint: [AIRGAP_PULL_ENDPOINT] });
  });
  it('leaves containerd (as k3s renders hosts.toml from it) no endpoint off the POP, for bundle images and others', () => {
    // k3s pkg/agent/containerd getHostConfigs, imitated by the stand-in: `endpoint: []` is dropped, so the old
    // registries.yaml sent pulls to registry-1.docker.io despite disable-default-registry-endpoint.
    const hosts = hostConfigs(parse(renderRegistries(refs)), true);
    for (const ref of [...refs, 'busybox', 'quay.io/not/in-bundle:1', 'docker.io/rancher/klipper-helm:v0.9.12']) {
      const tried = pullEndpoints(hosts, ref);
      expect(tried.length, ref).toBeGreaterThan(0);
      for (const url of tried) expect(isLocalEndpoint(url), `${ref} → ${url}`).toBe(true);
    }
    expect(pullFailure(hosts, 'flomesh/fsm-preinstall:1.5.1')).toMatch(/127\.0\.0\.1:1: connect: connection refused$/);
    expect(renderHostsToml(hosts.get('docker.io')!)).not.toMatch(/^server =/m);
  });
  it('resolves Docker Hub short names as containerd does', () => {
    expect(registryOf('busybox')).toBe('docker.io');
    expect(registryOf('rancher/klipper-helm:v0.9')).toBe('docker.io');
    expect(registryOf('quay.io/a/b')).toBe('quay.io');
  });
});

describe('interception mapping', () => {
  it('maps to NodeLevel/PodLevel from v1.5 and sets the k3s CNI paths for xnet', () => {
    const e = interceptionValues('1.5.1', 'ebpf');
    expect(e.trafficInterceptionMode).toBe('NodeLevel');
    expect(e.daemonSet).toBe('fsm-xnetwork');
    expect(e.fsmValues).toMatchObject({
      fsmXnetwork: {
        xnet: {
          nodePaths: {
            k3s: { enable: true, cniBin: '/var/lib/rancher/k3s/data/cni', cniNetd: '/var/lib/rancher/k3s/agent/etc/cni/net.d' },
          },
        },
      },
    });
    expect(interceptionValues('v1.5.0', 'iptables').trafficInterceptionMode).toBe('PodLevel');
  });
  it('maps to ebpf/iptables up to v1.4', () => {
    expect(interceptionValues('1.4.21', 'ebpf')).toMatchObject({ trafficInterceptionMode: 'ebpf', daemonSet: 'fsm-interceptor' });
    expect(interceptionValues('1.4.21', 'iptables').trafficInterceptionMode).toBe('iptables');
  });
});

describe('FSM values', () => {
  it('splits image references the way the chart wants them', () => {
    expect(splitImageRef('docker.io/flomesh/fsm-controller:1.5.1')).toMatchObject({
      registry: 'flomesh',
      name: 'fsm-controller',
      tag: '1.5.1',
    });
    expect(splitImageRef('10.99.0.1:5000/flomesh/pipy:1.5.12')).toMatchObject({
      registry: '10.99.0.1:5000/flomesh',
      name: 'pipy',
      tag: '1.5.12',
    });
  });

  for (const [ver, mode] of [
    ['1.5.1', 'ebpf'],
    ['1.5.1', 'iptables'],
    ['1.4.21', 'ebpf'],
    ['1.4.21', 'iptables'],
  ] as const) {
    it(`validate against the real v${ver} schema (${mode})`, () => {
      const plan = planFsmValues({ ...base, fsmVersion: ver, bundleImages: bundleImages(ver), interception: mode });
      const c = chart(ver);
      const merged = validateFsmValues(`fsm-${ver}`, c.schema, c.defaults, plan.values) as { fsm: Record<string, any> };
      expect(merged.fsm.image).toMatchObject({ registry: 'flomesh', tag: ver, pullPolicy: 'IfNotPresent' });
      expect(merged.fsm.fsmIngress.enabled).toBe(true);
      expect(merged.fsm.enableMultiClusters).toBe(true);
      for (const img of plan.images) expect(img).not.toMatch(/:latest$/);
    });
  }

  it('shrinks control-plane requests for 2-core POPs', () => {
    const plan = planFsmValues(base);
    const c = chart('1.5.1');
    const merged = validateFsmValues('fsm-1.5.1', c.schema, c.defaults, plan.values) as { fsm: Record<string, any> };
    const milli = (q: string) => (q.endsWith('m') ? Number(q.slice(0, -1)) : Number(q) * 1000);
    const requested =
      milli(merged.fsm.fsmController.resource.requests.cpu) +
      milli(merged.fsm.fsmController.repoResources.requests.cpu) +
      milli(merged.fsm.injector.resource.requests.cpu) +
      milli(merged.fsm.fsmBootstrap.resource.requests.cpu);
    expect(requested).toBeLessThanOrEqual(300);
    // Chart defaults would be 1800m.
    const d = validateFsmValues('fsm-1.5.1', c.schema, c.defaults, planFsmValues({ ...base, profile: 'upstream' }).values) as {
      fsm: Record<string, any>;
    };
    expect(d.fsm.fsmController.resource.requests.cpu).toBe('0.5');
  });

  it('needs the xnet images only for eBPF and the ingress image only with ingress or a hub', () => {
    const podLevel = planFsmValues({ ...base, interception: 'iptables', ingress: false, multicluster: false });
    expect(podLevel.images.join(' ')).not.toMatch(/xnet|fsm-ingress/);
    expect(planFsmValues(base).images.join(' ')).toMatch(/fsm-xnetmgmt.*xnet|xnet.*fsm-xnetmgmt/);
  });

  it('refuses when the bundle lacks an image the chart will run', () => {
    const images = bundleImages('1.5.1').filter((r) => !r.includes('/xnet:'));
    expect(() => planFsmValues({ ...base, bundleImages: images })).toThrow(ImagesMissingError);
    expect(() => planFsmValues({ ...base, bundleImages: images })).toThrow(/xnet/);
  });

  it('refuses floating tags', () => {
    const images = bundleImages('1.5.1').map((r) => r.replace('fsm-controller:1.5.1', 'fsm-controller:latest'));
    expect(() => planFsmValues({ ...base, bundleImages: images })).toThrow(/latest/);
  });

  it('reports schema violations with the field path', () => {
    const c = chart('1.5.1');
    const bad = { fsm: { trafficInterceptionMode: 'ebpf' } };
    try {
      validateFsmValues('fsm-1.5.1', c.schema, c.defaults, bad);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ValuesSchemaError);
      expect((e as ValuesSchemaError).violations).toContainEqual(expect.objectContaining({ path: '.fsm.trafficInterceptionMode' }));
      expect(String(e)).toMatch(/NodeLevel/);
    }
  });
});

describe('HelmChart', () => {
  it('points at the static chart, aborts on failure, carries a timeout and the values', () => {
    const plan = planFsmValues(base);
    const hc = buildFsmHelmChart({ chartVersion: '1.5.1', targetNamespace: 'fsm-system', values: plan.values, timeout: '600s' });
    expect(hc.metadata).toMatchObject({ name: 'fsm', namespace: 'kube-system' });
    expect(hc.spec).toMatchObject({
      chart: 'https://%{KUBERNETES_API}%/static/charts/fsm-1.5.1.tgz',
      targetNamespace: 'fsm-system',
      createNamespace: true,
      failurePolicy: 'abort',
      timeout: '600s',
    });
    expect(parse(hc.spec.valuesContent as string)).toEqual(plan.values);
    expect(parse(renderHelmChartManifest(hc))).toEqual(hc);
  });
  it('is refused by the CRD schema when a field is wrong', () => {
    expect(() =>
      buildFsmHelmChart({ chartVersion: '1.5.1', targetNamespace: 'fsm-system', values: {}, timeout: 600 as unknown as string }),
    ).toThrow(CrdValidationError);
  });
});

describe('registration objects', () => {
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
  /** "group/resource:verb[@name]" for every right a rule list grants, sorted. */
  const rights = (rules: Rule[]) =>
    rules
      .flatMap((r) =>
        r.apiGroups.flatMap((g) =>
          r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}${r.resourceNames ? `@${r.resourceNames.join(',')}` : ''}`)),
        ),
      )
      .sort();

  it('gives the hub exactly the rights FSM v1.5.1 calls: a Role in the FSM namespace, a ClusterRole, their bindings, a token', () => {
    const objs = popAccessObjects('fsm-system');
    expect(objs.map((o) => o.kind)).toEqual(['ServiceAccount', 'Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding', 'Secret']);
    const role = objs.find((o) => o.kind === 'Role') as unknown as { rules: Rule[]; metadata: { namespace?: string } };
    expect(role.metadata.namespace).toBe('fsm-system');
    expect(rights(role.rules)).toEqual([
      'apps/deployments:get@fsm-controller',
      'config.flomesh.io/meshconfigs:list@fsm-mesh-config',
      'config.flomesh.io/meshconfigs:update@fsm-mesh-config',
      'config.flomesh.io/meshconfigs:watch@fsm-mesh-config',
      'config.flomesh.io/meshrootcertificates:list',
      'config.flomesh.io/meshrootcertificates:watch',
    ]);
    const clusterRole = objs.find((o) => o.kind === 'ClusterRole') as unknown as { rules: Rule[] };
    expect(rights(clusterRole.rules)).toEqual([
      '/namespaces:create',
      '/services:get',
      'multicluster.flomesh.io/globaltrafficpolicies:list',
      'multicluster.flomesh.io/globaltrafficpolicies:watch',
      'multicluster.flomesh.io/serviceexports/status:update',
      'multicluster.flomesh.io/serviceexports:get',
      'multicluster.flomesh.io/serviceexports:list',
      'multicluster.flomesh.io/serviceexports:watch',
      'multicluster.flomesh.io/serviceimports:create',
      'multicluster.flomesh.io/serviceimports:delete',
      'multicluster.flomesh.io/serviceimports:get',
      'multicluster.flomesh.io/serviceimports:list',
      'multicluster.flomesh.io/serviceimports:update',
      'multicluster.flomesh.io/serviceimports:watch',
    ]);
    const binding = objs.find((o) => o.kind === 'RoleBinding') as unknown as { subjects: unknown[]; roleRef: unknown };
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: HUB_ACCESS_NAME, namespace: 'fsm-system' }]);
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: HUB_ACCESS_NAME });
    const secret = objs.find((o) => o.kind === 'Secret')!;
    expect(secret.type).toBe('kubernetes.io/service-account-token');
  });

  it('limits the MeshConfig rights to the MeshConfig the Cluster names', () => {
    const role = popAccessObjects('edge-mesh', 'edge-mesh-config').find((o) => o.kind === 'Role') as unknown as {
      rules: Rule[];
      metadata: { namespace: string };
    };
    expect(role.metadata.namespace).toBe('edge-mesh');
    expect(role.rules.find((r) => r.resources.includes('meshconfigs'))?.resourceNames).toEqual(['edge-mesh-config']);
  });

  it('lists every right as an access check naming what FSM uses it for', () => {
    const checks = hubAccessChecks('fsm-system');
    expect(checks).toContainEqual(
      expect.objectContaining({
        verb: 'list',
        group: 'config.flomesh.io',
        resource: 'meshrootcertificates',
        namespace: 'fsm-system',
        usedBy: expect.stringContaining('hangs for ever'),
      }),
    );
    expect(checks).toContainEqual(
      expect.objectContaining({
        verb: 'watch',
        group: 'config.flomesh.io',
        resource: 'meshconfigs',
        namespace: 'fsm-system',
        name: 'fsm-mesh-config',
      }),
    );
    expect(checks).toContainEqual(
      expect.objectContaining({ verb: 'update', group: 'multicluster.flomesh.io', resource: 'serviceexports', subresource: 'status' }),
    );
    expect(checks.filter((c) => c.resource === 'namespaces')).toEqual([expect.objectContaining({ verb: 'create', group: '' })]);
    expect(checks.find((c) => c.resource === 'namespaces')).not.toHaveProperty('namespace');
    expect(checks).toHaveLength(20);
  });

  it('derives the Cluster gatewayPort and the fsm-ingress port from one setting', () => {
    expect(gatewayPortFor({ hub: { gateway: { port: 8081 } } })).toBe(8081);
    expect(gatewayPortFor({ hub: {} })).toBe(80);
    expect(gatewayPortFor({})).toBe(80);
    expect(gatewayPortProblem({ hub: { gateway: { port: 8081 } }, k3s: { disable: ['traefik', 'servicelb'] } })).toMatch(/servicelb/);
    expect(gatewayPortProblem({ hub: {}, k3s: { disable: ['traefik'] } })).toBeUndefined();
    expect(gatewayPortProblem({ k3s: { disable: ['servicelb'] } })).toBeUndefined();
  });

  it('renders the fsm-ingress Service port the Cluster advertises (and the chart schema takes it)', () => {
    const site = { hub: { gateway: { port: 8081 } } };
    const c = chart('1.5.1');
    const merged = validateFsmValues(
      'fsm-1.5.1',
      c.schema,
      c.defaults,
      planFsmValues({ ...base, ingressHttpPort: gatewayPortFor(site) }).values,
    ) as { fsm: Record<string, any> };
    expect(merged.fsm.fsmIngress.http).toMatchObject({ enabled: true, port: 8081, containerPort: 8000 });
    const byDefault = validateFsmValues('fsm-1.5.1', c.schema, c.defaults, planFsmValues(base).values) as { fsm: Record<string, any> };
    expect(byDefault.fsm.fsmIngress.http.port).toBe(gatewayPortFor({ hub: {} }));
  });

  it('builds a Cluster that the real CRD accepts, and a redacted copy for logs', () => {
    const kubeconfig = renderHubKubeconfig({
      clusterName: 'pop1',
      server: 'https://10.99.0.11:6443',
      caData: 'Q0E=',
      token: 'sekrit-token',
    });
    expect(parse(kubeconfig).clusters[0].cluster.server).toBe('https://10.99.0.11:6443');
    const c = buildClusterObject({
      name: 'pop1',
      region: 'eu',
      zone: 'berlin',
      group: 'retail',
      gatewayHost: '10.99.0.11',
      gatewayPort: 80,
      fsmNamespace: 'fsm-system',
      kubeconfig,
    });
    expect(c.spec).toMatchObject({
      region: 'eu',
      zone: 'berlin',
      group: 'retail',
      gatewayHost: '10.99.0.11',
      gatewayPort: 80,
      fsmNamespace: 'fsm-system',
    });
    expect(JSON.stringify(redactCluster(c))).not.toContain('sekrit-token');
    expect(() =>
      buildClusterObject({
        name: 'pop1',
        region: 'eu',
        zone: 'z',
        group: 'g',
        gatewayHost: 'h',
        gatewayPort: 70000,
        fsmNamespace: 'fsm-system',
        kubeconfig,
      }),
    ).toThrow(/gatewayPort/);
  });
});
