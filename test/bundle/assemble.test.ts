// The real bundle/pop/assemble.sh, run with /bin/sh on a temp tree (ROOT = a temp dir): it refuses any plan that
// would write outside its own POP directories, before writing anything. It runs as root on a POP, so it must hold
// even when the controller that generated the plan was fooled.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import * as layout from '../../src/bundle/layout.js';

const SCRIPT = fileURLToPath(new URL('../../bundle/pop/assemble.sh', import.meta.url));

const tmpBase = fs.mkdtempSync(path.join(os.tmpdir(), 'assemble-'));
afterAll(() => fs.rmSync(tmpBase, { recursive: true, force: true }));
let t: string;
let store: string;
let root: string;
const blob = Buffer.from('* * * * * root touch /tmp/owned\n');
const hex = createHash('sha256').update(blob).digest('hex');

beforeEach(() => {
  t = fs.mkdtempSync(path.join(tmpBase, 't-'));
  store = path.join(t, 'store');
  root = path.join(t, 'root');
  fs.mkdirSync(path.join(store, 'sha256'), { recursive: true });
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(store, 'sha256', hex), blob);
});

/** Every path under the temp tree with its type and content digest: "writes nothing" means this is unchanged. */
function tree(dir = t): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of fs.readdirSync(d).sort()) {
      const p = path.join(d, n);
      const st = fs.lstatSync(p);
      if (st.isSymbolicLink()) out.push(`${p} -> ${fs.readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(`${p}/`);
        walk(p);
      } else out.push(`${p} ${st.mode.toString(8)} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`);
    }
  };
  walk(dir);
  return out;
}

function run(lines: string[], mode: 'apply' | 'check' = 'apply') {
  const plan = path.join(t, 'plan.txt');
  fs.writeFileSync(plan, ['fsm-edge-plan 1', ...lines, ''].join('\n'));
  try {
    const stdout = execFileSync('/bin/sh', [SCRIPT, mode, store, plan, root], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, stdout: x.stdout, stderr: x.stderr };
  }
}
const fileLine = (dest: string, mode = '0644') => `file ${hex} ${blob.length} ${mode} ${dest}`;

describe('assemble.sh confinement', () => {
  it('allows exactly the POP paths of src/bundle/layout.ts', () => {
    const text = fs.readFileSync(SCRIPT, 'utf8');
    const v = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(text)?.[1];
    expect(v('K3S_BINARY')).toBe(layout.POP_K3S_BINARY);
    expect(v('INSTALL_SCRIPT')).toBe(layout.POP_INSTALL_SCRIPT);
    expect(v('IMAGES_DIR')).toBe(layout.POP_K3S_IMAGES_DIR);
    expect(v('CHARTS_DIR')).toBe(layout.POP_STATIC_CHARTS_DIR);
    expect(v('ARCHIVE_PREFIX')).toBe(layout.POP_ARCHIVE_PREFIX);
  });

  it('writes an allowed destination (the control case)', () => {
    const r = run([fileLine('/var/lib/rancher/k3s/server/static/charts/fsm-1.5.1.tgz')]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(root, 'var/lib/rancher/k3s/server/static/charts/fsm-1.5.1.tgz')).equals(blob)).toBe(true);
  });

  it('refuses a destination that climbs out with .. and writes nothing, not even the lines before it', () => {
    const before = tree();
    const escape = `/var/lib/rancher/k3s/server/static/charts/${'../'.repeat(8)}etc/cron.d/x`;
    const r = run([fileLine('/usr/local/bin/k3s', '0755'), fileLine(escape)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('plan line 3: refused:');
    expect(r.stderr).toContain("'..'");
    expect(fs.existsSync(path.join(t, 'etc'))).toBe(false);
    expect(tree()).toEqual(
      [
        ...before,
        `${path.join(t, 'plan.txt')} 100644 ${createHash('sha256')
          .update(fs.readFileSync(path.join(t, 'plan.txt')))
          .digest('hex')}`,
      ].sort(),
    );
  });

  it('refuses destinations outside its directories, odd names and unsafe records', () => {
    const cases: Array<[string, RegExp]> = [
      [fileLine('/etc/cron.d/x'), /outside the places a plan may write/],
      [fileLine('/var/lib/rancher/k3s/server/static/charts/.hidden'), /not a plain file name/],
      [fileLine('var/lib/rancher/k3s/server/static/charts/x'), /not an absolute path/],
      [fileLine('/var/lib/rancher/k3s/server/static/charts//x'), /empty component/],
      [`file ../../../etc/shadow ${blob.length} 0644 /usr/local/bin/k3s`, /not a sha256 in hex/],
      [fileLine('/usr/local/bin/k3s', '4755'), /mode '4755'/],
      [`image /etc/cron.d/fsm-edge_x.tar {}`, /outside \/var\/lib\/rancher\/k3s\/agent\/images/],
      [`prune /etc ''`, /only \/var\/lib\/rancher\/k3s\/agent\/images may be pruned/],
    ];
    for (const [line, why] of cases) {
      const before = tree(root);
      const r = run([line]);
      expect(r.code, line).toBe(1);
      expect(r.stderr, line).toMatch(why);
      expect(tree(root), line).toEqual(before);
    }
  });

  it('refuses a symlinked parent directory and writes nothing through it', () => {
    const elsewhere = path.join(t, 'elsewhere');
    fs.mkdirSync(elsewhere);
    fs.mkdirSync(path.join(root, 'var/lib'), { recursive: true });
    fs.symlinkSync(elsewhere, path.join(root, 'var/lib/rancher'));
    const before = tree();
    for (const mode of ['apply', 'check'] as const) {
      const r = run([fileLine('/var/lib/rancher/k3s/server/static/charts/fsm-1.5.1.tgz')], mode);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${root}/var/lib/rancher is a symlink`);
    }
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    expect(tree().filter((l) => !l.includes('plan.txt'))).toEqual(before.filter((l) => !l.includes('plan.txt')));
  });

  it('replaces a symlink at the destination instead of following it (no chmod or write through it)', () => {
    const victim = path.join(t, 'victim');
    fs.writeFileSync(victim, blob, { mode: 0o600 });
    fs.mkdirSync(path.join(root, 'usr/local/bin'), { recursive: true });
    fs.symlinkSync(victim, path.join(root, 'usr/local/bin/k3s'));
    const r = run([fileLine('/usr/local/bin/k3s', '0755')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('changed file /usr/local/bin/k3s');
    expect(fs.statSync(victim).mode & 0o777).toBe(0o600);
    const st = fs.lstatSync(path.join(root, 'usr/local/bin/k3s'));
    expect(st.isFile() && (st.mode & 0o777) === 0o755).toBe(true);
  });
});
