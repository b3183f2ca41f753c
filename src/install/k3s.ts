// k3s, airgapped: config.yaml and registries.yaml, a token generated once on the POP (0600, never leaves it
// except into the controller's encrypted escrow), the binary, install.sh and image archives assembled from the
// blob store, install.sh with INSTALL_K3S_SKIP_DOWNLOAD (and SKIP_START: we start k3s ourselves under our own
// timeout — the unit has TimeoutStartSec=0), then the gates: /readyz, node Ready, CoreDNS available.
// Idempotent: files are written only when their content differs, k3s is restarted only when something it
// reads at start changed or it is not running. An upgrade (our k3s at another version than the bundle's) keeps
// the running binary first and goes back to it when the new one is not ready in time (k3s-upgrade.ts).

import { formatHostPort } from '../config/formats.js';
import { createHash } from 'node:crypto';
import { Health } from '@kubernetes/client-node';
import { parseAssembleOutput, popAssembleCommand, popAssemblePlan } from '../bundle/pop.js';
import { change, definePhase, type PlannedChange, shellChange } from '../engine/phase.js';
import {
  K3S_CONFIG_PATH,
  K3S_REGISTRIES_PATH,
  K3S_SYSTEMD_UNIT,
  K3S_TOKEN_PATH,
  POP_ASSEMBLE_PLAN,
  POP_INSTALL_SCRIPT,
  POP_PREVIOUS_DIR,
  POP_STORE_DIR,
} from '../engine/pop-layout.js';
import { writeFileScript } from '../engine/script-batch.js';
import { FatalWaitError, pollUntil } from '../kube/poll.js';
import type { Host } from '../transport/host.js';
import { bundleOf, decisionsOf, type InstallContext, popKubeOf } from './context.js';
import { type K3sUpgrade, keepPreviousScript, restartK3sScript, restartUpgradedK3s, waitThenRestartK3sScript } from './k3s-upgrade.js';
import { readyzAnswersLate } from './host-facts.js';
import { endpointHost, renderK3sConfig, renderRegistries } from './render/k3s-config.js';

/** k3s installed by us at another version than the bundle's: this run upgrades (or downgrades) it in place. */
export function k3sUpgradeOf(ctx: InstallContext): K3sUpgrade | undefined {
  const k = ctx.facts?.k3s;
  const to = bundleOf(ctx).doc.versions.k3s;
  if (!k?.ourConfig || !k.version || k.version === to) return undefined;
  return { from: k.version, to };
}

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
  return ctx.site.spec.hub?.apiEndpoint ?? `https://${formatHostPort(h, 6443)}`;
}

export function k3sFiles(ctx: InstallContext): K3sFiles {
  const d = decisionsOf(ctx);
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

// A section of the run's probe: what is there now.
export const K3S_PROBE = `
for f in ${K3S_CONFIG_PATH} ${K3S_REGISTRIES_PATH} ${POP_ASSEMBLE_PLAN}; do
  if [ -f "$f" ]; then echo "sha $f $(sha256sum < "$f" | cut -d' ' -f1)"; else echo "sha $f -"; fi
done
[ -s ${K3S_TOKEN_PATH} ] && echo token=1 || echo token=0
[ -f ${K3S_SYSTEMD_UNIT} ] && echo unit=1 || echo unit=0
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
mkdir -p $(dirname ${K3S_TOKEN_PATH})
if [ ! -s ${K3S_TOKEN_PATH} ]; then
  umask 077
  t=${K3S_TOKEN_PATH}.tmp.$$
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n' > "$t"
  chmod 0600 "$t"
  mv -f "$t" ${K3S_TOKEN_PATH}
  echo created
fi`;

export async function waitK3sReady(ctx: InstallContext, host: Host, timeoutMs: number): Promise<string> {
  const kube = await popKubeOf(ctx, host);
  const health = new Health(kube.kc);
  await pollUntil('the POP API /readyz', async () => ({ done: await health.readyz({}), state: 'not ready' }), {
    timeoutMs,
    intervalMs: 1500,
  });
  const nodeName = ctx.site.metadata.name;
  await pollUntil(
    `node ${nodeName} Ready`,
    async () => {
      const node = await kube.core.readNode({ name: nodeName });
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      return {
        done: ready?.status === 'True',
        state: ready ? `Ready=${ready.status} ${ready.reason ?? ''}`.trim() : 'no Ready condition yet',
      };
    },
    { timeoutMs, intervalMs: 2000 },
  );
  if (!ctx.site.spec.k3s.disable.includes('coredns')) {
    await pollUntil(
      'CoreDNS available',
      async () => {
        const dep = await kube.apps.readNamespacedDeployment({ name: 'coredns', namespace: 'kube-system' });
        const avail = dep.status?.conditions?.find((c) => c.type === 'Available');
        if (avail?.status === 'False' && /ImagePull|ErrImage/.test(avail.message ?? ''))
          throw new FatalWaitError(`CoreDNS cannot start: ${avail.message}`);
        return {
          done: (dep.status?.availableReplicas ?? 0) >= 1,
          state: avail ? `Available=${avail.status} ${avail.message ?? ''}`.trim() : 'no status yet',
        };
      },
      { timeoutMs, intervalMs: 2000 },
    );
  }
  const info = await kube.core.readNode({ name: nodeName });
  return info.status?.nodeInfo?.kubeletVersion ?? '';
}

interface K3sLive extends PopK3sState {
  /** k3s runs, is ready, was configured by us, and is the bundle's version (from the facts section). */
  healthy: boolean;
  /** /readyz answered only when asked again with a longer bound than the facts probe's. */
  answeredLate: boolean;
  assembled: string[];
  /** The journal says an earlier upgrade to this version was rolled back: said again, then tried again. */
  warnings: string[];
}

export const k3sPhase = definePhase<InstallContext, K3sFiles, K3sLive>({
  id: 'k3s',
  title: 'install k3s',
  probe: () => K3S_PROBE,
  prepare: (ctx) => k3sFiles(ctx),
  inputs: (ctx, f) => ({ bundle: bundleOf(ctx).digest, config: sha256(f.config), registries: sha256(f.registries), plan: sha256(f.plan) }),
  async check(ctx, _files, env) {
    const k = ctx.facts?.k3s;
    const ours = Boolean(k?.ourConfig && k.version === bundleOf(ctx).doc.versions.k3s);
    // The probe's short bound ran out: asked again, longer, because the answer decides whether a running k3s of
    // this bundle is left alone (a busy POP) or waited for and, failing that, restarted.
    const answeredLate = Boolean(ours && k?.active && k.readyTimedOut) && (await readyzAnswersLate(env.host));
    const healthy = ours && Boolean(k?.ready || answeredLate);
    const back = ctx.journal?.k3sRollback;
    const warnings =
      back && back.to === bundleOf(ctx).doc.versions.k3s && !healthy
        ? [
            `the last upgrade to k3s ${back.to} (${back.at}) was ${back.outcome === 'rolled-back' ? `rolled back to ${back.from}` : 'not rolled back'}: ${back.reason}; trying again`,
          ]
        : [];
    return { ...parseState(env.probe), healthy, answeredLate, assembled: [], warnings };
  },
  plan(ctx, files, live, env) {
    const changes: PlannedChange[] = [];
    const upgrade = k3sUpgradeOf(ctx);
    if (!live.token) changes.push(shellChange('generate the k3s cluster token (kept on the POP, mode 0600)', TOKEN_SCRIPT));
    for (const [path, text] of [
      [K3S_CONFIG_PATH, files.config],
      [K3S_REGISTRIES_PATH, files.registries],
    ] as const) {
      if (live.sha.get(path) !== sha256(text)) changes.push(shellChange(`write ${path}`, writeFileScript(path, text, 0o600)));
    }
    const planChanged = live.sha.get(POP_ASSEMBLE_PLAN) !== sha256(files.plan);
    // Running, ours, this bundle's version, only /readyz did not say ok (a busy POP, a server still starting):
    // waited for before anything is reassembled or restarted — a restart only sets a starting server back.
    const k = ctx.facts?.k3s;
    const settling = live.active && !live.healthy && !planChanged && Boolean(k?.ourConfig && k.version === bundleOf(ctx).doc.versions.k3s);
    if (planChanged)
      changes.push(shellChange(`write the assembly plan ${POP_ASSEMBLE_PLAN}`, writeFileScript(POP_ASSEMBLE_PLAN, files.plan, 0o644)));
    // Binary, install.sh, chart and image archives from the store (assemble.sh checks each blob's sha256).
    if (planChanged || (!live.healthy && !settling)) {
      // An installed POP: keep what this assembly replaces (the running k3s binary, the FSM chart) to go back to.
      if (ctx.facts?.k3s?.ourConfig)
        changes.push(
          shellChange(
            upgrade
              ? `keep k3s ${upgrade.from} and the FSM chart in ${POP_PREVIOUS_DIR} (the way back)`
              : `keep the FSM chart in ${POP_PREVIOUS_DIR}`,
            keepPreviousScript(upgrade?.from),
          ),
        );
      changes.push(
        shellChange(
          `assemble the k3s binary, install.sh, the FSM chart and ${files.assembleOutputs} outputs from the blob store`,
          popAssembleCommand({ scriptDigest: files.scriptDigest }, { planPath: POP_ASSEMBLE_PLAN, storeDir: POP_STORE_DIR }),
          { timeoutMs: 15 * 60_000, onOutput: (out) => live.assembled.push(...parseAssembleOutput(out).changed) },
        ),
      );
    }
    if (!live.unit || planChanged) {
      changes.push(
        shellChange(
          'run install.sh (INSTALL_K3S_SKIP_DOWNLOAD=true, INSTALL_K3S_SKIP_START=true)',
          `INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_SKIP_START=true INSTALL_K3S_EXEC=server sh ${POP_INSTALL_SCRIPT}`,
          { timeoutMs: 120_000 },
        ),
      );
    }
    if (changes.length || !live.active || !live.healthy) {
      const startSec = Math.round(ctx.options.k3sStartTimeoutMs / 1000);
      if (settling && changes.length === 0) {
        const waitSec = Math.min(120, startSec);
        changes.push(
          shellChange(
            `wait for the running k3s to answer /readyz (restart it only if it does not within ${waitSec}s)`,
            waitThenRestartK3sScript(waitSec, startSec),
            { timeoutMs: (waitSec + startSec + 30) * 1000, fix: 'look at `journalctl -u k3s` on the POP, then run the install again' },
          ),
        );
      } else if (upgrade) {
        changes.push(
          change(`restart k3s on ${upgrade.to} (back to ${upgrade.from} if it is not ready within ${startSec}s)`, () =>
            restartUpgradedK3s(upgrade, {
              host: env.host,
              journal: ctx.journal,
              timeoutMs: ctx.options.k3sStartTimeoutMs,
              waitReady: (ms) => waitK3sReady(ctx, env.host, ms),
            }),
          ),
        );
      } else {
        changes.push(
          shellChange(live.active ? 'restart k3s' : 'start k3s', restartK3sScript(startSec), {
            timeoutMs: (startSec + 15) * 1000,
            fix: 'look at `journalctl -u k3s` on the POP, then run the install again',
          }),
        );
      }
    }
    return changes;
  },
  describe: (ctx, _f, live, changes, dryRun) => ({
    summary:
      dryRun && changes.length
        ? `would: ${changes.join(', ')}`
        : `k3s ${bundleOf(ctx).doc.versions.k3s} installed and unchanged${live.healthy ? `, ready${live.answeredLate ? ' (slow to answer /readyz)' : ''}` : ''}`,
    warnings: live.warnings,
  }),
  async settle(ctx, _files, live, env, applied) {
    const t0 = Date.now();
    const version = await waitK3sReady(ctx, env.host, ctx.options.k3sStartTimeoutMs);
    ctx.installed.k3s = bundleOf(ctx).doc.versions.k3s;
    ctx.metrics.k3sSeconds = (Date.now() - t0) / 1000;
    const done = applied.map((a) =>
      a.startsWith('assemble') && live.assembled.length === 0 ? 'assembled: every output already in place' : a,
    );
    return {
      summary: `${done.length ? done.join(', ') : 'k3s unchanged'}; ready (${version || bundleOf(ctx).doc.versions.k3s})`,
      warnings: live.warnings,
    };
  },
});
