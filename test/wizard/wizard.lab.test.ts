// The real wizard, driven through a pseudo-terminal (tmux) with real keystrokes, against a lab POP (systemd,
// amd64), the lab hub and the sample bundle: it pins the host key, shows the arch, writes a site.yaml that
// `config validate` and `install` accept unchanged, and the POP ends registered (Managed on the hub).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/index.js';
import { startHarness, type Harness } from '../install/harness.js';
import { TmuxSession } from './tmux.js';
import { CLI_COMMAND, runCli } from '../cli/run-cli.js';

let h: Harness;
/**
 * The wizard's bundles directory: a copy holding only the sample bundle `lab`. airgap/bundles also gets the
 * upgrade tests' lab-v2 and lab-v3 (amd64 only, lab-v3 broken on purpose) whenever those ran first or run beside
 * this file, and the wizard offers the newest bundle by default.
 */
let BUNDLES: string;
let work: string;
const sessions: TmuxSession[] = [];

function cli(args: string[], cwd: string, env: Record<string, string> = {}) {
  return runCli(args, { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, input: '' });
}

function hiddenFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.startsWith('.'));
}

beforeAll(async () => {
  h = await startHarness({ arches: ['amd64'], hub: true, hubPort: 6843, hubForwardHost: '127.0.0.6' });
  BUNDLES = path.join(h.dir, 'bundles');
  fs.cpSync(h.bundle.dir, path.join(BUNDLES, 'lab'), { recursive: true });
  work = path.join(h.dir, 'wizard');
  fs.mkdirSync(work);
  // Where `bundle keygen` leaves the public key: the wizard offers it as the trust key.
  fs.copyFileSync(h.bundle.publicKeyFile, path.join(work, 'signing.key.pub'));
});

afterAll(async () => {
  for (const s of sessions) s.kill();
  await h?.stop();
});

const env = () => ({ FSM_EDGE_STATE_DIR: h.stateDir, KUBECONFIG: h.hub!.kubeconfigPath });

describe('fsm-edge init at a terminal', () => {
  it('asks, re-asks a wrong host with the reason, pins the key, shows the arch, writes site.yaml, installs and registers', async () => {
    const pop = h.pops[0]!;
    const t = TmuxSession.start('wizard-install', work, `${CLI_COMMAND} init --bundles ${BUNDLES}`, env());
    sessions.push(t);
    await t.answer('Site name', 'pop-berlin-1');
    await t.answer('Is the POP reached through a jump host', undefined, 'Enter');
    await t.answer('SSH target of the POP', 'pop@127.0.0.250:70000');
    await t.waitFor('port 70000 is out of range; ports are 1–65535');
    await t.answer('SSH target of the POP', 'pop@127.0.0.250');
    await t.waitFor('cannot reach 127.0.0.250:22: connection refused');
    expect(fs.readdirSync(work)).toEqual(['signing.key.pub']);
    await t.answer('SSH target of the POP', `${pop.user}@${pop.sshHost}`);
    await t.answer('Log in with', undefined, 'Enter');
    await t.answer('Private key file', pop.identityFile);
    let s = await t.waitFor('? Trust this key and pin it for the POP?');
    expect(s).toContain(pop.hostKeyFingerprint);
    t.keys('y', 'Enter'); // Enter alone answers No: pinning takes an explicit yes
    s = await t.waitFor('? Public key bundles must be signed with');
    expect(s).toMatch(/arch\s+amd64 \(x86_64\)/);
    expect(s).toMatch(/init systemd/);
    expect(s).toContain(`host key ${pop.hostKeyFingerprint} pinned`);
    await t.answer('Public key bundles must be signed with', undefined, 'Enter');
    s = await t.waitFor('? Bundle for this amd64 POP');
    expect(s).toMatch(/lab — k3s v\S+, fsm v?1\.5\.\d+, pipy \S+; [\d.]+ KiB in \d+ blobs to send/);
    t.keys('Enter');
    s = await t.waitFor('? Traffic interception');
    expect(s).toContain('auto — eBPF on this POP');
    // iptables (PodLevel): the eBPF path waits for the xnet DaemonSet, which the lab's FSM stand-in does not
    // make Ready; the wizard's part (default from the facts, the why line) is asserted above.
    t.keys('Down', 'Down', 'Enter');
    await t.answer('Resource profile', undefined, 'Enter');
    await t.answer('Deploy the FSM ingress', undefined, 'Enter');
    s = await t.waitFor('? Federation hub to register with');
    expect(s).toContain(`kubeconfig context lab-hub → ${h.hub!.url}`);
    t.keys('Up', 'Enter');
    await t.answer('Name for this hub', undefined, 'Enter');
    await t.answer('Region', 'eu');
    await t.answer('Zone', 'berlin');
    await t.answer('Group', 'retail');
    s = await t.waitFor('? Gateway address other sites reach this POP at');
    expect(s).toContain(`(${pop.labAddress})`);
    t.keys('Enter');
    await t.answer('Gateway port', undefined, 'Enter');
    await t.answer('API endpoint the hub uses', undefined, 'Enter');
    s = await t.waitFor('? Go?', 120_000);
    expect(s).toMatch(/would register as Cluster pop-berlin-1 \(eu\/berlin\/retail\)/);
    expect(s).toContain('nothing was changed');
    expect(fs.existsSync(path.join(work, 'site.yaml'))).toBe(false);
    t.keys('Enter');
    const code = await t.exitCode(540_000);
    s = t.screen();
    if (process.env.FSM_EDGE_WIZARD_CAPTURE) fs.writeFileSync(process.env.FSM_EDGE_WIZARD_CAPTURE, s);
    expect(s).toContain('✓ wrote site.yaml (Site pop-berlin-1 and Hub lab-hub)');
    expect(s.indexOf('✓ wrote site.yaml')).toBeLessThan(s.indexOf('installing pop-berlin-1'));
    expect(code, s.split('\n').slice(-30).join('\n')).toBe(0);
    expect(s).toMatch(/pop-berlin-1\s+amd64\s+\S+\s+\S+\s+PodLevel\s+managed/);
    expect(hiddenFiles(work)).toEqual([]);

    // The file is what `config validate` and an unattended `install` read, unchanged.
    const file = path.join(work, 'site.yaml');
    const written = fs.readFileSync(file, 'utf8');
    const site = loadSite(file);
    expect(site.spec.ssh).toMatchObject({
      host: pop.sshHost,
      port: 22,
      user: pop.user,
      identityFile: pop.identityFile,
      hostKeys: [pop.hostKeyFingerprint],
    });
    expect(site.spec.mesh.interception).toBe('iptables');
    expect(site.spec.hub).toMatchObject({
      ref: 'lab-hub',
      region: 'eu',
      zone: 'berlin',
      group: 'retail',
      gateway: { host: pop.labAddress, port: 80 },
      apiEndpoint: `https://${pop.labAddress}:6443`,
    });
    expect(written).toContain(`file: ${h.hub!.kubeconfigPath}`);
    const credentials = fs.readFileSync(h.hub!.kubeconfigPath, 'utf8').match(/(?:client-key-data|token): (\S+)/)?.[1];
    expect(credentials, 'the lab hub kubeconfig carries a key or token').toBeTruthy();
    expect(written).not.toContain(credentials!);
    expect(cli(['config', 'validate', 'site.yaml'], work)).toMatchObject({ code: 0 });
    const again = cli(
      ['install', 'site.yaml', '--bundle', path.join(BUNDLES, 'lab'), '--trust-key', 'signing.key.pub', '--json'],
      work,
      env(),
    );
    expect(again.code, again.stderr).toBe(0);
    expect(fs.readFileSync(file, 'utf8')).toBe(written);
    const status = cli(['status', 'site.yaml', '--json'], work, env());
    expect(JSON.stringify(JSON.parse(status.stdout))).toMatch(/"registration":"managed"|"registration":\{"state":"managed"/);
  });

  it('starts from an existing site.yaml, and Ctrl-C at the last question leaves it untouched and nothing else', async () => {
    const file = path.join(work, 'site.yaml');
    const before = fs.readFileSync(file, 'utf8');
    const t = TmuxSession.start('wizard-ctrl-c', work, `${CLI_COMMAND} init site.yaml --bundles ${BUNDLES}`, env());
    sessions.push(t);
    let s = await t.waitFor('? Site name');
    expect(s).toContain('Defaults come from site.yaml (site pop-berlin-1)');
    expect(s).toContain('(pop-berlin-1)');
    t.keys('Enter');
    for (const q of [
      'Is the POP reached through a jump host',
      'SSH target of the POP',
      'Log in with',
      'Private key file',
      'Public key bundles',
      'Bundle for this',
      'Traffic interception',
      'Resource profile',
      'Deploy the FSM ingress',
      'Federation hub',
      'Region',
      'Zone',
      'Group',
      'Gateway address',
      'Gateway port',
      'API endpoint',
    ]) {
      await t.answer(q, undefined, 'Enter');
    }
    s = await t.waitFor('? Go?', 120_000);
    expect(s).toContain(`✔ SSH target of the POP (user@host[:port]) ${h.pops[0]!.user}@${h.pops[0]!.sshHost}`);
    expect(s).toContain('✔ Traffic interception iptables');
    expect(s).toContain('✔ Zone berlin');
    expect(s).not.toContain('Trust this key'); // already pinned in the file
    expect(hiddenFiles(work).length).toBe(1); // the draft the plan was made from
    t.keys('C-c');
    expect(await t.exitCode(20_000)).toBe(130);
    expect(t.screen()).toContain('stopped: nothing was written');
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
    expect(hiddenFiles(work)).toEqual([]);
  });

  it('a login the POP refuses is reported and asked again; Ctrl-C then writes no file at all', async () => {
    const pop = h.pops[0]!;
    const dir = path.join(h.dir, 'ctrl-c-early');
    fs.mkdirSync(dir);
    const stranger = path.join(h.dir, 'id_stranger');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
    const t = TmuxSession.start('wizard-ctrl-c-early', dir, `${CLI_COMMAND} init`, env());
    sessions.push(t);
    await t.answer('Site name', 'pop-x');
    await t.answer('Is the POP reached through a jump host', undefined, 'Enter');
    await t.answer('SSH target of the POP', `${pop.user}@${pop.sshHost}`);
    await t.answer('Log in with', undefined, 'Enter');
    await t.answer('Private key file', stranger);
    await t.answer('Trust this key and pin it', 'y', 'Enter');
    const s = await t.waitFor('Check the answers below and try again');
    expect(s).toMatch(/✗ .*authentication failed \(no key was accepted\)/);
    await t.waitFor(/Check the answers below and try again[\s\S]*\? Is the POP reached through a jump host/);
    t.keys('C-c');
    expect(await t.exitCode(20_000)).toBe(130);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('--yes through a jump host pins the key of each hop', async () => {
    const { popUp, popDown } = await import('../lab/pop.js');
    const jump = await popUp({ arch: 'amd64' });
    try {
      const pop = h.pops[0]!;
      const dir = path.join(h.dir, 'jump');
      fs.mkdirSync(dir);
      // The POP by its lab address, which only the jump host can reach.
      const r = cli(
        [
          'init',
          'pop.yaml',
          '--yes',
          '--no-install',
          '--name',
          'pop-behind',
          '--jump',
          `${jump.user}@${jump.sshHost}`,
          '--ssh',
          `${pop.user}@${pop.labAddress}`,
          '--identity-file',
          pop.identityFile,
          '--trust-key',
          h.bundle.publicKeyFile,
          '--bundles',
          BUNDLES,
        ],
        dir,
        env(),
      );
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toContain(`connecting to ${pop.user}@${pop.labAddress} through ${jump.user}@${jump.sshHost}`);
      const site = loadSite(path.join(dir, 'pop.yaml'));
      expect(site.spec.ssh.hostKeys).toEqual([pop.hostKeyFingerprint]);
      expect(site.spec.ssh.jumpHosts).toEqual([
        expect.objectContaining({ host: jump.sshHost, user: jump.user, hostKeys: [jump.hostKeyFingerprint] }),
      ]);
    } finally {
      await popDown(jump);
    }
  });

  it('shows an arm64 POP as arm64, picks the arm64 content of the bundle, and warns early that a POP without systemd will be refused', async () => {
    const { popUp, popDown } = await import('../lab/pop.js');
    const pop = await popUp({ arch: 'arm64' });
    try {
      const dir = path.join(h.dir, 'arm64');
      fs.mkdirSync(dir);
      const r = cli(
        [
          'init',
          'pop.yaml',
          '--yes',
          '--no-install',
          '--name',
          'pop-arm',
          '--ssh',
          `${pop.user}@${pop.sshHost}`,
          '--identity-file',
          pop.identityFile,
          '--trust-key',
          h.bundle.publicKeyFile,
          '--bundles',
          BUNDLES,
        ],
        dir,
        env(),
      );
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toMatch(/arch\s+arm64 \(aarch64\)/);
      expect(r.stdout).toMatch(/\? Bundle for this arm64 POP \(from .*\) lab — /);
      expect(r.stdout).toContain('✗ the install will refuse this POP: no systemd runs on this POP');
      expect(loadSite(path.join(dir, 'pop.yaml')).spec.ssh.hostKeys).toEqual([pop.hostKeyFingerprint]);
    } finally {
      await popDown(pop);
    }
  });

  it('--yes without a terminal takes the defaults from flags, pins on first use and writes a valid file', () => {
    const pop = h.pops[0]!;
    const dir = path.join(h.dir, 'yes');
    fs.mkdirSync(dir);
    // pop-berlin-1 was installed by the first case: its name is taken on this controller.
    const taken = cli(
      [
        'init',
        'pop.yaml',
        '--yes',
        '--no-install',
        '--name',
        'pop-berlin-1',
        '--ssh',
        `${pop.user}@${pop.sshHost}`,
        '--identity-file',
        pop.identityFile,
      ],
      dir,
      env(),
    );
    expect(taken.code).toBe(2);
    expect(taken.stdout).toMatch(/a site named pop-berlin-1 is already installed from this machine: pop@127\.0\.0\.\d+:22/);
    expect(taken.stderr).toContain('error: the site name pop-berlin-1 is already used by an installed site');
    expect(fs.readdirSync(dir)).toEqual([]);
    const r = cli(
      [
        'init',
        'pop.yaml',
        '--yes',
        '--no-install',
        '--name',
        'pop-yes',
        '--ssh',
        `${pop.user}@${pop.sshHost}`,
        '--identity-file',
        pop.identityFile,
        '--trust-key',
        h.bundle.publicKeyFile,
        '--bundles',
        BUNDLES,
      ],
      dir,
      env(),
    );
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('? Site name (becomes the Cluster name on the hub) pop-yes');
    expect(r.stdout).toContain('Install it with:');
    const site = loadSite(path.join(dir, 'pop.yaml'));
    expect(site.spec.ssh.hostKeys).toEqual([pop.hostKeyFingerprint]);
    expect(site.spec.hub).toBeUndefined();
    expect(cli(['config', 'validate', 'pop.yaml'], dir).code).toBe(0);
  });
});
