// systemd POPs (systemd-nspawn --boot): a unit the test writes over SSH runs; containerd runs inside the POP
// (overlay snapshots on the per-POP /var/lib/containerd) and a server on the POP's 0.0.0.0:6443 is reachable
// from lab-hub and through the host forwarder.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PopInfo } from './types.js';
import { popDown, popExec, popUp } from './pop.js';
import { HUB_NETNS, inNetns } from './network.js';
import { pinnedKnownHosts, ssh } from './openssh.js';
import { run, waitFor } from './proc.js';

const UNIT = `[Unit]
Description=lab demo unit written by a test
[Service]
ExecStart=/bin/sh -c 'echo "started by systemd as $(id -un), pid1=$(cat /proc/1/comm)" > /run/demo.out; exec sleep infinity'
[Install]
WantedBy=multi-user.target
`;

/** A one-layer OCI image layout tar for `arch` (tar, gzip, sha256sum only), as ctr imports it. */
async function ociTar(dir: string, arch: string): Promise<string> {
  const script = `set -e; cd "$1"; A=$2; mkdir -p src oci/blobs/sha256; echo "hello $A" > src/hello.txt
    tar -C src --owner=0 --group=0 --numeric-owner --mtime=@0 -cf layer.tar hello.txt; gzip -n -c layer.tar > layer.tgz
    sha() { sha256sum "$1" | cut -d' ' -f1; }
    printf '{"architecture":"%s","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' $A $(sha layer.tar) > config.json
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' $(sha config.json) $(stat -c%s config.json) $(sha layer.tgz) $(stat -c%s layer.tgz) > manifest.json
    for f in layer.tgz config.json manifest.json; do cp $f oci/blobs/sha256/$(sha $f); done
    echo '{"imageLayoutVersion":"1.0.0"}' > oci/oci-layout
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/lab/hello:%s"},"platform":{"architecture":"%s","os":"linux"}}]}' $(sha manifest.json) $(stat -c%s manifest.json) $A $A > oci/index.json
    tar -C oci -cf hello-$A.tar .`;
  await run('bash', ['-c', script, 'sh', dir, arch]);
  return path.join(dir, `hello-${arch}.tar`);
}

describe('systemd POP (amd64)', () => {
  let pop: PopInfo;
  let kh: string;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-systemd-'));

  beforeAll(async () => {
    pop = await popUp({ arch: 'amd64', systemd: true });
    kh = await pinnedKnownHosts(pop);
  });
  afterAll(async () => {
    if (pop) await popDown(pop);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('boots systemd as PID 1 and reaches "running"', async () => {
    const r = await ssh(pop, kh, 'cat /proc/1/comm; systemd-detect-virt; systemctl is-system-running --wait');
    expect(r.stdout.split('\n').slice(0, 3)).toEqual(['systemd', 'systemd-nspawn', 'running']);
  });

  it('runs a unit the test writes over SSH (daemon-reload, enable --now)', async () => {
    const r = await ssh(
      pop,
      kh,
      'sudo -n tee /etc/systemd/system/demo.service >/dev/null && sudo -n systemctl daemon-reload && sudo -n systemctl enable --now demo.service && systemctl is-active demo.service && systemctl is-enabled demo.service',
      { input: UNIT },
    );
    expect(r.stdout.trim().split('\n')).toEqual(['active', 'enabled']);
    await waitFor('demo.service output', async () => (await popExec(pop, 'test -s /run/demo.out')).code === 0);
    expect((await popExec(pop, 'cat /run/demo.out')).stdout).toBe('started by systemd as root, pid1=systemd\n');
    const stop = await ssh(pop, kh, 'sudo -n systemctl stop demo.service; systemctl is-active demo.service');
    expect(stop.stdout.trim()).toBe('inactive');
  });

  it('runs real containerd: imports an image for its platform and unpacks it, refuses another platform', async () => {
    const tar = await ociTar(tmp, 'amd64');
    const start = await popExec(
      pop,
      'systemd-run --unit=lab-containerd --property=Type=notify containerd >/dev/null && ctr version >/dev/null && echo up',
    );
    expect(start.stdout).toBe('up\n');
    const imp = await popExec(
      pop,
      'ctr -n k8s.io images import --platform linux/amd64 - && ctr -n k8s.io images mount docker.io/lab/hello:amd64 /mnt >/dev/null && cat /mnt/hello.txt && umount /mnt',
      {
        input: fs.readFileSync(tar),
      },
    );
    expect(imp.stdout).toContain('hello amd64\n');
    const wrong = await popExec(pop, 'ctr -n k8s.io images import --platform linux/arm64 -', {
      input: fs.readFileSync(tar),
      allowFail: true,
    });
    expect(wrong.code).not.toBe(0);
  });

  it('a server on the POP’s 0.0.0.0:6443 is reachable from lab-hub and through the host forwarder', async () => {
    await popExec(
      pop,
      `systemd-run --unit=lab-6443 node -e "require('net').createServer((s) => s.end('pop-api ' + require('os').hostname())).listen(6443, '0.0.0.0')" >/dev/null`,
    );
    const read = (argv: string[]) => run(argv[0]!, argv.slice(1), { allowFail: true }).then((r) => r.stdout);
    await waitFor(
      '6443 from lab-hub',
      async () =>
        (await inNetns(HUB_NETNS, ['bash', '-c', `exec 3<>/dev/tcp/${pop.labAddress}/6443; cat <&3`], { allowFail: true })).stdout ===
        `pop-api ${pop.name}`,
    );
    expect(await read(['bash', '-c', `exec 3<>/dev/tcp/${pop.sshHost}/6443; cat <&3`])).toBe(`pop-api ${pop.name}`);
  });
});

describe('systemd POP (arm64, emulated)', () => {
  let pop: PopInfo;
  afterAll(async () => {
    if (pop) await popDown(pop);
  });

  it('boots an aarch64 systemd to "running" with sshd', async () => {
    pop = await popUp({ arch: 'arm64', systemd: true });
    const kh = await pinnedKnownHosts(pop);
    const r = await ssh(pop, kh, 'uname -m; cat /proc/1/comm; systemctl is-system-running --wait; sudo -n id -u');
    expect(r.stdout.split('\n').slice(0, 4)).toEqual(['aarch64', 'systemd', 'running', '0']);
  });
});
