// SshHost against real lab POPs (OpenSSH sshd in Debian roots, amd64 and arm64 under qemu): host-key pinning,
// jump hosts, sudo, secrets, tunnels, drops.
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PopInfo } from '../lab/types.js';
import { popDown, popExec, popUp } from '../lab/pop.js';
import { SiteSchema } from '../../src/config/index.js';
import { connectHost } from '../../src/transport/connect.js';
import { HostKeyError, recordHostKeyPins } from '../../src/transport/host-keys.js';
import { ConnectError, ConnectionLostError } from '../../src/transport/ssh-connection.js';
import { SshHost } from '../../src/transport/ssh-host.js';
import { CommandTimeoutError, SudoError } from '../../src/transport/remote-command.js';
import { HostCommandError } from '../../src/transport/host.js';
import { addUser, sampleArgv, sessionCount, sshdLog, targetOf, traceSessions } from './lab-helpers.js';

const OTHER_PIN = 'SHA256:' + 'Q'.repeat(43);
let amd: PopInfo;
let amd2: PopInfo;
let arm: PopInfo;
const tmp = mkdtempSync(join(tmpdir(), 'fsm-edge-ssh-lab-'));

beforeAll(async () => {
  [amd, amd2, arm] = await Promise.all([popUp({ arch: 'amd64' }), popUp({ arch: 'amd64' }), popUp({ arch: 'arm64' })]);
  await Promise.all([traceSessions(amd), traceSessions(arm)]);
});
afterAll(async () => {
  await Promise.all([amd, amd2, arm].filter(Boolean).map((p) => popDown(p)));
});

describe.each([
  ['amd64', () => amd],
  ['arm64', () => arm],
])('SshHost on an %s POP', (arch, pop) => {
  it('runs commands: streamed output, exit codes, remote timeout, files', async () => {
    const h = await SshHost.connect(targetOf(pop()));
    try {
      const chunks: string[] = [];
      const r = await h.exec('uname -m; echo err >&2; exit 3', { onStdout: (d) => chunks.push(d.toString()) });
      expect(r).toEqual({ code: 3, stdout: `${arch === 'amd64' ? 'x86_64' : 'aarch64'}\n`, stderr: 'err\n' });
      expect(chunks.join('')).toBe(r.stdout);
      await expect(h.run('false')).rejects.toBeInstanceOf(HostCommandError);
      await expect(h.exec('sleep 60; echo late', { timeoutMs: 1500 })).rejects.toBeInstanceOf(CommandTimeoutError);
      // the remote side was stopped too, not just abandoned
      expect((await popExec(pop(), 'pgrep -fx "sleep 60" || true')).stdout.trim()).toBe('');
      const data = Buffer.from([0, 1, 2, 255, 10, 13]);
      await h.writeFile('/etc/fsm-edge/probe.bin', data, { sudo: true, mode: 0o600 });
      expect((await h.readFile('/etc/fsm-edge/probe.bin', { sudo: true }))?.equals(data)).toBe(true);
      expect((await popExec(pop(), 'stat -c "%a %U" /etc/fsm-edge/probe.bin; ls -a /etc/fsm-edge')).stdout).toBe(
        '600 root\n.\n..\nprobe.bin\n',
      );
      expect(await h.readFile('/etc/fsm-edge/none')).toBeUndefined();
      expect(await h.run('id -u', { sudo: true })).toBe('0\n');
      expect(await h.run('pwd', { cwd: '/var/lib' })).toBe('/var/lib\n');
    } finally {
      await h.close();
    }
  });

  it('refuses a host-key mismatch and runs nothing on the POP', async () => {
    const before = await sessionCount(pop());
    const logBefore = sshdLog(pop()).split('\n').length;
    const err = await SshHost.connect(targetOf(pop(), { hostKeys: [OTHER_PIN] }), { acceptNewHostKey: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostKeyError);
    const msg = (err as Error).message;
    expect(msg).toContain(pop().hostKeyFingerprint);
    expect(msg).toContain(OTHER_PIN);
    expect(msg).toMatch(/hardware swap/);
    expect(await sessionCount(pop())).toBe(before);
    expect(
      sshdLog(pop())
        .split('\n')
        .slice(logBefore - 1)
        .join('\n'),
    ).not.toMatch(/Accepted publickey/);
    // the trace does record sessions: a correctly pinned login shows up
    const ok = await SshHost.connect(targetOf(pop()));
    await ok.run('true');
    await ok.close();
    expect(await sessionCount(pop())).toBe(before + 1);
  });

  it('refuses an unpinned host, then accepts it on request and records the pin in site.yaml', async () => {
    const file = join(tmp, `site-${arch}.yaml`);
    writeFileSync(
      file,
      `# ${arch} POP in the lab — comment must survive\napiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata:\n  name: lab-${arch}\n` +
        `spec:\n  ssh:\n    host: ${pop().sshHost} # loopback forwarder\n    user: pop\n    identityFile: ${pop().identityFile}\n`,
    );
    const load = () => SiteSchema.parse(parse(readFileSync(file, 'utf8')));
    const before = await sessionCount(pop());
    const refused = await connectHost(load()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(HostKeyError);
    expect((refused as Error).message).toMatch(/not pinned.*nothing was run/s);
    expect(await sessionCount(pop())).toBe(before);

    const accepted = (await connectHost(load(), { acceptNewHostKey: true })) as SshHost;
    expect(accepted.newPins).toEqual([{ hop: { kind: 'target' }, label: expect.any(String), fingerprint: pop().hostKeyFingerprint }]);
    await accepted.close();
    await recordHostKeyPins(file, accepted.newPins, `lab-${arch}`);
    expect(readFileSync(file, 'utf8')).toContain('comment must survive');
    expect(load().spec.ssh.hostKeys).toEqual([pop().hostKeyFingerprint]);
    const pinned = await connectHost(load());
    expect(await pinned.run('hostname')).toBe(`${pop().name}\n`);
    await pinned.close();
  });

  it('reports a broken sudo setup clearly, and sudo with a password works without the password in argv or logs', async () => {
    await addUser(pop(), 'nosudo', {});
    await addUser(pop(), 'pwsudo', { password: 'Pw-s3cret-4-sudo', sudoers: 'pwsudo ALL=(ALL) ALL' });
    const no = await SshHost.connect(targetOf(pop(), { user: 'nosudo' }));
    const e1 = await no.run('id -u', { sudo: true }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(SudoError);
    expect((e1 as Error).message).toMatch(
      new RegExp(`user nosudo may not run sudo on ${pop().name}.*nosudo ALL=\\(ALL\\) NOPASSWD: ALL.*/etc/sudoers.d/`),
    );
    await no.close();

    const nopw = await SshHost.connect(targetOf(pop(), { user: 'pwsudo' }));
    const e2 = await nopw.run('id -u', { sudo: true }).catch((e: unknown) => e);
    expect((e2 as Error).message).toMatch(/may not run sudo .* without a password.*spec.ssh.sudo.password/);
    await nopw.close();

    const logs: string[] = [];
    const pw = await SshHost.connect(targetOf(pop(), { user: 'pwsudo' }), {
      sudo: { password: 'Pw-s3cret-4-sudo' },
      onLog: (l) => logs.push(l),
    });
    const cmd = pw.run('id -u; sleep 2', { sudo: true });
    const seen = await sampleArgv(pop(), cmd);
    expect(await cmd).toBe('0\n');
    expect(seen.some((l) => l.includes('sleep 2'))).toBe(true); // the sampler did see the command running
    expect(seen.filter((l) => l.includes('Pw-s3cret-4-sudo'))).toEqual([]);
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.join('\n')).not.toContain('Pw-s3cret-4-sudo');
    await pw.close();

    const wrong = await SshHost.connect(targetOf(pop(), { user: 'pwsudo' }), { sudo: { password: 'nope' } });
    await expect(wrong.run('true', { sudo: true })).rejects.toThrow(/rejected the password for user pwsudo/);
    await wrong.close();
  });

  it('passes a secret on stdin: in no argv or environment on the POP, in no log', async () => {
    const secret = `k3s-token-${arch}-7d1c0ffee`;
    const logs: string[] = [];
    const h = await SshHost.connect(targetOf(pop()), { onLog: (l) => logs.push(l) });
    const cmd = h.run('read -r t; sleep 2; printf %s "$t" | sha256sum | cut -c1-16', { stdin: `${secret}\n`, sudo: true });
    const seen = await sampleArgv(pop(), cmd);
    const out = await cmd;
    expect(out.trim()).toHaveLength(16);
    expect(seen.some((l) => l.includes('sleep 2'))).toBe(true);
    expect(seen.filter((l) => l.includes(secret))).toEqual([]);
    expect(logs.join('\n')).not.toContain(secret);
    await h.close();
  });

  // The reply is 4 MiB and the server closes right after it: the tunnel must deliver all of it. The readiness probe
  // below closes before reading, so the server ignores write errors (an unhandled EPIPE killed it, and under load
  // the tunnelled connection then got nothing).
  it('tunnels a local port to 127.0.0.1:6443 on the POP', async () => {
    const h = await SshHost.connect(targetOf(pop()));
    await h.run(
      `setsid nohup node -e "require('net').createServer(s=>s.on('error',()=>{}).end('x'.repeat(4<<20)+'api:'+require('os').hostname()+'\\\\n')).listen(6443,'127.0.0.1')" >/dev/null 2>&1 < /dev/null &`,
    );
    // commands run under POSIX sh (every command is wrapped in `timeout … sh -c`): /dev/tcp needs bash
    await h.run(`for i in $(seq 100); do bash -c 'exec 3<>/dev/tcp/127.0.0.1/6443' 2>/dev/null && exit 0; sleep 0.1; done; exit 1`);
    const t = await h.tunnel(6443);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(t.localPort, t.localHost);
      let buf = '';
      s.on('data', (d) => (buf += d.toString()));
      s.on('end', () => resolve(buf));
      s.on('error', reject);
    });
    expect(t.localHost).toBe('127.0.0.1');
    expect(reply.length).toBe((4 << 20) + `api:${pop().name}\n`.length);
    expect(reply.endsWith(`api:${pop().name}\n`)).toBe(true);
    await t.close();
    await h.run('pkill -f "listen(6443" || true');
    await h.close();
  });

  it('ends a pending command with a clear error when the link drops, then reconnects', async () => {
    const h = await SshHost.connect(targetOf(pop()));
    const pending = h.exec('sleep 30');
    setTimeout(() => h.dropConnection(), 500);
    await expect(pending).rejects.toBeInstanceOf(ConnectionLostError);
    expect(await h.run('echo back')).toBe('back\n');
    expect(h.stats().connects).toBe(2);
    await h.close();
  });
});

describe('jump hosts', () => {
  it('reaches an arm64 POP through a chain of two amd64 jump hosts, each with its own pin', async () => {
    const target = {
      ...targetOf(arm, { host: arm.labAddress, port: 22 }),
      jumpHosts: [
        { host: amd.sshHost, port: 22, user: 'pop', identityFile: amd.identityFile, hostKeys: [amd.hostKeyFingerprint] },
        { host: amd2.labAddress, port: 22, user: 'pop', identityFile: amd2.identityFile, hostKeys: [amd2.hostKeyFingerprint] },
      ],
    };
    const h = await SshHost.connect(target);
    // the POP sees the connection coming from the second jump host
    expect((await h.run('echo $SSH_CONNECTION; uname -m')).split(/\s+/).filter(Boolean)).toEqual([
      amd2.labAddress,
      expect.any(String),
      arm.labAddress,
      '22',
      'aarch64',
    ]);
    await h.close();

    const bad = { ...target, jumpHosts: [target.jumpHosts[0]!, { ...target.jumpHosts[1]!, hostKeys: [OTHER_PIN] }] };
    const err = await SshHost.connect(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostKeyError);
    expect((err as Error).message).toMatch(/jump host 2 .*HOST KEY MISMATCH.*spec\.ssh\.jumpHosts\[1\]\.hostKeys/s);
  });
});

describe('credentials', () => {
  it('uses a passphrase-protected key (from the secret, or asked for) and the ssh-agent', async () => {
    const key = join(tmp, 'id_locked');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'open sesame', '-C', 'locked', '-f', key]);
    await popExec(amd, 'cat >> /home/pop/.ssh/authorized_keys', { input: readFileSync(`${key}.pub`) });
    const locked = targetOf(amd, { identityFile: key });

    const noPass = await SshHost.connect(locked).catch((e: unknown) => e);
    expect(noPass).toBeInstanceOf(ConnectError);
    expect((noPass as Error).message).toMatch(/is encrypted and no passphrase was given: set spec.ssh.passphrase/);
    const wrong = await SshHost.connect({ ...locked, passphrase: 'nope' }).catch((e: unknown) => e);
    expect((wrong as Error).message).toMatch(/wrong passphrase for key/);

    const withSecret = await SshHost.connect({ ...locked, passphrase: 'open sesame' });
    expect(await withSecret.run('echo ok')).toBe('ok\n');
    await withSecret.close();

    const asked: string[] = [];
    const atTty = await SshHost.connect(locked, { askPassphrase: async (file) => (asked.push(file), 'open sesame') });
    expect(await atTty.run('echo ok')).toBe('ok\n');
    atTty.dropConnection(); // a reconnect does not ask again
    expect(await atTty.run('echo again')).toBe('again\n');
    expect(asked).toEqual([key]);
    await atTty.close();

    const sock = join(tmp, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50 && !(await import('node:fs')).existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
      execFileSync('ssh-add', ['-q', amd.identityFile], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
      const viaAgent = await SshHost.connect(targetOf(amd, { identityFile: undefined, agent: true }), { env: { SSH_AUTH_SOCK: sock } });
      expect(await viaAgent.run('id -un')).toBe('pop\n');
      await viaAgent.close();
      const noAgent = await SshHost.connect(targetOf(amd, { identityFile: undefined, agent: true }), { env: {} }).catch((e: unknown) => e);
      expect((noAgent as Error).message).toMatch(/SSH_AUTH_SOCK is not set/);
    } finally {
      agent.kill();
    }
  });
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));
