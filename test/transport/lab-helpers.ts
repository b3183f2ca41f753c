// Shared by the transport lab tests: SshTarget / Site documents for lab POPs, and observation on the POP side.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PopInfo } from '../lab/types.js';
import { popExec, readPopRecord } from '../lab/pop.js';
import type { SshTarget } from '../../src/transport/ssh-connection.js';

export function targetOf(pop: PopInfo, over: Partial<SshTarget> = {}): SshTarget {
  return {
    name: pop.name,
    host: pop.sshHost,
    port: pop.sshPort,
    user: pop.user,
    identityFile: pop.identityFile,
    hostKeys: [pop.hostKeyFingerprint],
    ...over,
  };
}

/** Every login to `user` on the POP leaves a line in /tmp/sessions (sshd runs ~/.ssh/rc for each session). */
export async function traceSessions(pop: PopInfo, user = 'pop'): Promise<void> {
  const home = user === 'root' ? '/root' : `/home/${user}`;
  const rc = `#!/bin/sh\necho "$(date +%s.%N) $(id -un)" >> /tmp/sessions\n`;
  await popExec(
    pop,
    `cat > ${home}/.ssh/rc && chmod 755 ${home}/.ssh/rc && chown ${user} ${home}/.ssh/rc && touch /tmp/sessions && chmod 666 /tmp/sessions`,
    { input: rc },
  );
}

export async function sessionCount(pop: PopInfo): Promise<number> {
  const r = await popExec(pop, 'cat /tmp/sessions 2>/dev/null | wc -l');
  return Number(r.stdout.trim());
}

/** sshd runs with -e: its log (auth lines) is the POP's console log. */
export function sshdLog(pop: PopInfo): string {
  return readFileSync(join(readPopRecord(pop).dir, 'console.log'), 'utf8');
}

/** Samples `ps -eo args` on the POP every few ms until `stop` resolves; returns every distinct argv line seen. */
export async function sampleArgv(pop: PopInfo, stop: Promise<unknown>): Promise<string[]> {
  let done = false;
  void stop.finally(() => {
    done = true;
  });
  const seen = new Set<string>();
  let samples = 0;
  while (!done || samples < 2) {
    const r = await popExec(pop, 'ps -eo args; for p in /proc/[0-9]*; do tr "\\0" " " < $p/environ 2>/dev/null; echo; done', {
      allowFail: true,
    });
    for (const l of r.stdout.split('\n')) if (l.trim()) seen.add(l.trim());
    samples++;
  }
  return [...seen];
}

/** Adds a login user on the POP (same key as `pop`), with the given sudoers rule (or none). */
export async function addUser(pop: PopInfo, user: string, opts: { password?: string; sudoers?: string }): Promise<void> {
  const lines = [
    `id ${user} >/dev/null 2>&1 || useradd -m -s /bin/bash ${user}`,
    `mkdir -p /home/${user}/.ssh && cp /home/pop/.ssh/authorized_keys /home/${user}/.ssh/ && chown -R ${user}: /home/${user}/.ssh`,
    `rm -f /etc/sudoers.d/${user}`,
  ];
  if (opts.sudoers) lines.push(`echo '${opts.sudoers}' > /etc/sudoers.d/${user} && chmod 440 /etc/sudoers.d/${user}`);
  await popExec(pop, lines.join(' && '));
  if (opts.password) await popExec(pop, 'chpasswd', { input: `${user}:${opts.password}\n` });
}
