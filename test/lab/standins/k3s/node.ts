// The node registers once the agent is up and goes Ready, with the labels k3s and the kubelet set
// (node-label only at first registration, as k3s documents) and the node-password Secret k3s keeps.
import fs from 'node:fs';
import os from 'node:os';
import type { Controller, ControllerContext, KubeObject } from '../../apiserver/index.js';
import { ApiError } from '../../apiserver/index.js';
import { BUILT_ARCH, K3S_VERSION } from './build-info.js';
import type { AgentState } from './agent-state.js';
import { nodeAddresses } from './pki.js';
import { log } from './log.js';

export interface NodeOptions {
  labels: string[];
  taints: string[];
  nodePasswordHash: string;
}

function osImage(): string {
  try {
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'Linux';
  } catch {
    return 'Linux';
  }
}

export function nodeController(agent: AgentState, opts: NodeOptions): Controller {
  let timer: NodeJS.Timeout | undefined;
  return {
    name: 'node',
    start(ctx: ControllerContext) {
      const tick = async () => {
        try {
          await register(ctx, agent, opts);
        } catch (e) {
          log.error(`node ${agent.nodeName}: ${(e as Error).message}`);
        }
      };
      // the kubelet registers as soon as the agent is up, then posts status every 10 s
      let last = 0;
      timer = setInterval(() => {
        const registered = ctx.store.get('v1', 'Node', agent.nodeName) !== undefined;
        if (!registered || Date.now() - last >= 10_000) {
          last = Date.now();
          void tick();
        }
      }, 1000);
      void tick();
    },
    stop() {
      clearInterval(timer);
    },
  };
}

async function register(ctx: ControllerContext, agent: AgentState, opts: NodeOptions) {
  if (!agent.ready || agent.error) return;
  const { store } = ctx;
  const name = agent.nodeName;
  const fault = ctx.fault('node');

  // kube-system/<node>.node-password.k3s holds the hash of /etc/rancher/node/password
  const pwName = `${name}.node-password.k3s`;
  const pw = store.get('v1', 'Secret', pwName, 'kube-system');
  const hash = Buffer.from(opts.nodePasswordHash).toString('base64');
  // k3s's supervisor answers 403 when the node's password does not verify against this Secret (pkg/nodepassword
  // validate.go, Ensure → ErrVerifyFailed), and the agent logs the 403 every 5 s without ever registering
  // (pkg/agent/config/config.go getNodeNamedCrt and Get).
  if (pw && (pw.data as Record<string, string> | undefined)?.hash !== hash) {
    agent.error = `Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag`;
    log.info(`Waiting to retrieve agent configuration; server is not ready: ${agent.error}`);
    return;
  }
  if (!pw)
    store.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: pwName, namespace: 'kube-system', labels: { 'k3s.io/node-password': 'true' } },
      type: 'k3s.cattle.io/node-password',
      data: { hash },
    });

  const ip = nodeAddresses()[0] ?? '127.0.0.1';
  let node = store.get('v1', 'Node', name);
  if (!node) {
    const labels: Record<string, string> = {
      'beta.kubernetes.io/arch': BUILT_ARCH,
      'beta.kubernetes.io/instance-type': 'k3s',
      'beta.kubernetes.io/os': 'linux',
      'kubernetes.io/arch': BUILT_ARCH,
      'kubernetes.io/hostname': name,
      'kubernetes.io/os': 'linux',
      'node.kubernetes.io/instance-type': 'k3s',
      'node-role.kubernetes.io/control-plane': 'true',
      'node-role.kubernetes.io/master': 'true',
    };
    for (const l of opts.labels) {
      const [k, v = ''] = l.split('=');
      if (!k) continue;
      if (/(^|\.)(kubernetes\.io|k8s\.io)\//.test(k)) {
        agent.error = `failed to validate kubelet flags: unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [${k}]`;
        log.error(agent.error);
        return;
      }
      labels[k] = v;
    }
    const taints = opts.taints.map((t) => {
      const m = /^([^=:]+)(?:=([^:]*))?:(\w+)$/.exec(t);
      return m ? { key: m[1]!, value: m[2] ?? '', effect: m[3]! } : { key: t, effect: 'NoSchedule' };
    });
    node = store.create({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        labels,
        annotations: {
          'k3s.io/hostname': os.hostname(),
          'k3s.io/internal-ip': ip,
          'k3s.io/node-args': '["server"]',
          'node.alpha.kubernetes.io/ttl': '0',
        },
      },
      spec: { podCIDR: '10.42.0.0/24', podCIDRs: ['10.42.0.0/24'], providerID: `k3s://${name}`, ...(taints.length ? { taints } : {}) },
    });
    log.info(`Node ${name} registered (k3s ${K3S_VERSION})`);
  }
  await agent.refreshImages();
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const ready = fault === undefined;
  const status = {
    addresses: [
      { type: 'InternalIP', address: ip },
      { type: 'Hostname', address: name },
    ],
    allocatable: {
      cpu: String(os.cpus().length),
      memory: `${Math.floor(os.totalmem() / 1024)}Ki`,
      pods: '110',
      'ephemeral-storage': '10Gi',
    },
    capacity: { cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: '110', 'ephemeral-storage': '10Gi' },
    conditions: [
      {
        type: 'MemoryPressure',
        status: 'False',
        reason: 'KubeletHasSufficientMemory',
        message: 'kubelet has sufficient memory available',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      },
      {
        type: 'DiskPressure',
        status: 'False',
        reason: 'KubeletHasNoDiskPressure',
        message: 'kubelet has no disk pressure',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      },
      {
        type: 'PIDPressure',
        status: 'False',
        reason: 'KubeletHasSufficientPID',
        message: 'kubelet has sufficient PID available',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      },
      ready
        ? {
            type: 'Ready',
            status: 'True',
            reason: 'KubeletReady',
            message: 'kubelet is posting ready status',
            lastHeartbeatTime: now,
            lastTransitionTime: now,
          }
        : { type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: fault, lastHeartbeatTime: now, lastTransitionTime: now },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    images: agent.imageList().map((i) => ({ names: [i.ref], sizeBytes: 0 })),
    nodeInfo: {
      architecture: BUILT_ARCH,
      bootID: '',
      containerRuntimeVersion: 'containerd://1.6.20',
      kernelVersion: os.release(),
      kubeProxyVersion: K3S_VERSION,
      kubeletVersion: K3S_VERSION,
      machineID: '',
      operatingSystem: 'linux',
      osImage: osImage(),
      systemUUID: '',
    },
  };
  try {
    store.updateStatus({ ...node, status });
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 409)) throw e;
  }
}

export type { KubeObject };
