// k3s, airgapped: config.yaml and registries.yaml, a token generated once on the POP (0600, never leaves it
// except into the controller's encrypted escrow), the binary, install.sh and image archives assembled from the
// blob store, install.sh with INSTALL_K3S_SKIP_DOWNLOAD (and SKIP_START: we start k3s ourselves under our own
// timeout — the unit has TimeoutStartSec=0), then the gates: /readyz, node Ready, CoreDNS available.
// Idempotent: files are written only when their content differs, k3s is restarted only when something it
// reads at start changed or it is not running.

import { createHash } from 'node:crypto';
import { Health } from '@kubernetes/client-node';
import { popAssembleCommand, popAssemblePlan, parseAssembleOutput } from '../bundle/pop.js';
import { POP_INSTALL_SCRIPT, POP_STORE_DIR } from '../bundle/layout.js';
import type { Host } from '../transport/host.js';
import { PopKube } from '../kube/pop.js';
import { FatalWaitError, pollUntil } from '../kube/poll.js';
import type { Changes } from '../engine/phase.js';
import { requireDecisions, type InstallContext, bundleOf } from './context.js';
import { POP_STATE_DIR } from '../engine/journal.js';
import type { InstallPhase, StepOutcome } from '../engine/runner.js';
import {
  endpointHost,
  K3S_CONFIG_PATH,
  K3S_REGISTRIES_PATH,
  K3S_TOKEN_PATH,
  renderK3sConfig,
  renderRegistries,
} from './render/k3s-config.js';

export const ASSEMBLE_PLAN_PATH = `${POP_STATE_DIR}/assemble.plan`;
const K3S_UNIT = '/etc/systemd/system/k3s.service';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export interface K3sFiles {
  config: string;
  registries: string;
  plan: string;
  scriptDigest: string;
  assembleOutputs: number;
}

/** The hub reaches the POP's API at this URL (default: the SSH host on 6443). */
export function apiEndpoint(ctx: InstallContext): string {
  const h = ctx.site.spec.ssh.host;
  return ctx.site.spec.hub?.apiEndpoint ?? `https://${h.includes(':') ? `[${h}]` : h}:6443`;
}

export function k3sFiles(ctx: InstallContext): K3sFiles {
  const d = requireDecisions(ctx);
  const spec = ctx.site.spec;
  const sans = [...spec.k3s.tlsSans, spec.ssh.host, endpointHost(apiEndpoint(ctx))];
  if (spec.hub?.gateway?.host) sans.push(spec.hub.gateway.host);
  const config = renderK3sConfig({
    nodeName: ctx.site.metadata.name,
    tlsSans: sans,
    nodeLabels: { 'edge.flomesh.io/site': ctx.site.metadata.name, ...spec.k3s.nodeLabels },
    disable: spec.k3s.disable,
    datastore: spec.k3s.datastore,
    clusterCidr: spec.k3s.clusterCidr,
    serviceCidr: spec.k3s.serviceCidr,
    ...(spec.mesh.profile === 'edge-small' ? { systemReserved: { cpu: '250m', memory: '256Mi' } } : {}),
  });
  const registries = renderRegistries(d.content.images.map((i) => i.ref));
  const assembly = popAssemblePlan(bundleOf(ctx).doc, d.arch);
  return { config, registries, plan: assembly.plan, scriptDigest: assembly.scriptDigest, assembleOutputs: assembly.outputs.length };
}

// One round trip: what is there now.
const STATE_SCRIPT = `
for f in ${K3S_CONFIG_PATH} ${K3S_REGISTRIES_PATH} ${ASSEMBLE_PLAN_PATH}; do
  if [ -f "$f" ]; then echo "sha $f $(sha256sum < "$f" | cut -d' ' -f1)"; else echo "sha $f -"; fi
done
[ -s ${K3S_TOKEN_PATH} ] && echo token=1 || echo token=0
[ -f ${K3S_UNIT} ] && echo unit=1 || echo unit=0
echo "active=$(systemctl is-active k3s 2>/dev/null)"
`;

interface PopK3sState {
  sha: Map<string, string>;
  token: boolean;
  unit: boolean;
  active: boolean;
}

function parseState(out: string): PopK3sState {
  const sha = new Map<string, string>();
  let token = false;
  let unit = false;
  let active = false;
  for (const line of out.split('\n')) {
    const m = /^sha (\S+) (\S+)$/.exec(line.trim());
    if (m) sha.set(m[1]!, m[2]!);
    else if (line.trim() === 'token=1') token = true;
    else if (line.trim() === 'unit=1') unit = true;
    else if (line.trim() === 'active=active') active = true;
  }
  return { sha, token, unit, active };
}

// 24 random bytes as hex: a "short" token (the first server cannot take a full K10 token without custom CAs).
// Generated on the POP so it never crosses the link; the file is created 0600 before anything is written to it.
const TOKEN_SCRIPT = `set -e
mkdir -p /etc/rancher/k3s
if [ ! -s ${K3S_TOKEN_PATH} ]; then
  umask 077
  t=${K3S_TOKEN_PATH}.tmp.$$
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n' > "$t"
  chmod 0600 "$t"
  mv -f "$t" ${K3S_TOKEN_PATH}
  echo created
fi`;

export async function waitK3sReady(ctx: InstallContext, host: Host, timeoutMs: number): Promise<string> {
  ctx.popKube ??= await PopKube.open(host);
  const kube = ctx.popKube;
  const health = new Health(kube.kc);
  await pollUntil('the POP API /readyz', async () => ({ done: await health.readyz({}), state: 'not ready' }), { timeoutMs, intervalMs: 1500 });
  const nodeName = ctx.site.metadata.name;
  await pollUntil(
    `node ${nodeName} Ready`,
    async () => {
      const node = await kube.core.readNode({ name: nodeName });
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      return { done: ready?.status === 'True', state: ready ? `Ready=${ready.status} ${ready.reason ?? ''}`.trim() : 'no Ready condition yet' };
    },
    { timeoutMs, intervalMs: 2000 },
  );
  if (!ctx.site.spec.k3s.disable.includes('coredns')) {
    await pollUntil(
      'CoreDNS available',
      async () => {
        const dep = await kube.apps.readNamespacedDeployment({ name: 'coredns', namespace: 'kube-system' });
        const avail = dep.status?.conditions?.find((c) => c.type === 'Available');
        if (avail?.status === 'False' && /ImagePull|ErrImage/.test(avail.message ?? '')) throw new FatalWaitError(`CoreDNS cannot start: ${avail.message}`);
        return { done: (dep.status?.availableReplicas ?? 0) >= 1, state: avail ? `Available=${avail.status} ${avail.message ?? ''}`.trim() : 'no status yet' };
      },
      { timeoutMs, intervalMs: 2000 },
    );
  }
  const info = await kube.core.readNode({ name: nodeName });
  return info.status?.nodeInfo?.kubeletVersion ?? '';
}

export const k3sPhase: InstallPhase<InstallContext> = {
  id: 'k3s',
  title: 'install k3s',
  inputs(ctx) {
    const f = k3sFiles(ctx);
    return { bundle: bundleOf(ctx).digest, config: sha256(f.config), registries: sha256(f.registries), plan: sha256(f.plan) };
  },
  async check(ctx) {
    // The facts probe of this run already asked k3s: no extra round trip.
    const k = ctx.facts?.k3s;
    return Boolean(k?.ready && k.ourConfig && k.version === bundleOf(ctx).doc.versions.k3s);
  },
  async apply(ctx: InstallContext, host: Host, changes: Changes): Promise<StepOutcome> {
    const t0 = Date.now();
    const files = k3sFiles(ctx);
    const state = parseState(await host.run(STATE_SCRIPT, { sudo: true }));
    const done: string[] = [];
    let restart = !state.active;

    if (!state.token) {
      await changes.change('generate the k3s cluster token (kept on the POP, mode 0600)', () => host.run(TOKEN_SCRIPT, { sudo: true }));
      done.push('generated the cluster token');
      restart = true;
    }
    for (const [path, text, mode] of [
      [K3S_CONFIG_PATH, files.config, 0o600],
      [K3S_REGISTRIES_PATH, files.registries, 0o600],
    ] as const) {
      if (state.sha.get(path) === sha256(text)) continue;
      await changes.change(`write ${path}`, () => host.writeFile(path, text, { sudo: true, mode }));
      done.push(`wrote ${path}`);
      restart = true;
    }

    // Binary, install.sh, chart and image archives from the store (assemble.sh checks each blob's sha256).
    let assembled: string[] = [];
    if (changes.dryRun) {
      if (state.sha.get(ASSEMBLE_PLAN_PATH) !== sha256(files.plan)) {
        await changes.change(`assemble the k3s binary, install.sh, the FSM chart and ${files.assembleOutputs} outputs from the blob store`, async () => {});
      }
    } else {
      if (state.sha.get(ASSEMBLE_PLAN_PATH) !== sha256(files.plan)) {
        await host.writeFile(ASSEMBLE_PLAN_PATH, files.plan, { sudo: true, mode: 0o644 });
      }
      const out = await host.run(popAssembleCommand({ scriptDigest: files.scriptDigest }, { planPath: ASSEMBLE_PLAN_PATH, storeDir: POP_STORE_DIR }), {
        sudo: true,
        timeoutMs: 15 * 60_000,
      });
      const r = parseAssembleOutput(out);
      assembled = r.changed;
      if (r.changed.length || r.removed.length) {
        done.push(`assembled ${r.changed.length} file(s) from the store${r.removed.length ? `, removed ${r.removed.length} stale archive(s)` : ''}`);
        restart = true;
      }
    }

    const binaryChanged = assembled.some((p) => p.endsWith('/k3s') || p === POP_INSTALL_SCRIPT);
    if (!state.unit || binaryChanged) {
      await changes.change('run install.sh (INSTALL_K3S_SKIP_DOWNLOAD=true, INSTALL_K3S_SKIP_START=true)', () =>
        host.run(`INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_START=true INSTALL_K3S_EXEC=server sh ${POP_INSTALL_SCRIPT}`, { sudo: true, timeoutMs: 120_000 }),
      );
      done.push('ran install.sh');
      restart = true;
    }

    const startSec = Math.round(ctx.options.k3sStartTimeoutMs / 1000);
    if (restart) {
      await changes.change(state.active ? 'restart k3s' : 'start k3s', async () => {
        // Type=notify: systemctl returns once k3s is up, or fails; `timeout` bounds it (TimeoutStartSec=0).
        const r = await host.exec(`systemctl enable k3s >/dev/null 2>&1; timeout ${startSec} systemctl restart k3s`, { sudo: true, timeoutMs: (startSec + 15) * 1000 });
        if (r.code !== 0) {
          const journal = await host.exec('journalctl -u k3s -n 15 --no-pager 2>/dev/null | tail -n 15', { sudo: true }).catch(() => undefined);
          throw new Error(
            `k3s did not start${r.code === 124 ? ` within ${startSec}s` : ` (systemctl exit ${r.code})`}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}` +
              (journal?.stdout.trim() ? `\n  last k3s log lines:\n${journal.stdout.trim().replace(/^/gm, '    ')}` : '') +
              `\n  fix: look at \`journalctl -u k3s\` on the POP, then run the install again`,
          );
        }
      });
      done.push(state.active ? 'restarted k3s' : 'started k3s');
    }
    if (changes.dryRun) return { summary: done.length ? `would: ${done.join(', ')}` : 'k3s is installed and unchanged', changes: [] };

    const version = await waitK3sReady(ctx, host, ctx.options.k3sStartTimeoutMs);
    ctx.installed.k3s = bundleOf(ctx).doc.versions.k3s;
    ctx.metrics.k3sSeconds = (Date.now() - t0) / 1000;
    return {
      summary: `${done.length ? done.join(', ') : 'k3s unchanged'}; ready (${version || bundleOf(ctx).doc.versions.k3s})`,
      changes: done,
    };
  },
};
