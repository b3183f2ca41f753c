// The k3s stand-in on an emulated arm64 systemd POP: the arm64 build runs there (and the amd64 build does not),
// imports an arm64 archive and rejects an amd64-only one, and the node reports arm64.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { popDown, popExec, popUp } from './pop.js';
import type { PopInfo } from './types.js';
import { buildK3sStandIn, K3S_SYSTEM_IMAGES } from './standins/build.js';
import { writeOciArchive } from './standins/oci-archive.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'standins-arm64-'));
let pop: PopInfo | undefined;
const sh = (cmd: string, input?: Buffer) => popExec(pop!, cmd, { allowFail: true, input, timeoutMs: 600_000 });
const put = async (file: string, dest: string, mode = '644') => {
  const r = await sh(`mkdir -p "$(dirname ${dest})" && cat > ${dest} && chmod ${mode} ${dest}`, fs.readFileSync(file));
  expect(r.code, r.stderr).toBe(0);
};

beforeAll(async () => {
  await buildK3sStandIn('arm64', path.join(work, 'k3s-arm64'));
  await buildK3sStandIn('amd64', path.join(work, 'k3s'));
  writeOciArchive(
    path.join(work, 'k3s-airgap-images-arm64.tar'),
    [K3S_SYSTEM_IMAGES.pause, K3S_SYSTEM_IMAGES.coredns].map((ref) => ({ ref, archs: ['arm64'] })),
  );
  writeOciArchive(path.join(work, 'amd64-only.tar'), [{ ref: 'flomesh/fsm-controller:1.5.1', archs: ['amd64'] }]);
  pop = await popUp({ systemd: true, arch: 'arm64' });
  await put(path.join(work, 'k3s-arm64'), '/usr/local/bin/k3s', '755');
  await put(path.join(work, 'k3s'), '/root/k3s-amd64', '755');
  await put(path.join(import.meta.dirname, 'standins', 'install.sh'), '/root/install.sh', '755');
  await put(path.join(work, 'k3s-airgap-images-arm64.tar'), '/var/lib/rancher/k3s/agent/images/k3s-airgap-images-arm64.tar');
  await put(path.join(work, 'amd64-only.tar'), '/var/lib/rancher/k3s/agent/images/amd64-only.tar');
}, 600_000);

afterAll(async () => {
  if (pop) await popDown(pop);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('k3s stand-in on arm64', () => {
  it('the amd64 build refuses to run there like a foreign ELF', async () => {
    const r = await sh('uname -m; /root/k3s-amd64 --version');
    expect(r.stdout).toContain('aarch64');
    expect(r.code).toBe(126);
    expect(r.stderr).toContain('Exec format error');
  });

  it('installs with INSTALL_K3S_SKIP_DOWNLOAD, imports the arm64 archive, rejects the amd64-only one, node is arm64', async () => {
    const r = await sh(
      "mkdir -p /etc/rancher/k3s && printf 'disable: [traefik]\\n' > /etc/rancher/k3s/config.yaml && INSTALL_K3S_SKIP_DOWNLOAD=true /root/install.sh",
    );
    expect(r.code, r.stderr).toBe(0);
    const log = (await sh('journalctl -u k3s --no-pager -o cat')).stdout;
    expect(log).toContain('Imported docker.io/rancher/mirrored-pause:3.10.2');
    expect(log).toMatch(
      /Error encountered while importing \/var\/lib\/rancher\/k3s\/agent\/images\/amd64-only\.tar: image might be filtered out/,
    );
    const images = (await sh('k3s crictl images')).stdout;
    expect(images).toContain('docker.io/rancher/mirrored-pause');
    expect(images).not.toContain('fsm-controller');
    let labels = '';
    for (let i = 0; i < 60 && !labels.includes('arm64'); i++) {
      labels = (await sh("k3s kubectl get nodes -o 'jsonpath={.items[0].metadata.labels.kubernetes\\.io/arch}'")).stdout;
      if (!labels.includes('arm64')) await new Promise((res) => setTimeout(res, 2000));
    }
    expect(labels).toBe('arm64');
  }, 900_000); // Node and Go binaries under qemu-user: minutes on a busy 2-core runner
});
