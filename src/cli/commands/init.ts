// `fsm-edge init [site.yaml]`: the interactive wizard (issue 7). Asks about a POP, connects to it at once,
// shows what it found, writes site.yaml and runs `fsm-edge install` on it. Questions only: the work is done by
// config, transport, the install phases and the install command (src/cli/wizard/).

import type { Command } from 'commander';
import { DefaultsAsk, isPromptExit, PromptAsk } from '../wizard/ask.js';
import { discardPending } from '../wizard/site-file.js';
import { runWizard } from '../wizard/wizard.js';
import { repeatable } from '../options.js';
import { CliError, EXIT_USAGE, FsmEdgeError, outputFor, UsageError } from '../output.js';

/** Ctrl-C: the conventional 128 + SIGINT, so scripts can tell "stopped by the operator" from "failed". */
export const EXIT_INTERRUPTED = 130;

interface InitFlags {
  yes?: boolean;
  install: boolean;
  name?: string;
  ssh?: string;
  identityFile?: string;
  agent?: boolean;
  jump?: string;
  bundle?: string;
  trustKey: string[];
  hub?: string;
  bundles: string;
}

export function register(program: Command): void {
  program
    .command('init')
    .description('interactive wizard: describe a POP, connect and pin its host key, write site.yaml, install')
    .argument('[file]', 'site file to write; when it exists its values are the defaults', 'site.yaml')
    .option('-y, --yes', 'accept every default without asking (scripted first installs; works without a terminal)')
    .option('--no-install', 'stop after writing the site file')
    .option('--name <name>', 'site name (default for the first question)')
    .option('--ssh <user@host[:port]>', 'SSH target of the POP')
    .option('--identity-file <file>', 'private key to log in with')
    .option('--agent', 'log in with the keys of the running ssh-agent')
    .option('--jump <user@host[:port]>', 'reach the POP through this jump host')
    .option('--bundle <dir>', 'bundle to install (default: the newest fitting one under --bundles)')
    .option('--trust-key <file>', 'public key bundle signatures must verify against (repeatable)', repeatable, [])
    .option('--hub <file>', 'Hub document to register the POP with')
    .option('--bundles <dir>', 'where to look for bundles', 'airgap/bundles')
    .addHelpText(
      'after',
      `
Every option only sets the default of its question; the wizard still shows it (unless --yes).
With --yes nothing is asked: the defaults come from the options and from an existing file, a host key seen
for the first time is pinned (trust on first use, as install --accept-new-host-key), a changed one is refused.
Without a terminal, init refuses (exit 2) unless --yes is given: use \`fsm-edge install site.yaml\` there.
Ctrl-C at any point leaves no file behind (the site file is written in one step, before the install) and
exits 130.

Examples:
  fsm-edge init                          # asks everything, writes ./site.yaml
  fsm-edge init sites/pop-berlin-1.yaml  # edit an existing site: its values are the defaults
  fsm-edge init --yes --name pop-1 --ssh pop@10.99.0.11 --identity-file ~/.ssh/id_ed25519 --trust-key signing.pub`,
    )
    .action(async function (this: Command, file: string, flags: InitFlags) {
      const out = outputFor(this);
      const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
      if (!tty && !flags.yes) {
        throw new UsageError(
          'fsm-edge init asks questions and needs a terminal; stdin or stdout is not one',
          `for unattended installs write the site file and run \`fsm-edge install ${file} --bundle DIR --trust-key KEY\` (or \`fsm-edge init --yes\` to take every default)`,
        );
      }
      if (flags.agent && flags.identityFile) throw new UsageError('give --agent or --identity-file, not both');
      const ask = flags.yes ? new DefaultsAsk((l) => out.line(out.color.dim(l))) : new PromptAsk();
      try {
        out.exitCode = await runWizard(
          {
            file,
            trustKeys: flags.trustKey,
            bundlesDir: flags.bundles,
            install: flags.install,
            ...(flags.name ? { name: flags.name } : {}),
            ...(flags.ssh ? { ssh: flags.ssh } : {}),
            ...(flags.identityFile ? { identityFile: flags.identityFile } : {}),
            ...(flags.agent ? { agent: true } : {}),
            ...(flags.jump ? { jump: flags.jump } : {}),
            ...(flags.bundle ? { bundle: flags.bundle } : {}),
            ...(flags.hub ? { hub: flags.hub } : {}),
          },
          ask,
          out,
        );
      } catch (e) {
        discardPending();
        if (isPromptExit(e)) {
          out.io.stderr.write(`${out.errColor.yellow('stopped')}: nothing was written\n`);
          out.exitCode = EXIT_INTERRUPTED;
          return;
        }
        if (e instanceof FsmEdgeError) throw e;
        throw new CliError((e as Error).message, e instanceof UsageError ? EXIT_USAGE : 1);
      }
    });
}
