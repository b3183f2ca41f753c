// Connects to the POP the moment its address and login are known. An unpinned host key is shown to the
// operator before anything is sent after the handshake (the transport refuses unpinned keys and reports the
// one presented); once confirmed it is pinned and the connection made again, hop by hop, as OpenSSH does.

import type { Site } from '../../config/index.js';
import { connectHost } from '../../transport/connect.js';
import { HostKeyError } from '../../transport/host-keys.js';
import type { SshHost } from '../../transport/ssh-host.js';
import type { LocalHost } from '../../transport/local-host.js';
import type { Ask } from './ask.js';
import type { HopAnswers } from './site-document.js';

export interface ConnectOutcome {
  host?: SshHost | LocalHost;
  /** Why the connection failed (the wizard asks for the target again). */
  problem?: string;
}

export interface ConnectIO {
  ask: Ask;
  say: (line: string) => void;
  bold: (s: string) => string;
}

/**
 * `build` turns the current answers into a Site (pins included); `hops` are the answers whose pins this
 * step may add to: the jump host (if any) and the POP.
 */
export async function connectWithPinning(
  build: () => Site,
  hops: { pop: HopAnswers; jump?: HopAnswers },
  io: ConnectIO,
  baseDir: string,
): Promise<ConnectOutcome> {
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      const host = await connectHost(build(), { baseDir, readyTimeoutMs: 15_000, reconnect: { giveUpAfterMs: 30_000 } });
      return { host };
    } catch (e) {
      if (!(e instanceof HostKeyError)) return { problem: (e as Error).message };
      const hop = e.hop.kind === 'target' ? hops.pop : hops.jump;
      if (!hop) return { problem: e.message };
      const what = e.hop.kind === 'target' ? 'the POP' : 'the jump host';
      if (e.pinned.length === 0) {
        io.say('');
        io.say(`  ${what} ${hop.user}@${hop.host}:${hop.port} presents the host key`);
        io.say(`      ${io.bold(e.presented)}`);
        io.say(`  Compare it with what the machine itself prints: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`);
        const ok = await trustNewHostKey(io.ask, what);
        if (!ok) return { problem: `the host key of ${what} was not trusted; nothing was sent to it` };
        hop.hostKeys = [e.presented];
        continue;
      }
      io.say('');
      for (const line of e.message.split('\n')) io.say(`  ${line}`);
      const replace = await io.ask.yesNo({
        message: `Replace the pinned key of ${what} with ${e.presented}? (only after checking it at the machine's console)`,
        default: false,
      });
      if (!replace) return { problem: `host key mismatch for ${what}; the pinned key was kept` };
      hop.hostKeys = [e.presented];
    }
  }
  return { problem: 'the host keys kept changing while connecting; check the address' };
}

/**
 * Trust on first use: Enter answers No, so only an explicit yes pins an unknown key (OpenSSH asks for `yes`
 * too); `--yes` answers yes, since a scripted run has no one to compare the fingerprint.
 */
export function trustNewHostKey(ask: Ask, what: string): Promise<boolean> {
  return ask.yesNo({ message: `Trust this key and pin it for ${what}?`, default: false, scripted: true });
}

/** The POP's own IPv4 address on its default-route interface: the gateway default when SSH goes via a forwarder. */
export async function popOwnAddress(host: SshHost | LocalHost, iface: string | undefined): Promise<string | undefined> {
  const dev = iface && /^[A-Za-z0-9_.@-]+$/.test(iface) ? `dev ${iface}` : 'scope global';
  const r = await host.exec(`ip -4 -o addr show ${dev} 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1`);
  const ip = r.stdout.trim();
  return /^\d+\.\d+\.\d+\.\d+$/.test(ip) ? ip : undefined;
}
