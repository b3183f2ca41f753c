// arm64 POPs run through qemu-user-static. The lab registers its own binfmt_misc entry with flags `FPC`:
// F = the interpreter is opened now, so it works inside any chroot; C = credentials come from the binary, without
// which setuid `sudo` in an arm64 POP fails ("effective uid is not 0"). Debian's own qemu-aarch64 entry (flags PF)
// lacks C; the newest entry wins, so Debian's can stay as it is.
import fs from 'node:fs';
import { run } from './proc.js';

const BINFMT = '/proc/sys/fs/binfmt_misc';
export const BINFMT_ENTRY = 'fsm-edge-lab-aarch64';
const QEMU = '/usr/bin/qemu-aarch64-static';
// ELF64 little-endian, e_machine = EM_AARCH64 (183), from Debian's qemu-user-static registration.
const MAGIC = '\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00';
const MASK = '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff';

export const arm64Registered = () => fs.existsSync(`${BINFMT}/${BINFMT_ENTRY}`);

export async function ensureArm64Binfmt(): Promise<void> {
  if (process.arch === 'arm64') return;
  if (!fs.existsSync(QEMU)) throw new Error(`lab: ${QEMU} is missing; run \`bash scripts/bootstrap.sh\` (apt package qemu-user-static)`);
  if (!fs.existsSync(`${BINFMT}/register`)) await run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]);
  if (arm64Registered()) return;
  try {
    fs.writeFileSync(`${BINFMT}/register`, `:${BINFMT_ENTRY}:M:0:${MAGIC}:${MASK}:${QEMU}:FPC`);
  } catch (e) {
    if (!arm64Registered()) throw new Error(`lab: could not register binfmt entry ${BINFMT_ENTRY}: ${String(e)}`);
  }
}

export function removeArm64Binfmt(): void {
  if (arm64Registered()) fs.writeFileSync(`${BINFMT}/${BINFMT_ENTRY}`, '-1');
}
