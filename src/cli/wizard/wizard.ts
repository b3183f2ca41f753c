// `fsm-edge init`: the questions, in the order an operator thinks about a new POP, each answer checked where it
// is given. It connects as soon as it can, shows what it found, and ends by handing the file it wrote to the
// install command. Nothing here installs, probes or validates on its own: it calls config, transport, the
// facts/preflight logic and `fsm-edge install`.

import { formatHostPort } from '../../config/formats.js';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadConfigFile, resolveSecret, parseSecretRefArg, type Site } from '../../config/index.js';
import type { MESH_PROFILES } from '../../config/site.js';
import { checkApiEndpoint, checkHost, checkK8sName, checkLabelValue } from '../../config/formats.js';
import { formatBytes } from '../../bundle/inspect.js';
import { describeFacts, type Facts, k3sHealthWord, probeFacts } from '../../install/facts.js';
import { ebpfFitness, preflightDecide, COMFORT_MEM_MIB } from '../../install/preflight.js';
import { PhaseRefusal } from '../../engine/phase.js';
import { archBlobs, readBundleDoc, sumBytes } from '../../bundle/format.js';
import type { BundleArch } from '../../config/recipe.js';
import type { SshHost } from '../../transport/ssh-host.js';
import type { LocalHost } from '../../transport/local-host.js';
import { CliError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, type Output } from '../output.js';
import { readSiteRecord, type SiteRecord } from '../../state/site-record.js';
import { stateDir } from '../../state/paths.js';
import type { Ask, Choice } from './ask.js';
import { checkKeyFile, passphraseProblem, siteNameProblem, sshBannerProblem } from './answer-checks.js';
import { bundleChoices, describeBundle, loadTrustedKeys, short, trustKeyCandidates, type BundleChoice } from './bundle-choices.js';
import { connectWithPinning, popOwnAddress } from './connect-pop.js';
import {
  hubDocuments,
  hubNameFromContext,
  kubeconfigContexts,
  kubeconfigFiles,
  type ContextChoice,
  type HubFileChoice,
} from './hub-choices.js';
import { installArgv, openWizardBundle, printStatus, runWizardInstall, shellWords } from './install-step.js';
import {
  checkDocuments,
  hubData,
  parseSite,
  renderSiteFile,
  siteData,
  type HopAnswers,
  type HubAnswers,
  type Login,
  type NewHub,
  type WizardAnswers,
} from './site-document.js';
import { commitTemp, discardPending, writeTemp } from './site-file.js';
import { formatSshTarget, parseSshTarget, type SshTarget } from './target.js';

export interface InitOptions {
  /** The site file: read for defaults when it exists, (re)written at the end. */
  file: string;
  name?: string;
  ssh?: string;
  identityFile?: string;
  agent?: boolean;
  jump?: string;
  bundle?: string;
  trustKeys: string[];
  hub?: string;
  bundlesDir: string;
  install: boolean;
}

type Connected = SshHost | LocalHost;

/** The wizard's state while it runs; `close()` ends the connection. */
class Session {
  host: Connected | undefined;
  async close(): Promise<void> {
    const h = this.host;
    this.host = undefined;
    await h?.close().catch(() => {});
  }
}

interface Existing {
  site?: Site;
  raw?: Record<string, unknown>;
  hubDocInFile?: Record<string, unknown>;
}

function readExisting(file: string): Existing {
  if (!existsSync(file)) return {};
  // The same loader install uses: a broken file is reported as file:line:column, not half-used.
  const docs = loadConfigFile(file);
  const sites = docs.filter((d) => d.kind === 'Site');
  if (sites.length !== 1)
    throw new CliError(
      `${file} holds ${sites.length} Site documents; the wizard edits a file with exactly one`,
      EXIT_USAGE,
      'usage',
      'name a new file: fsm-edge init new-site.yaml',
    );
  const raws = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => ('toJS' in d ? (d.toJS() as Record<string, unknown>) : undefined));
  return {
    site: sites[0]!.value as Site,
    raw: raws.find((r) => r?.kind === 'Site'),
    ...(raws.find((r) => r?.kind === 'Hub') ? { hubDocInFile: raws.find((r) => r?.kind === 'Hub')! } : {}),
  };
}

function hopFromConfig(
  e: {
    host: string;
    port: number;
    user: string;
    identityFile?: string | undefined;
    agent?: boolean | undefined;
    passphrase?: unknown;
    hostKeys: string[];
  },
  raw?: Record<string, unknown>,
): HopAnswers {
  // Paths as written in the file (relative to it), not as the loader absolutized them.
  const login: Login = e.agent
    ? { agent: true }
    : {
        identityFile: (raw?.identityFile as string | undefined) ?? e.identityFile ?? '~/.ssh/id_ed25519',
        ...(raw?.passphrase ? { passphrase: raw.passphrase as { env: string } } : {}),
      };
  return { host: e.host, port: e.port, user: e.user, login, hostKeys: [...e.hostKeys] };
}

export async function runWizard(opts: InitOptions, ask: Ask, out: Output): Promise<number> {
  const c = out.color;
  const say = (line = '') => out.line(line);
  const file = opts.file;
  const fileDir = dirname(resolve(file));
  const existing = readExisting(file);
  const ex = existing.site;
  const session = new Session();

  // Ctrl-C outside a prompt (while connecting, probing, planning): nothing half-written, then exit 130.
  const onSigint = () => {
    discardPending();
    out.io.stderr.write(`\n${c.yellow('stopped')}: nothing was written${ex ? ` (${file} is as it was)` : ''}\n`);
    process.exit(130);
  };
  process.on('SIGINT', onSigint);
  try {
    say(c.bold('fsm-edge init') + ` — describe a POP, connect to it, write ${file}${opts.install ? ', install' : ''}`);
    if (ex) say(c.dim(`Defaults come from ${file} (site ${ex.metadata.name}).`));
    say(c.dim('Enter accepts the default shown in (brackets). Ctrl-C stops without writing anything.'));
    say('');

    // --- the site and how to reach it ---------------------------------------------------------------
    let name: string;
    for (;;) {
      name = await ask.text({
        message: 'Site name (becomes the Cluster name on the hub)',
        ...defaultOf(opts.name ?? ex?.metadata.name),
        validate: (v) => siteNameProblem(v, fileDir, file),
        flag: '--name',
      });
      // A site installed from this controller under that name, whose file is not the one being edited.
      const rec = name === ex?.metadata.name ? undefined : readSiteRecordSafe(name);
      if (!rec) break;
      say(
        `${c.yellow('!')} a site named ${name} is already installed from this machine: ${rec.host.user}@${rec.host.address}:${rec.host.port}, last run ${rec.lastRun?.startedAt ?? rec.updatedAt}`,
      );
      if (await ask.yesNo({ message: `Is this that same POP (you are re-creating its site file)?`, default: false })) break;
      if (!ask.interactive)
        throw new UsageError(
          `the site name ${name} is already used by an installed site`,
          'pick another name with --name, or edit that site’s own file: fsm-edge init FILE',
        );
    }

    const rawSsh = ((existing.raw?.spec as Record<string, unknown> | undefined)?.ssh ?? {}) as Record<string, unknown>;
    let pop: HopAnswers | undefined = ex ? hopFromConfig(ex.spec.ssh, rawSsh) : undefined;
    let jump: HopAnswers | undefined = ex?.spec.ssh.jumpHosts[0]
      ? hopFromConfig(ex.spec.ssh.jumpHosts[0], (rawSsh.jumpHosts as Record<string, unknown>[] | undefined)?.[0])
      : undefined;
    // A login flag beats the file: it is the default of the login questions.
    const flagLogin: Login | undefined = opts.agent ? { agent: true } : opts.identityFile ? { identityFile: opts.identityFile } : undefined;
    let facts: Facts | undefined;
    let wantJump = Boolean(opts.jump ?? jump);
    for (;;) {
      wantJump = await ask.yesNo({ message: 'Is the POP reached through a jump host (bastion)?', default: wantJump });
      let jumpTarget: SshTarget | undefined;
      if (wantJump) {
        jumpTarget = await askTarget(
          ask,
          'Jump host (user@host[:port])',
          opts.jump ?? (jump ? formatSshTarget(jump) : undefined),
          true,
          '--jump',
        );
      }
      const popTarget = await askTarget(
        ask,
        'SSH target of the POP (user@host[:port])',
        opts.ssh ?? (pop ? formatSshTarget(pop) : undefined),
        !wantJump,
        '--ssh',
      );
      const login = await askLogin(ask, flagLogin ?? pop?.login, fileDir, out);
      pop = { ...popTarget, login, hostKeys: samePlace(pop, popTarget) ? pop!.hostKeys : [] };
      jump = jumpTarget ? { ...jumpTarget, login, hostKeys: samePlace(jump, jumpTarget) ? jump!.hostKeys : [] } : undefined;

      say(c.dim(`  connecting to ${formatSshTarget(pop)}${jump ? ` through ${formatSshTarget(jump)}` : ''} …`));
      const hops = { pop, ...(jump ? { jump } : {}) };
      const draft = () =>
        parseSite(
          siteData(
            {
              name,
              pop: hops.pop,
              ...(hops.jump ? { jump: hops.jump } : {}),
              mesh: { interception: 'auto', profile: 'edge-small', ingress: true },
            },
            file,
            existing.raw,
          ),
        );
      const r = await connectWithPinning(draft, hops, { ask, say, bold: c.bold }, fileDir);
      if (r.host) {
        session.host = r.host;
        try {
          facts = await probeFacts(r.host);
          break;
        } catch (e) {
          await session.close();
          r.problem = `connected, but reading the POP's facts failed: ${(e as Error).message}`;
        }
      }
      say(`${c.red('✗')} ${r.problem}`);
      if (!ask.interactive) throw new CliError(r.problem ?? 'connection failed', EXIT_FAILED, 'connect');
      say(c.dim('  Check the answers below and try again (Ctrl-C to stop).'));
    }
    say(`${c.green('✓')} connected; host key ${pop.hostKeys[0]} pinned${jump ? `, jump host ${jump.hostKeys[0]}` : ''}`);
    showFacts(facts, say, c);

    // --- the bundle ----------------------------------------------------------------------------------
    const arch = facts.arch;
    // Only asked when some bundle could fit: the key that signed it is offered first.
    const signers = arch ? bundleChoices(opts.bundlesDir, arch, []).flatMap((b) => (b.blobs > 0 && b.signer ? [b.signer] : [])) : [];
    const trustKeys =
      opts.trustKeys.length || signers.length === 0
        ? opts.trustKeys
        : await askTrustKey(ask, [fileDir, process.cwd(), resolve('airgap')], signers);
    const trusted = trustKeys.length ? loadTrustedKeys(trustKeys) : [];
    const choices = arch ? bundleChoices(opts.bundlesDir, arch, trusted) : [];
    let bundle: BundleChoice | undefined;
    if (!arch) say(`${c.yellow('!')} no bundle can fit a ${facts.machine} POP`);
    else if (choices.length === 0)
      say(
        `${c.yellow('!')} no bundles in ${opts.bundlesDir}: build one with \`fsm-edge bundle build --arch ${arch}\`; the wizard will still write ${file}`,
      );
    else {
      const usable = choices.filter((b) => !b.unusable);
      const preferred = opts.bundle ? choices.find((b) => resolve(b.dir) === resolve(opts.bundle!)) : usable[usable.length - 1];
      const picked = await ask.choose<string>({
        message: `Bundle for this ${arch} POP (from ${opts.bundlesDir})`,
        choices: [
          ...choices.map(
            (b): Choice<string> => ({
              value: b.dir,
              name: describeBundle(b),
              ...(b.unusable
                ? { disabled: b.unusable }
                : { description: `signed by ${short(b.signer!)}; blobs already on the POP are not sent again` }),
            }),
          ),
          { value: '', name: 'none now: only write the site file' },
        ],
        ...(preferred && !preferred.unusable ? { default: preferred.dir } : { default: '' }),
        flag: '--bundle',
      });
      bundle = choices.find((b) => b.dir === picked);
    }

    // --- the mesh ------------------------------------------------------------------------------------
    const fsmVersion = bundle?.versions?.fsm ?? '1.5.0';
    const fit = ebpfFitness(facts, fsmVersion);
    const why = fit.fit
      ? `eBPF works here (kernel ${facts.kernel}, FSM ${fsmVersion})`
      : `eBPF is not possible here: ${fit.reasons.join('; ')}`;
    say(c.dim(`  ${why}`));
    const interception = await ask.choose<'auto' | 'ebpf' | 'iptables'>({
      message: 'Traffic interception',
      choices: [
        {
          value: 'auto',
          name: `auto — ${fit.fit ? 'eBPF on this POP' : 'iptables on this POP'}, decided again at each install`,
          description: why,
        },
        {
          value: 'ebpf',
          name: 'ebpf',
          ...(fit.fit ? { description: 'faster, no iptables rules in pods' } : { disabled: fit.reasons.join('; ') }),
        },
        { value: 'iptables', name: 'iptables', description: 'works on every kernel' },
      ],
      default: ex?.spec.mesh.interception && (ex.spec.mesh.interception !== 'ebpf' || fit.fit) ? ex.spec.mesh.interception : 'auto',
    });
    const profileDefault = ex?.spec.mesh.profile ?? (facts.memMiB >= 2 * COMFORT_MEM_MIB ? 'edge-medium' : 'edge-small');
    const profile = await ask.choose<(typeof MESH_PROFILES)[number]>({
      message: `Resource profile (${(facts.memMiB / 1024).toFixed(1)} GiB RAM, ${facts.cpus} CPU)`,
      choices: [
        { value: 'edge-small', name: 'edge-small — boards with 2–4 GiB RAM' },
        { value: 'edge-medium', name: 'edge-medium — small PCs with 8 GiB or more' },
        { value: 'upstream', name: 'upstream — the FSM chart’s own requests and limits' },
      ],
      default: profileDefault,
    });
    const ingress = await ask.yesNo({
      message: 'Deploy the FSM ingress (needed to export services to other sites)?',
      default: ex?.spec.mesh.ingress ?? true,
    });

    if (bundle && arch && bundle.versions) showPreflight(facts, bundle, interception, say, c);

    // --- the hub -------------------------------------------------------------------------------------
    const ownAddress =
      isLoopback(pop.host) && session.host ? await popOwnAddress(session.host, facts.defaultRoute).catch(() => undefined) : undefined;
    const { hub, newHub, hubFile } = await askHub(ask, { opts, existing, file, fileDir, popHost: pop.host, ownAddress, name, say, c });

    // --- the file and the plan -----------------------------------------------------------------------
    const answers: WizardAnswers = {
      name,
      pop,
      ...(jump ? { jump } : {}),
      mesh: { interception, profile, ingress },
      ...(hub ? { hub } : {}),
      ...(newHub ? { newHub } : {}),
    };
    const site = siteData(answers, file, existing.raw);
    const hubDoc = newHub ? hubData(newHub, file) : undefined;
    const problems = checkDocuments(site, hubDoc);
    if (problems.length) throw new CliError(`the answers do not make a valid site: ${problems.join('; ')}`, EXIT_FAILED, 'internal');
    const install = bundle ? installArgv({ siteFile: file, bundleDir: bundle.dir, trustKeys, ...(hubFile ? { hubFile } : {}) }) : undefined;
    const header = [
      `Written by fsm-edge init for POP ${name} (${facts.machine}, ${facts.os.pretty || facts.os.id}).`,
      install ? `Install or re-run: fsm-edge ${shellWords(install)}` : `Install: fsm-edge install ${file} --bundle DIR --trust-key KEY`,
    ];
    const text = renderSiteFile(site, hubDoc, header);
    const tmp = writeTemp(file, text);

    let choice: 'install' | 'save' | 'discard' = 'save';
    let shared: Awaited<ReturnType<typeof openWizardBundle>> | undefined;
    if (install && bundle) {
      say('');
      say(
        c.bold('The plan') +
          c.dim(` — fsm-edge install --dry-run on a draft of ${file} (${relative(process.cwd(), tmp) || tmp}); nothing is changed`),
      );
      shared = await openWizardBundle(bundle.dir, trustKeys).catch((e: Error) => {
        say(`${c.red('✗')} the bundle cannot be used: ${e.message}`);
        return undefined;
      });
      const planCode =
        shared && session.host
          ? await runWizardInstall(
              { siteFile: tmp, finalFile: file, ...(hubFile ? { hubFile } : {}), bundle: shared, host: session.host, dryRun: true },
              out,
            )
          : EXIT_FAILED;
      if (planCode !== EXIT_OK)
        say(`${c.yellow('!')} the dry run did not succeed (exit ${planCode}); see above. You can still save the file and install later.`);
      say('');
      choice = await ask.choose<'install' | 'save' | 'discard'>({
        message: 'Go?',
        choices: [
          {
            value: 'install',
            name: `install now (writes ${file} first)`,
            ...(planCode === EXIT_OK ? {} : { disabled: 'the dry run failed' }),
          },
          { value: 'save', name: `only write ${file}; install later` },
          { value: 'discard', name: 'discard: write nothing' },
        ],
        default: planCode === EXIT_OK && opts.install ? 'install' : 'save',
      });
    } else {
      choice = (await ask.yesNo({ message: `Write ${file}?`, default: true })) ? 'save' : 'discard';
    }
    if (choice === 'discard') {
      discardPending();
      say('Nothing was written.');
      return EXIT_OK;
    }
    commitTemp(tmp, file);
    say(`${c.green('✓')} wrote ${file}${hubDoc ? ` (Site ${name} and Hub ${newHub!.name})` : ` (Site ${name})`}`);
    if (choice === 'save' || !install) {
      say(
        install
          ? `Install it with:\n  fsm-edge ${shellWords(install)}`
          : `Install it, once a bundle is built, with:\n  fsm-edge install ${file} --bundle DIR --trust-key KEY`,
      );
      return EXIT_OK;
    }
    say('');
    say(c.bold('Installing') + c.dim(` — fsm-edge ${shellWords(install)}`));
    process.off('SIGINT', onSigint); // from here on the install handles Ctrl-C; the site file is complete
    const code =
      shared && session.host
        ? await runWizardInstall(
            { siteFile: file, finalFile: file, ...(hubFile ? { hubFile } : {}), bundle: shared, host: session.host, dryRun: false },
            out,
          )
        : EXIT_FAILED;
    say('');
    say(c.bold('Status'));
    printStatus(file, hubFile, out);
    if (code !== EXIT_OK)
      say(`${c.yellow('!')} the install stopped (exit ${code}); fix what it says and run:\n  fsm-edge ${shellWords(install)}`);
    return code;
  } finally {
    process.off('SIGINT', onSigint);
    discardPending();
    await session.close();
  }
}

/** The controller's record of an installed site; an unreadable record counts as none (status reports it). */
function readSiteRecordSafe(name: string): SiteRecord | undefined {
  try {
    return readSiteRecord(stateDir(), name);
  } catch {
    return undefined;
  }
}

function defaultOf(v: string | undefined): { default?: string } {
  return v === undefined ? {} : { default: v };
}

function samePlace(a: SshTarget | undefined, b: SshTarget): boolean {
  return a !== undefined && a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port;
}

function isLoopback(host: string): boolean {
  return /^127\./.test(host) || host === '::1' || host === 'localhost';
}

async function askTarget(ask: Ask, message: string, def: string | undefined, checkReach: boolean, flag: string): Promise<SshTarget> {
  let parsed: SshTarget | undefined;
  await ask.text({
    message,
    ...defaultOf(def),
    flag,
    validate: async (v) => {
      const p = parseSshTarget(v);
      if (!p.ok) return p.problem;
      if (checkReach) {
        const problem = await sshBannerProblem(p.target.host, p.target.port);
        if (problem) return problem;
      }
      parsed = p.target;
      return undefined;
    },
  });
  return parsed!;
}

async function askLogin(ask: Ask, def: Login | undefined, baseDir: string, out: Output): Promise<Login> {
  const agentSock = process.env.SSH_AUTH_SOCK;
  const how = await ask.choose<'key' | 'agent'>({
    message: 'Log in with',
    choices: [
      { value: 'key', name: 'a private key file' },
      { value: 'agent', name: 'the keys of the running ssh-agent', ...(agentSock ? {} : { disabled: 'SSH_AUTH_SOCK is not set' }) },
    ],
    default: def && 'agent' in def && agentSock ? 'agent' : 'key',
  });
  if (how === 'agent') return { agent: true };
  let encrypted = false;
  const identityFile = await ask.text({
    message: 'Private key file',
    default: def && 'identityFile' in def ? def.identityFile : '~/.ssh/id_ed25519',
    flag: '--identity-file',
    validate: (v) => {
      const r = checkKeyFile(v, baseDir);
      if (!r.ok) return r.problem;
      encrypted = r.encrypted;
      return undefined;
    },
  });
  if (!encrypted) return { identityFile };
  out.line(out.color.dim('  The key is encrypted. Its passphrase is never written: say where install reads it from.'));
  const prev =
    def && 'identityFile' in def && def.passphrase
      ? 'env' in def.passphrase
        ? `env:${def.passphrase.env}`
        : `file:${def.passphrase.file}`
      : undefined;
  const refText = await ask.text({
    message: 'Passphrase from (env:NAME or file:PATH)',
    ...defaultOf(prev),
    validate: (v) => {
      try {
        const ref = parseSecretRefArg(v, 'passphrase');
        return passphraseProblem(identityFile, resolveSecret(ref, baseDir), baseDir);
      } catch (e) {
        return (e as Error).message;
      }
    },
  });
  return { identityFile, passphrase: parseSecretRefArg(refText, 'passphrase') };
}

async function askTrustKey(ask: Ask, dirs: string[], signers: string[]): Promise<string[]> {
  const found = [...new Set(trustKeyCandidates(dirs).map((f) => relative(process.cwd(), f) || f))];
  const signs = (f: string) => signers.includes(loadTrustedKeys([f])[0]!.id);
  const candidates = [...found.filter(signs), ...found.filter((f) => !signs(f))];
  const answer = await ask.text({
    message: 'Public key bundles must be signed with (PEM, from `fsm-edge bundle keygen`)',
    ...defaultOf(candidates[0]),
    flag: '--trust-key',
    validate: (v) => {
      try {
        loadTrustedKeys([v]);
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
    },
  });
  return [answer];
}

function showFacts(f: Facts, say: (l: string) => void, c: Output['color']): void {
  say('');
  say(c.bold('What the POP is'));
  say(`  arch      ${f.arch ?? c.red('unsupported')} (${f.machine})`);
  say(`  OS        ${f.os.pretty || f.os.id}, kernel ${f.kernel}, init ${f.init}`);
  say(`  size      ${f.cpus} CPU, ${(f.memMiB / 1024).toFixed(1)} GiB RAM, ${(f.diskFreeMiB / 1024).toFixed(1)} GiB free under /var/lib`);
  say(`  network   ${f.defaultRoute ? `default route via ${f.defaultRoute}` : c.yellow('no default route')}`);
  say(
    `  k3s       ${f.k3s ? `${f.k3s.version} (${k3sHealthWord(f.k3s)})${f.k3s.ourConfig ? ', installed by fsm-edge' : ', not installed by fsm-edge'}` : 'not installed'}`,
  );
  say(c.dim(`  (${describeFacts(f)})`));
  say('');
}

/** The install's own preflight decision, shown now so a refusal is no surprise at the end. */
function showPreflight(
  f: Facts,
  b: BundleChoice,
  interception: 'auto' | 'ebpf' | 'iptables',
  say: (l: string) => void,
  c: Output['color'],
): void {
  try {
    const doc = readBundleDoc(b.dir);
    const content = doc.arches[f.arch as BundleArch];
    const r = preflightDecide({
      facts: f,
      siteArch: 'auto',
      bundleArches: Object.keys(doc.arches) as BundleArch[],
      bundleK3sVersion: doc.versions.k3s,
      fsmVersion: doc.versions.fsm,
      interception,
      archBytes: content ? sumBytes(archBlobs(content)) : 0,
    });
    say(`${c.green('✓')} preflight: ${r.interceptionReason}; ${formatBytes(b.bytes)} to send at most`);
    for (const w of r.warnings) say(`${c.yellow('!')} ${w}`);
  } catch (e) {
    if (!(e instanceof PhaseRefusal)) throw e;
    say(`${c.red('✗')} the install will refuse this POP: ${e.reason}`);
    say(`  fix: ${e.fix}`);
  }
}

interface HubContext {
  opts: InitOptions;
  existing: Existing;
  file: string;
  fileDir: string;
  popHost: string;
  ownAddress: string | undefined;
  name: string;
  say: (l: string) => void;
  c: Output['color'];
}

async function askHub(ask: Ask, h: HubContext): Promise<{ hub?: HubAnswers; newHub?: NewHub; hubFile?: string }> {
  const ex = h.existing.site?.spec.hub;
  const docs = hubDocuments(h.opts.hub ? [h.opts.hub] : [], [h.fileDir, process.cwd()]).filter((d) => resolve(d.file) !== resolve(h.file));
  const contexts = kubeconfigContexts(kubeconfigFiles());
  type Pick = { kind: 'none' } | { kind: 'same-file' } | HubFileChoice | ContextChoice;
  const choices: Choice<Pick>[] = [];
  const inFile = h.existing.hubDocInFile;
  const inFileName = (inFile?.metadata as { name?: string } | undefined)?.name;
  if (inFile && inFileName) choices.push({ value: { kind: 'same-file' }, name: `Hub ${inFileName} (already in ${h.file})` });
  for (const d of docs)
    choices.push({
      value: d,
      name: `Hub ${d.name} from ${relative(process.cwd(), d.file) || d.file}${d.context ? ` (context ${d.context})` : ''}`,
    });
  for (const k of contexts)
    choices.push({
      value: k,
      name: `kubeconfig context ${k.context}${k.server ? ` → ${k.server}` : ''}`,
      description: `from ${k.kubeconfigFile}; a Hub document is written next to the Site`,
    });
  choices.push({ value: { kind: 'none' }, name: 'no hub: a standalone POP' });
  const def =
    (h.opts.hub
      ? choices.find((x) => x.value.kind === 'file' && resolve((x.value as HubFileChoice).file) === resolve(h.opts.hub!))
      : undefined) ??
    (ex
      ? choices.find(
          (x) =>
            (x.value.kind === 'same-file' && inFileName === ex.ref) ||
            (x.value.kind === 'file' && (x.value as HubFileChoice).name === ex.ref),
        )
      : undefined) ??
    (ex || h.opts.hub ? undefined : choices.find((x) => x.value.kind === 'none'));
  const pick = await ask.choose<Pick>({
    message: 'Federation hub to register with',
    choices,
    ...(def ? { default: def.value } : {}),
    flag: '--hub',
  });
  if (pick.kind === 'none') return {};

  let ref: string;
  let newHub: NewHub | undefined;
  let hubFile: string | undefined;
  if (pick.kind === 'same-file') {
    ref = inFileName!;
    const spec = inFile!.spec as { kubeconfig?: { file?: string }; context?: string };
    if (spec.kubeconfig?.file && spec.context) newHub = { name: ref, kubeconfigFile: spec.kubeconfig.file, context: spec.context };
    else throw new CliError(`the Hub in ${h.file} does not use a kubeconfig file and context; edit it by hand`, EXIT_USAGE, 'usage');
  } else if (pick.kind === 'file') {
    ref = pick.name;
    hubFile = relative(process.cwd(), pick.file) || pick.file;
  } else {
    const hubName = await ask.text({
      message: 'Name for this hub (sites refer to it in spec.hub.ref)',
      default: hubNameFromContext(pick.context),
      validate: (v) => checkK8sName(v),
    });
    ref = hubName;
    newHub = { name: hubName, kubeconfigFile: pick.kubeconfigFile, context: pick.context };
  }
  const label = (v: string) => checkLabelValue(v);
  const labels = (h.existing.site?.metadata.labels ?? {}) as Record<string, string>;
  const region = await ask.text({ message: 'Region', default: ex?.region ?? labels.region ?? 'default', validate: label });
  const zone = await ask.text({ message: 'Zone', default: ex?.zone ?? labels.zone ?? 'default', validate: label });
  const group = await ask.text({ message: 'Group', default: ex?.group ?? 'default', validate: label });
  const gwDefault = ex?.gateway?.host ?? (isLoopback(h.popHost) ? h.ownAddress : h.popHost);
  if (isLoopback(h.popHost) && h.ownAddress && !ex?.gateway)
    h.say(h.c.dim(`  The SSH address ${h.popHost} is a local forwarder; the POP's own address is ${h.ownAddress}.`));
  const gwHost = await ask.text({
    message: 'Gateway address other sites reach this POP at',
    ...defaultOf(gwDefault),
    validate: (v) =>
      checkHost(v) ?? (isLoopback(v) ? 'a loopback address; the hub and other sites must be able to reach the gateway' : undefined),
  });
  const gwPortText = await ask.text({
    message: 'Gateway port',
    default: String(ex?.gateway?.port ?? 80),
    validate: (v) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535 ? undefined : 'a port number, 1–65535'),
  });
  const apiEndpoint = await ask.text({
    message: 'API endpoint the hub uses to reach this POP',
    default: ex?.apiEndpoint ?? `https://${formatHostPort(gwHost, 6443)}`,
    validate: (v) => checkApiEndpoint(v),
  });
  return {
    hub: { ref, region, zone, group, gateway: { host: gwHost, port: Number(gwPortText) }, apiEndpoint },
    ...(newHub ? { newHub } : {}),
    ...(hubFile ? { hubFile } : {}),
  };
}
