// Refuse early, with the reason and the fix, anything that would fail half-way: an arch the bundle lacks, the
// mesh on 32-bit ARM, too little CPU/RAM/disk, no default route, a k3s someone else installed. Decide the
// interception mode. A hub that cannot be reached is a warning: registration will wait, the POP will not.

import { archBlobs, type BundleDoc, sumBytes } from '../bundle/format.js';
import { type BundleArch, MESH_ARCHES } from '../config/recipe.js';
import type { JournalBundle } from '../engine/journal.js';
import { definePhase, PhaseRefusal } from '../engine/phase.js';
import { LocalHost } from '../transport/local-host.js';
import { bundleOf, factsOf, type InstallContext } from './context.js';
import { hostSupportProblems } from './host-support.js';
import { gatewayPortProblem } from './render/registration.js';
import type { Facts } from './facts.js';
import { parseVersion, versionAtLeast } from './render/interception.js';

export const MIN_CPUS = 2;
export const MIN_MEM_MIB = 1800;
export const COMFORT_MEM_MIB = 3500;
const HEADROOM_MIB = 1024;

export interface EbpfFitness {
  fit: boolean;
  /** Why not, in words an operator can act on. */
  reasons: string[];
}

/**
 * Can this host run FSM's eBPF interception? v1.5+ NodeLevel (xnet, TC programs; the default xnet build
 * wants a 5.15-class kernel) or v1.4 legacy (needs cgroup v2 and ≥ 5.4).
 */
export function ebpfFitness(f: Facts, fsmVersion: string): EbpfFitness {
  const reasons: string[] = [];
  const nodeLevel = versionAtLeast(fsmVersion, '1.5.0');
  const minKernel = nodeLevel ? '5.15' : '5.4';
  let kernelOk = false;
  try {
    const [a, b] = parseVersion(f.kernel);
    const [ma, mb] = parseVersion(minKernel);
    kernelOk = a > ma || (a === ma && b >= mb);
  } catch {
    /* unparsable kernel string: not fit */
  }
  if (!kernelOk) reasons.push(`kernel ${f.kernel} is older than ${minKernel}`);
  if (!f.bpfSyscall) reasons.push('the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL)');
  if (f.arch !== 'amd64' && f.arch !== 'arm64') reasons.push(`no eBPF data-plane build for ${f.machine}`);
  if (!nodeLevel && !f.cgroupV2) reasons.push('FSM ≤1.4 eBPF needs cgroup v2 (unified hierarchy)');
  return { fit: reasons.length === 0, reasons };
}

export interface PreflightInput {
  facts: Facts;
  siteArch: 'auto' | BundleArch;
  bundleArches: BundleArch[];
  bundleK3sVersion: string;
  fsmVersion: string;
  interception: 'auto' | 'ebpf' | 'iptables';
  /** Bytes this arch receives (blob store) — the POP needs about twice that plus headroom. */
  archBytes: number;
  /** The POP is reached over SSH (its sshd must allow the API tunnel); false when fsm-edge runs on the POP. */
  overSsh?: boolean;
}

export interface PreflightResult {
  arch: BundleArch;
  interception: 'ebpf' | 'iptables';
  interceptionReason: string;
  warnings: string[];
}

const P = 'preflight';

/** Pure: every refusal and decision, from facts and the plan. */
export function preflightDecide(i: PreflightInput): PreflightResult {
  const f = i.facts;
  const warnings: string[] = [];
  if (!f.arch) {
    throw new PhaseRefusal(
      P,
      `this POP is ${f.machine}, which neither k3s nor FSM is built for`,
      'use an x86_64 or aarch64 (64-bit ARM) machine',
    );
  }
  if (i.siteArch !== 'auto' && i.siteArch !== f.arch) {
    throw new PhaseRefusal(
      P,
      `the Site says arch ${i.siteArch} but the POP reports ${f.machine} (${f.arch})`,
      `set spec.arch to ${f.arch} (or auto) in the Site, or check spec.ssh.host points at the right machine`,
    );
  }
  if (!(MESH_ARCHES as readonly string[]).includes(f.arch)) {
    throw new PhaseRefusal(
      P,
      `FSM cannot run on 32-bit ARM (${f.machine}): Pipy and the FSM images have no armv7 build`,
      'install a 64-bit OS (arm64/aarch64) on this board',
    );
  }
  if (!i.bundleArches.includes(f.arch)) {
    throw new PhaseRefusal(
      P,
      `the bundle has no ${f.arch} content (it holds ${i.bundleArches.join(', ') || 'nothing'})`,
      `build a bundle for ${f.arch} (\`fsm-edge bundle build --arch ${f.arch}\`) and pass it with --bundle`,
    );
  }
  // openrc is refused (the k3s phase drives systemd), and so is an sshd that would refuse the API tunnel.
  const host = hostSupportProblems({ init: f.init, ...(f.sshd ? { sshd: f.sshd } : {}) }, { overSsh: i.overSsh !== false });
  if (host.length) throw new PhaseRefusal(P, host.map((x) => x.reason).join('; '), host.map((x) => x.fix).join('; '));
  if (f.cpus < MIN_CPUS) {
    throw new PhaseRefusal(P, `${f.cpus} CPU; k3s with FSM needs at least ${MIN_CPUS}`, 'use a POP with 2 or more cores');
  }
  if (f.memMiB < MIN_MEM_MIB) {
    throw new PhaseRefusal(
      P,
      `${f.memMiB} MiB RAM; a k3s server with FSM needs at least ${MIN_MEM_MIB} MiB (2 GiB)`,
      'use a POP with 2 GiB RAM or more (4 GiB recommended)',
    );
  }
  if (f.memMiB < COMFORT_MEM_MIB) warnings.push(`${f.memMiB} MiB RAM is tight for k3s + FSM; keep mesh.profile edge-small`);
  const ours = f.k3s?.ourConfig === true;
  const needMiB = ours ? 512 : Math.ceil((2 * i.archBytes) / 2 ** 20) + HEADROOM_MIB;
  if (f.diskFreeMiB < needMiB) {
    throw new PhaseRefusal(
      P,
      `${f.diskFreeMiB} MiB free under /var/lib; this install needs about ${needMiB} MiB (the bundle's blobs, the image archives made from them, k3s data)`,
      'free space under /var/lib (or grow the disk) and run again',
    );
  }
  if (!f.defaultRoute) {
    throw new PhaseRefusal(
      P,
      'the POP has no default route; k3s needs one to pick its node IP and for service routing, even airgapped',
      'add a default route, or a blackhole one: `ip link add dummy0 type dummy; ip addr add 203.0.113.254/31 dev dummy0; ip route add default via 203.0.113.255 dev dummy0 metric 1000`',
    );
  }
  if (f.k3s && !ours && f.k3s.version !== i.bundleK3sVersion) {
    throw new PhaseRefusal(
      P,
      `k3s ${f.k3s.version} is already installed, not by fsm-edge, and the bundle carries ${i.bundleK3sVersion}`,
      'uninstall it (`/usr/local/bin/k3s-uninstall.sh`, after backing up what it runs) or use a bundle with that k3s version',
    );
  }
  if (f.k3s && ours && f.k3s.version !== i.bundleK3sVersion) {
    warnings.push(`k3s will change from ${f.k3s.version} to ${i.bundleK3sVersion}`);
  }

  const fit = ebpfFitness(f, i.fsmVersion);
  let interception: 'ebpf' | 'iptables';
  let interceptionReason: string;
  if (i.interception === 'ebpf') {
    if (!fit.fit) {
      throw new PhaseRefusal(
        P,
        `eBPF interception was asked for, but ${fit.reasons.join('; ')}`,
        'set spec.mesh.interception to iptables (or auto), or upgrade the POP kernel',
      );
    }
    interception = 'ebpf';
    interceptionReason = 'eBPF as configured; the kernel supports it';
  } else if (i.interception === 'iptables') {
    interception = 'iptables';
    interceptionReason = 'iptables as configured';
  } else if (fit.fit) {
    interception = 'ebpf';
    interceptionReason = `eBPF (auto): kernel ${f.kernel} supports it`;
  } else {
    interception = 'iptables';
    interceptionReason = `iptables (auto): ${fit.reasons.join('; ')}`;
    warnings.push(`eBPF interception is not possible here (${fit.reasons.join('; ')}); using iptables`);
  }
  return { arch: f.arch, interception, interceptionReason, warnings };
}

/**
 * A signed but older bundle must not silently take a POP back (rollback attack, or the wrong USB stick): refuse
 * one older than the bundle the POP's journal last installed, unless the operator says so.
 */
export function downgradeRefusal(installed: JournalBundle | undefined, doc: BundleDoc, allow: boolean): PhaseRefusal | undefined {
  if (!installed?.serial || allow) return undefined;
  // Serials are monotonic per builder (bundle build); equal is the same build.
  if (doc.build.serial >= installed.serial) return undefined;
  return new PhaseRefusal(
    P,
    `the POP runs bundle ${installed.name} (build ${installed.serial}${installed.createdAt ? `, ${installed.createdAt}` : ''}), newer than ${doc.name} (build ${doc.build.serial}, ${doc.build.createdAt})`,
    'use the newer bundle, or pass --allow-downgrade if going back is intended',
  );
}

interface PreflightLive {
  result: PreflightResult;
  warnings: string[];
}

export const preflightPhase = definePhase<InstallContext, undefined, PreflightLive>({
  id: 'preflight',
  title: 'preflight checks',
  always: true,
  async check(ctx, _prep, env) {
    const facts = factsOf(ctx);
    const doc = bundleOf(ctx).doc;
    const downgrade = downgradeRefusal(ctx.journal?.bundle, doc, ctx.options.allowDowngrade === true);
    if (downgrade) throw downgrade;
    const gateway = gatewayPortProblem(ctx.site.spec);
    if (gateway) throw new PhaseRefusal(P, gateway, 'remove servicelb from spec.k3s.disable, or do not register this POP with a hub');
    const arch = facts.arch;
    const content = arch ? doc.arches[arch] : undefined;
    const r = preflightDecide({
      facts,
      siteArch: ctx.site.spec.arch,
      bundleArches: Object.keys(doc.arches) as BundleArch[],
      bundleK3sVersion: doc.versions.k3s,
      fsmVersion: doc.versions.fsm,
      interception: ctx.site.spec.mesh.interception,
      archBytes: content ? sumBytes(archBlobs(content)) : 0,
      overSsh: !(env.host instanceof LocalHost),
    });
    const warnings = [...r.warnings];
    let hubReachable: boolean | undefined;
    if (ctx.site.spec.hub && ctx.hubKube) {
      const reach = await ctx.hubKube.reachable();
      hubReachable = reach.ok;
      if (!reach.ok) {
        warnings.push(
          `the hub (${ctx.hubKube.server}) is not reachable now (${reach.reason}); the POP will be installed and its registration left pending — run \`fsm-edge register\` later`,
        );
      }
    }
    ctx.decisions = {
      arch: r.arch,
      // preflightDecide refused every arch the bundle lacks.
      content: content!,
      interception: r.interception,
      interceptionReason: r.interceptionReason,
      ...(hubReachable !== undefined ? { hubReachable } : {}),
    };
    return { result: r, warnings };
  },
  plan: () => [],
  describe: (_ctx, _prep, live) => ({ summary: `${live.result.arch}, ${live.result.interceptionReason}`, warnings: live.warnings }),
});
