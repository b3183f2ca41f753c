// What the lab hands to tests and to `scripts/lab.ts up` (printed as JSON). Everything a test needs to reach
// a POP from the host namespace, where the controller (the test process) runs.

export type LabArch = 'amd64' | 'arm64';

export interface PopInfo {
  /** `pop3` — also the POP's hostname. */
  name: string;
  index: number;
  arch: LabArch;
  /** Booted with systemd (systemd-nspawn) or a plain sshd-only POP. */
  systemd: boolean;
  /**
   * Address and port the controller connects to (a loopback forwarder, 127.0.0.(10+N)). The same forwarder
   * also carries the POP's port 6443 (`sshHost:6443`), crossing the POP's link like the SSH traffic.
   */
  sshHost: string;
  sshPort: number;
  /** The POP's own address on the lab bridge (what the hub and other POPs use). */
  labAddress: string;
  /** Network namespace of the POP. */
  netns: string;
  /** Unprivileged user with passwordless sudo; root logs in with the same key. */
  user: string;
  /** Private key (ed25519, no passphrase) that both `user` and root accept. */
  identityFile: string;
  /** The POP's host key as OpenSSH prints it: `SHA256:…` (ed25519). */
  hostKeyFingerprint: string;
}

export interface LinkShape {
  rateKbit?: number;
  /** One-way delay added in each direction (RTT grows by twice this). */
  delayMs?: number;
  /** Loss in each direction, 0..1. */
  loss?: number;
}

export interface LinkCounters {
  /** Bytes from the hub side towards the POP (controller → POP). */
  toPop: number;
  /** Bytes from the POP towards the hub. */
  fromPop: number;
}
