// Packaged components and k3s's deploy controller. At start k3s writes its packaged manifests (coredns,
// local-storage, metrics-server, traefik as HelmCharts with charts in static/charts) into server/manifests unless
// `disable`d — a disabled component's manifest is removed and its objects deleted — then applies every
// manifest in that directory (and re-applies on change), tracking each file as an Addon in kube-system.
// `<file>.skip` makes it ignore a file. Apply errors are logged and recorded as Warning Events on the Addon.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { Controller, ControllerContext, KubeObject } from '../../apiserver/index.js';
import { SYSTEM_IMAGES } from './build-info.js';
import { writeChartArchive } from './chart-archive.js';
import { log } from './log.js';

const TRAEFIK_CHART = '39.0.201+up39.0.2';

const split = (ref: string) => {
  const i = ref.lastIndexOf(':');
  return { repository: ref.slice(0, i).replace(/^docker\.io\//, ''), tag: ref.slice(i + 1) };
};

function deployment(name: string, image: string, labels: Record<string, string>, args: string[] = []): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'kube-system', labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: name,
          priorityClassName: 'system-cluster-critical',
          containers: [{ name, image: image.replace(/^docker\.io\//, ''), imagePullPolicy: 'IfNotPresent', args }],
        },
      },
    },
  };
}

/** The packaged manifests of this k3s release, by file name relative to server/manifests. */
function packagedManifests(clusterDns: string): Record<string, { component: string; objects: KubeObject[] }> {
  const sa = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: 'kube-system' } });
  return {
    'coredns.yaml': {
      component: 'coredns',
      objects: [
        sa('coredns'),
        {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'coredns', namespace: 'kube-system' },
          data: {
            Corefile:
              '.:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n    hosts /etc/coredns/NodeHosts {\n      ttl 60\n      reload 15s\n      fallthrough\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n',
          },
        },
        deployment('coredns', SYSTEM_IMAGES.coredns, { 'k8s-app': 'kube-dns' }, ['-conf', '/etc/coredns/Corefile']),
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'CoreDNS' } },
          spec: {
            selector: { 'k8s-app': 'kube-dns' },
            clusterIP: clusterDns,
            ports: [
              { name: 'dns', port: 53, protocol: 'UDP' },
              { name: 'dns-tcp', port: 53, protocol: 'TCP' },
            ],
          },
        },
      ],
    },
    'local-storage.yaml': {
      component: 'local-storage',
      objects: [
        sa('local-path-provisioner-service-account'),
        deployment('local-path-provisioner', SYSTEM_IMAGES.localPath, { app: 'local-path-provisioner' }, [
          'start',
          '--config',
          '/etc/config/config.json',
        ]),
        {
          apiVersion: 'storage.k8s.io/v1',
          kind: 'StorageClass',
          metadata: { name: 'local-path', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
          provisioner: 'rancher.io/local-path',
          volumeBindingMode: 'WaitForFirstConsumer',
          reclaimPolicy: 'Delete',
        },
      ],
    },
    'metrics-server/metrics-server-deployment.yaml': {
      component: 'metrics-server',
      objects: [
        sa('metrics-server'),
        deployment('metrics-server', SYSTEM_IMAGES.metricsServer, { 'k8s-app': 'metrics-server' }, [
          '--cert-dir=/tmp',
          '--secure-port=10250',
        ]),
      ],
    },
    'traefik.yaml': {
      component: 'traefik',
      objects: ['traefik-crd', 'traefik'].map((name) => ({
        apiVersion: 'helm.cattle.io/v1',
        kind: 'HelmChart',
        metadata: { name, namespace: 'kube-system' },
        spec: {
          chart: `https://%{KUBERNETES_API}%/static/charts/${name}-${TRAEFIK_CHART}.tgz`,
          ...(name === 'traefik'
            ? {
                valuesContent: `image:\n  repository: ${split(SYSTEM_IMAGES.traefik).repository}\n  tag: ${split(SYSTEM_IMAGES.traefik).tag}\n`,
              }
            : {}),
        },
      })),
    },
  };
}

export function writePackagedComponents(dataDir: string, disabled: Set<string>, clusterDns: string): Set<string> {
  const dir = path.join(dataDir, 'server', 'manifests');
  fs.mkdirSync(dir, { recursive: true });
  const charts = path.join(dataDir, 'server', 'static', 'charts');
  fs.mkdirSync(charts, { recursive: true });
  const removed = new Set<string>();
  for (const [file, m] of Object.entries(packagedManifests(clusterDns))) {
    const p = path.join(dir, file);
    if (disabled.has(m.component)) {
      if (fs.existsSync(p)) removed.add(p);
      continue;
    }
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, m.objects.map((o) => YAML.stringify(o)).join('---\n'));
  }
  if (!disabled.has('traefik')) {
    const { repository, tag } = split(SYSTEM_IMAGES.traefik);
    for (const name of ['traefik-crd', 'traefik']) {
      fs.writeFileSync(
        path.join(charts, `${name}-${TRAEFIK_CHART}.tgz`),
        writeChartArchive(name, {
          'Chart.yaml': `apiVersion: v2\nname: ${name}\nversion: ${TRAEFIK_CHART}\ndescription: STAND-IN for the k3s packaged ${name} chart (no templates)\n`,
          'values.yaml': name === 'traefik' ? `image:\n  repository: ${repository}\n  tag: ${tag}\n` : '{}\n',
        }),
      );
    }
  }
  return removed;
}

/** Applies server/manifests (recursively) and keeps doing so as files change. */
export function deployController(dataDir: string, nodeName: string, disabledFiles: Set<string>): Controller {
  const dir = path.join(dataDir, 'server', 'manifests');
  const applied = new Map<string, string>();
  let timer: NodeJS.Timeout | undefined;
  return {
    name: 'deploy',
    start(ctx: ControllerContext) {
      // disabled packaged components: uninstall what their manifest created, then drop the file
      for (const file of disabledFiles) {
        try {
          for (const o of parseManifest(file)) {
            try {
              ctx.store.delete(o.apiVersion, o.kind, o.metadata.name!, o.metadata.namespace);
            } catch {
              /* not there */
            }
          }
        } catch {
          /* unreadable: just remove it */
        }
        fs.rmSync(file, { force: true });
        log.info(`Removed disabled component manifest ${file}`);
      }
      // k3s pkg/deploy/controller.go listFilesIn/deploy: at start every file is applied (force); afterwards a
      // file is looked at only when its mtime changed, and applied only when its checksum differs from the one
      // recorded in its Addon — so re-writing an unchanged manifest does NOT bring back deleted objects.
      let force = true;
      const scan = () => {
        for (const file of listManifests(dir)) {
          let text: string;
          let mtime: number;
          try {
            mtime = fs.statSync(file).mtimeMs;
            text = fs.readFileSync(file, 'utf8');
          } catch {
            continue;
          }
          if (!force && mtime !== 0 && applied.get(file) === String(mtime)) continue;
          applied.set(file, String(mtime));
          const sum = crypto.createHash('sha256').update(text).digest('hex');
          const addon = ctx.store.get('k3s.cattle.io/v1', 'Addon', addonNameOf(file), 'kube-system');
          if (!force && (addon?.spec as { checksum?: string } | undefined)?.checksum === sum) continue;
          applyFile(ctx, file, sum, nodeName);
        }
        force = false;
      };
      timer = setInterval(scan, 3000);
      scan();
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/** k3s: the Addon is named after the file's basename up to its first period. */
function addonNameOf(file: string): string {
  return path.basename(file).split('.')[0]!;
}

function listManifests(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name) && !e.name.startsWith('.') && !fs.existsSync(`${p}.skip`)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

function parseManifest(file: string): KubeObject[] {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
  const out: KubeObject[] = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(d.errors[0]!.message.split('\n')[0]);
    const o = d.toJS() as KubeObject | null;
    if (!o) continue;
    if ((o.kind as string) === 'List' && Array.isArray((o as { items?: unknown }).items))
      out.push(...(o as unknown as { items: KubeObject[] }).items);
    else out.push(o);
  }
  return out;
}

function applyFile(ctx: ControllerContext, file: string, sum: string, nodeName: string) {
  const { store } = ctx;
  const addonName = addonNameOf(file);
  const errors: string[] = [];
  let objects: KubeObject[] = [];
  try {
    objects = parseManifest(file);
  } catch (e) {
    errors.push(`failed to parse ${file}: ${(e as Error).message}`);
  }
  for (const o of objects) {
    try {
      if (!o.apiVersion || !o.kind || !o.metadata?.name) throw new Error('object is missing apiVersion, kind or metadata.name');
      const r = store.resourceFor(o.apiVersion, o.kind);
      if (!r) throw new Error(`no matches for kind "${o.kind}" in version "${o.apiVersion}"`);
      if (r.namespaced && !o.metadata.namespace) o.metadata.namespace = 'kube-system';
      store.apply(o, { fieldManager: `deploy@${nodeName}`, force: true });
    } catch (e) {
      errors.push(
        `${o.kind ?? '?'} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name ?? '?'}: ${(e as Error).message}`,
      );
    }
  }
  let addon: KubeObject | undefined;
  try {
    addon = store.apply(
      {
        apiVersion: 'k3s.cattle.io/v1',
        kind: 'Addon',
        metadata: { name: addonName, namespace: 'kube-system' },
        spec: { source: file, checksum: sum },
      },
      { fieldManager: `deploy@${nodeName}`, force: true },
    );
  } catch (e) {
    log.error(`Failed to record Addon ${addonName}: ${(e as Error).message}`);
  }
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const ev = (type: string, reason: string, message: string) => {
    try {
      store.create({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${addonName}.${Date.now().toString(16)}${Math.random().toString(16).slice(2, 6)}`, namespace: 'kube-system' },
        involvedObject: {
          apiVersion: 'k3s.cattle.io/v1',
          kind: 'Addon',
          name: addonName,
          namespace: 'kube-system',
          uid: addon?.metadata.uid,
        },
        type,
        reason,
        message,
        source: { component: 'deploy' },
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
    } catch {
      /* best effort */
    }
  };
  if (errors.length) {
    const msg = `failed to process ${file}: ${errors.join('; ')}`;
    log.error(`Failed to process config: ${msg}`);
    ev('Warning', 'ApplyManifestFailed', msg);
  } else {
    log.info(`Applied manifest ${file}`);
    ev('Normal', 'AppliedManifest', `Applied manifest at "${file}"`);
  }
}
