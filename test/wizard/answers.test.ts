// The pure parts of the wizard: parsing what people type, checking names and keys, turning answers into the
// documents install reads, listing bundles and hubs, and --yes taking defaults.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatSshTarget, parseSshTarget } from '../../src/cli/wizard/target.js';
import { checkKeyFile, siteNameProblem, siteNamesIn, sshBannerProblem } from '../../src/cli/wizard/answer-checks.js';
import { checkDocuments, hubData, pathForFile, renderSiteFile, siteData, type WizardAnswers } from '../../src/cli/wizard/site-document.js';
import { bundleChoices, loadTrustedKeys, trustKeyCandidates } from '../../src/cli/wizard/bundle-choices.js';
import { hubDocuments, hubNameFromContext, kubeconfigContexts } from '../../src/cli/wizard/hub-choices.js';
import { PassThrough } from 'node:stream';
import { DefaultsAsk, PromptAsk } from '../../src/cli/wizard/ask.js';
import { trustNewHostKey } from '../../src/cli/wizard/connect-pop.js';
import { commitTemp, discardPending, writeTemp } from '../../src/cli/wizard/site-file.js';
import { installArgv, shellWords } from '../../src/cli/wizard/install-step.js';
import { loadConfigFile, loadSite } from '../../src/config/index.js';
import { keyPairIn, signedBundleDoc } from './bundle-fixture.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wizard-unit-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('parseSshTarget', () => {
  it.each([
    ['pop@10.99.0.11', { user: 'pop', host: '10.99.0.11', port: 22 }],
    ['pop@10.99.0.11:2222', { user: 'pop', host: '10.99.0.11', port: 2222 }],
    ['root@pop-berlin-1.stores.example.net', { user: 'root', host: 'pop-berlin-1.stores.example.net', port: 22 }],
    ['pop@[fd00::11]:2200', { user: 'pop', host: 'fd00::11', port: 2200 }],
    ['pop@fd00::11', { user: 'pop', host: 'fd00::11', port: 22 }],
    ['  ops@gw:22  ', { user: 'ops', host: 'gw', port: 22 }],
  ])('%s', (text, target) => {
    expect(parseSshTarget(text)).toEqual({ ok: true, target });
  });

  it.each([
    ['10.99.0.11', /say who logs in/],
    ['pop@10.99.0.11:0', /out of range/],
    ['pop@10.99.0.11:65536', /out of range/],
    ['pop@10.99.0.11:ssh', /not a number/],
    ['pop@', /no host/],
    ['ssh://pop@h', /URL/],
    ['pop@10.99.0.300', /not a valid IPv4/],
    ['p op@h', /space/],
    ['-x@h', /not a login name/],
    ['', /user@host/],
  ])('refuses %j with the reason', (text, why) => {
    const r = parseSshTarget(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(why);
  });

  it('fills the user from a default and round-trips through formatSshTarget', () => {
    expect(parseSshTarget('10.0.0.5:2222', { user: 'pop' })).toEqual({ ok: true, target: { user: 'pop', host: '10.0.0.5', port: 2222 } });
    for (const t of [
      { user: 'pop', host: '10.0.0.5', port: 22 },
      { user: 'pop', host: 'fd00::1', port: 2222 },
      { user: 'pop', host: 'fd00::1', port: 22 },
    ]) {
      expect(parseSshTarget(formatSshTarget(t))).toEqual({ ok: true, target: t });
    }
  });
});

describe('site names', () => {
  it('refuses a name another site file in the directory uses, but not the file being edited', () => {
    const d = path.join(dir, 'names');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'other.yaml'), 'apiVersion: edge.flomesh.io/v1alpha1\nkind: Site\nmetadata: { name: pop-a }\nspec: {}\n');
    fs.writeFileSync(path.join(d, 'fleet.yaml'), 'kind: Fleet\nspec:\n  sites:\n    - metadata: { name: pop-f }\n');
    fs.writeFileSync(path.join(d, 'site.yaml'), 'kind: Site\nmetadata: { name: pop-b }\n');
    expect([...siteNamesIn(d).keys()].sort()).toEqual(['pop-a', 'pop-b', 'pop-f']);
    expect(siteNameProblem('pop-a', d, path.join(d, 'site.yaml'))).toMatch(/already used by a site in other.yaml/);
    expect(siteNameProblem('pop-f', d, path.join(d, 'site.yaml'))).toMatch(/fleet.yaml/);
    expect(siteNameProblem('pop-b', d, path.join(d, 'site.yaml'))).toBeUndefined();
    expect(siteNameProblem('Pop_B', d, path.join(d, 'site.yaml'))).toMatch(/not a valid name.*pop-b/);
    expect(siteNameProblem('new-pop', d, path.join(d, 'site.yaml'))).toBeUndefined();
  });
});

describe('key files', () => {
  it('tells a usable key, an encrypted one, a public key and a missing file apart', () => {
    const plain = path.join(dir, 'id_plain');
    const enc = path.join(dir, 'id_enc');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', plain]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-pass', '-f', enc]);
    expect(checkKeyFile(plain)).toEqual({ ok: true, encrypted: false, type: 'ssh-ed25519' });
    expect(checkKeyFile(enc)).toMatchObject({ ok: true, encrypted: true });
    expect(checkKeyFile(`${plain}.pub`)).toMatchObject({ ok: false, problem: expect.stringMatching(/public key/) });
    expect(checkKeyFile(path.join(dir, 'nope'))).toMatchObject({ ok: false, problem: expect.stringMatching(/no such file/) });
    fs.writeFileSync(path.join(dir, 'junk'), 'hello');
    expect(checkKeyFile(path.join(dir, 'junk'))).toMatchObject({ ok: false, problem: expect.stringMatching(/not a private key/) });
  });
});

describe('reachability', () => {
  it('says why nothing answers SSH at an address', async () => {
    const srv = (await import('node:net')).createServer((s) => s.end('HTTP/1.1 400 Bad\r\n\r\n'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    expect(await sshBannerProblem('127.0.0.1', port)).toMatch(/not with SSH/);
    srv.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(await sshBannerProblem('127.0.0.1', port)).toMatch(/connection refused/);
  });
});

const answers = (over: Partial<WizardAnswers> = {}): WizardAnswers => ({
  name: 'pop-berlin-1',
  pop: {
    user: 'pop',
    host: '10.99.0.11',
    port: 22,
    login: { identityFile: 'keys/id_ed25519', passphrase: { env: 'POP_KEY_PASS' } },
    hostKeys: ['SHA256:arnx6499M4j0+dWG9m6Z/VQIDfLERvDlhmiwnAihbdA'],
  },
  mesh: { interception: 'auto', profile: 'edge-small', ingress: true },
  ...over,
});

describe('answers → site.yaml', () => {
  it('writes a Site (and Hub) that the config loader accepts, paths relative to the file, secrets as refs', () => {
    const d = path.join(dir, 'out');
    fs.mkdirSync(path.join(d, 'keys'), { recursive: true });
    const file = path.join(d, 'site.yaml');
    const a = answers({
      jump: {
        user: 'ops',
        host: 'gw.example.net',
        port: 2222,
        login: { agent: true },
        hostKeys: ['SHA256:AV9+a8Wur0g3JAieklLME7UJUaa2lBJSJ2XP9NeAMG4'],
      },
      hub: {
        ref: 'hub-eu',
        region: 'eu',
        zone: 'berlin',
        group: 'retail',
        gateway: { host: '10.99.0.11', port: 80 },
        apiEndpoint: 'https://10.99.0.11:6443',
      },
      newHub: { name: 'hub-eu', kubeconfigFile: path.join(d, 'kubeconfig'), context: 'hub-admin' },
    });
    const cwd = process.cwd();
    process.chdir(d);
    try {
      const site = siteData(a, 'site.yaml');
      const hub = hubData(a.newHub!, 'site.yaml');
      expect(checkDocuments(site, hub)).toEqual([]);
      fs.writeFileSync(file, renderSiteFile(site, hub, ['Written by a test.']));
    } finally {
      process.chdir(cwd);
    }
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toMatch(/^# Written by a test\./);
    expect(text).toContain('passphrase:\n      env: POP_KEY_PASS');
    const docs = loadConfigFile(file);
    expect(docs.map((x) => x.kind)).toEqual(['Site', 'Hub']);
    const s = loadSite(file);
    expect(s.spec.ssh.identityFile).toBe(path.join(d, 'keys/id_ed25519'));
    expect(s.spec.ssh.jumpHosts[0]).toMatchObject({ host: 'gw.example.net', port: 2222, agent: true });
    expect(s.spec.hub).toMatchObject({ ref: 'hub-eu', zone: 'berlin', gateway: { host: '10.99.0.11', port: 80 } });
  });

  it('keeps what the wizard does not ask about from the file it started from', () => {
    const base = {
      metadata: { name: 'old', labels: { tier: 'store' } },
      spec: {
        arch: 'arm64',
        ssh: { sudo: { password: { env: 'SUDO_PW' } } },
        k3s: { disable: ['traefik', 'servicelb'] },
        mesh: { multicluster: false, interception: 'ebpf' },
      },
    };
    const s = siteData(answers(), 'site.yaml', base) as { metadata: { labels: unknown }; spec: Record<string, any> };
    expect(s.metadata.labels).toEqual({ tier: 'store' });
    expect(s.spec.arch).toBe('arm64');
    expect(s.spec.ssh.sudo).toEqual({ password: { env: 'SUDO_PW' } });
    expect(s.spec.k3s).toEqual({ disable: ['traefik', 'servicelb'] });
    expect(s.spec.mesh).toEqual({ multicluster: false, interception: 'auto', ingress: true, profile: 'edge-small' });
    expect(checkDocuments(s)).toEqual([]);
  });

  it('reports answers the schema refuses instead of writing them', () => {
    const bad = siteData(
      answers({
        hub: { ref: 'h', region: 'eu', zone: 'z', group: 'g', gateway: { host: '127.0.0.1', port: 80 }, apiEndpoint: 'https://x:6443' },
      }),
      'site.yaml',
    );
    expect(checkDocuments(bad).join('\n')).toMatch(/loopback/);
  });

  it('writes relative paths relative to the site file', () => {
    expect(pathForFile('keys/id', 'sites/a.yaml', '/work')).toBe('../keys/id');
    expect(pathForFile('~/.ssh/id', 'sites/a.yaml', '/work')).toBe('~/.ssh/id');
    expect(pathForFile('/abs/id', 'a.yaml', '/work')).toBe('/abs/id');
  });
});

describe('bundles that fit', () => {
  it('offers bundles with the POP arch signed by a trusted key; says why the others do not fit', () => {
    const d = path.join(dir, 'bundles');
    const k = keyPairIn(path.join(dir, 'k1'), 'fsm-edge-signing.key');
    const other = keyPairIn(path.join(dir, 'k2'));
    signedBundleDoc(path.join(d, 'a-both'), { name: 'a-both', arches: ['amd64', 'arm64'], keyFile: k.privateKey, bytes: 5 * 2 ** 20 });
    signedBundleDoc(path.join(d, 'b-arm'), { name: 'b-arm', arches: ['arm64'], keyFile: k.privateKey });
    signedBundleDoc(path.join(d, 'c-foreign'), { name: 'c-foreign', arches: ['amd64'], keyFile: other.privateKey });
    signedBundleDoc(path.join(d, 'd-tampered'), { name: 'd-tampered', arches: ['amd64'], keyFile: k.privateKey });
    fs.appendFileSync(path.join(d, 'd-tampered', 'bundle.json'), ' ');
    signedBundleDoc(path.join(d, 'e-unsigned'), { name: 'e-unsigned', arches: ['amd64'], keyFile: k.privateKey });
    fs.rmSync(path.join(d, 'e-unsigned', 'bundle.json.sig'));
    fs.mkdirSync(path.join(d, 'f-not-a-bundle'));
    const got = bundleChoices(d, 'amd64', loadTrustedKeys([k.publicKey]));
    expect(got.map((b) => [b.name, b.unusable ?? 'ok'])).toEqual([
      ['a-both', 'ok'],
      ['b-arm', 'no amd64 content (it holds arm64)'],
      ['c-foreign', expect.stringMatching(/not a trusted key/)],
      ['d-tampered', expect.stringMatching(/does not match its signature/)],
      ['e-unsigned', expect.stringMatching(/unsigned/)],
    ]);
    expect(got[0]).toMatchObject({ bytes: 5 * 2 ** 20, blobs: 41, versions: { fsm: '1.5.1' } });
    expect(trustKeyCandidates([path.join(dir, 'k1'), path.join(dir, 'nowhere')])).toEqual([k.publicKey]);
    expect(bundleChoices(path.join(dir, 'nowhere'), 'amd64', [])).toEqual([]);
  });
});

describe('hubs', () => {
  it('lists Hub documents and kubeconfig contexts with their servers, never their credentials', () => {
    const d = path.join(dir, 'hubs');
    fs.mkdirSync(d);
    fs.writeFileSync(
      path.join(d, 'hub.yaml'),
      'apiVersion: edge.flomesh.io/v1alpha1\nkind: Hub\nmetadata: { name: hub-eu }\nspec: { kubeconfig: { file: k }, context: adm }\n',
    );
    fs.writeFileSync(
      path.join(d, 'kubeconfig'),
      'clusters: [{name: c1, cluster: {server: "https://10.0.0.1:6443"}}]\ncontexts: [{name: "Admin@Hub EU", context: {cluster: c1, user: u}}, {name: other, context: {cluster: none}}]\nusers: [{name: u, user: {token: abc}}]\n',
    );
    expect(hubDocuments([], [d])).toEqual([{ kind: 'file', file: path.join(d, 'hub.yaml'), name: 'hub-eu', context: 'adm' }]);
    const ctx = kubeconfigContexts([path.join(d, 'kubeconfig')]);
    expect(ctx).toEqual([
      { kind: 'context', kubeconfigFile: path.join(d, 'kubeconfig'), context: 'Admin@Hub EU', server: 'https://10.0.0.1:6443' },
      { kind: 'context', kubeconfigFile: path.join(d, 'kubeconfig'), context: 'other' },
    ]);
    expect(JSON.stringify(ctx)).not.toContain('abc');
    expect(hubNameFromContext('Admin@Hub EU')).toBe('admin-hub-eu');
    expect(hubNameFromContext('@@@')).toBe('hub');
  });
});

describe('--yes', () => {
  it('takes each default, validated, and names the flag when a question has none', async () => {
    const said: string[] = [];
    const ask = new DefaultsAsk((l) => said.push(l));
    expect(await ask.text({ message: 'Site name', default: 'pop-1', validate: () => undefined })).toBe('pop-1');
    await expect(ask.text({ message: 'SSH target', flag: '--ssh' })).rejects.toThrow(/no default for “SSH target”/);
    await expect(ask.text({ message: 'SSH target', default: 'x', validate: () => 'nope', flag: '--ssh' })).rejects.toMatchObject({
      kind: 'usage',
      fix: 'give another value with --ssh',
    });
    expect(
      await ask.choose({
        message: 'Pick',
        choices: [
          { value: 1, name: 'one', disabled: 'broken' },
          { value: 2, name: 'two' },
        ],
      }),
    ).toBe(2);
    await expect(
      ask.choose({ message: 'Bundle', choices: [{ value: 1, name: 'one', disabled: 'unsigned' }], flag: '--bundle' }),
    ).rejects.toThrow(/one: unsigned/);
    expect(await ask.yesNo({ message: 'Go?', default: false })).toBe(false);
    expect(said).toEqual(['? Site name pop-1', '? Pick two', '? Go? no']);
  });
});

describe('trust on first use', () => {
  /** The real prompt, driven through streams: `typed` is what the operator types before the answer resolves. */
  async function answerAtPrompt(typed: string): Promise<{ answer: boolean; screen: string }> {
    const input = new PassThrough();
    const output = new PassThrough();
    let screen = '';
    output.on('data', (b: Buffer) => (screen += b.toString()));
    const pending = trustNewHostKey(new PromptAsk({ input, output }), 'the POP');
    // Type only once the question is on the screen, as a person would.
    while (!screen.includes('Trust this key')) await new Promise((r) => setImmediate(r));
    input.write(typed);
    return { answer: await pending, screen };
  }

  it('Enter answers No: an unknown host key is pinned only on an explicit yes', async () => {
    const enter = await answerAtPrompt('\r');
    expect(enter.screen).toContain('y/N');
    expect(enter.answer).toBe(false);
    expect((await answerAtPrompt('y\r')).answer).toBe(true);
    expect((await answerAtPrompt('yes\r')).answer).toBe(true);
  });

  it('--yes still pins, for scripted runs', async () => {
    const said: string[] = [];
    expect(await trustNewHostKey(new DefaultsAsk((l) => said.push(l)), 'the POP')).toBe(true);
    expect(said).toEqual(['? Trust this key and pin it for the POP? yes']);
  });
});

describe('writing the file', () => {
  it('commits atomically, and a discarded draft leaves nothing', () => {
    const file = path.join(dir, 'w', 'site.yaml');
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(file, 'old\n');
    const tmp = writeTemp(file, 'new\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('old\n');
    commitTemp(tmp, file);
    expect(fs.readFileSync(file, 'utf8')).toBe('new\n');
    writeTemp(file, 'draft\n');
    discardPending();
    expect(fs.readdirSync(path.dirname(file))).toEqual(['site.yaml']);
  });

  it('prints the install command as it would be typed', () => {
    const argv = installArgv({
      siteFile: 'my site.yaml',
      bundleDir: 'airgap/bundles/lab',
      trustKeys: ['k.pub'],
      hubFile: 'hub.yaml',
      dryRun: true,
    });
    expect(shellWords(argv)).toBe("install 'my site.yaml' --bundle airgap/bundles/lab --trust-key k.pub --hub hub.yaml --dry-run");
  });
});
