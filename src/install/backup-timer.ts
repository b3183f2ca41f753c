// The POP side of backups: one POSIX sh script that writes a snapshot of everything a restore needs (datastore,
// server token, node password, k3s config, journal, optional volumes) into one root-only tar, and the systemd
// timer that runs it nightly with retention. `fsm-edge backup` runs the same script on demand (staging) or
// collects the latest scheduled one; either way the controller pulls the tar and age-encrypts it in memory.
// Trade-off: the POP has no age binary (the bundle would have to carry one per arch), so scheduled snapshots are
// stored plaintext, root-only 0600 in a 0700 directory — on a disk that already holds the same token and
// datastore in the clear. Encryption happens when `backup --collect` takes one off the POP.

import { createHash } from 'node:crypto';
import type { Site } from '../config/site.js';
import { definePhase, type PlannedChange, shellChange } from '../engine/phase.js';
import {
  K3S_CONFIG_PATH,
  K3S_DATA_DIR,
  K3S_ETC_DIR,
  K3S_REGISTRIES_PATH,
  K3S_TOKEN_PATH,
  POP_JOURNAL,
  POP_STATE_DIR,
} from '../engine/pop-layout.js';
import { writeFileScript } from '../engine/script-batch.js';
import type { InstallContext } from './context.js';

export const POP_BACKUP_DIR = `${POP_STATE_DIR}/backups`;
/** Scheduled snapshots (the timer), kept `keep` deep. */
export const POP_SCHEDULED_DIR = `${POP_BACKUP_DIR}/scheduled`;
/** On-demand snapshots of `fsm-edge backup`, kept until the controller has the encrypted file. */
export const POP_STAGING_DIR = `${POP_BACKUP_DIR}/staging`;
export const POP_SNAPSHOT_SCRIPT = `${POP_STATE_DIR}/backup-snapshot.sh`;
export const BACKUP_SERVICE_UNIT = '/etc/systemd/system/fsm-edge-backup.service';
export const BACKUP_TIMER_UNIT = '/etc/systemd/system/fsm-edge-backup.timer';
/** The real server token (k3s writes `K10<ca hash>::server:<password>` here). */
export const K3S_SERVER_TOKEN_PATH = `${K3S_DATA_DIR}/server/token`;
export const K3S_NODE_PASSWORD_PATH = '/etc/rancher/node/password';
export const K3S_SERVER_CA_PATH = `${K3S_DATA_DIR}/server/tls/server-ca.crt`;
/** A snapshot's name: `<site>-<YYYYMMDDTHHMMSSZ>`; what the controller accepts from a POP listing. */
export const SNAPSHOT_NAME = /^[a-z0-9][a-z0-9.-]{0,62}-\d{8}T\d{6}Z$/;

/**
 * `sh backup-snapshot.sh DIR SITE SOURCE KEEP [VOLUME…]` (as root): writes DIR/<SITE>-<stamp>.tar and .sha256
 * (0600), keeps the newest KEEP (0 = all), prints `snapshot=… size=… sha256=… pauseMs=… datastore=…`. SQLite:
 * `sqlite3 .backup` when the POP has sqlite3 (online, consistent); else k3s is stopped for the copy — the unit has
 * KillMode=process, so pods keep running and only the control plane pauses — and started again, also on failure.
 */
export const SNAPSHOT_SCRIPT = `#!/bin/sh
# fsm-edge: snapshot what a restore of this POP needs. Written by fsm-edge install; run by fsm-edge-backup.timer
# and by \`fsm-edge backup\`. Output is root-only: it holds the k3s server token.
set -eu
dir=$1; site=$2; source=$3; keep=$4; shift 4
umask 077
mkdir -p "$dir"; chmod 0700 "${POP_BACKUP_DIR}" "$dir"
if command -v flock >/dev/null 2>&1; then
  exec 9>"${POP_BACKUP_DIR}/.snapshot.lock"
  flock -w 600 9 || { echo "another snapshot is running (${POP_BACKUP_DIR}/.snapshot.lock)" >&2; exit 75; }
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
name="$site-$stamp"
tmp="$dir/.tmp-$name"
rm -rf "$tmp"
trap 'rm -rf "$tmp" "$dir/$name.tar.part"' EXIT
mkdir -p "$tmp/k3s" "$tmp/pop" "$tmp/datastore" "$tmp/meta"
D=${K3S_DATA_DIR}
if [ ! -s ${K3S_SERVER_TOKEN_PATH} ]; then echo "no k3s server token at ${K3S_SERVER_TOKEN_PATH}: is k3s installed and started once?" >&2; exit 3; fi
cp ${K3S_SERVER_TOKEN_PATH} "$tmp/k3s/token"
[ -s ${K3S_TOKEN_PATH} ] && cp ${K3S_TOKEN_PATH} "$tmp/k3s/cluster-token"
[ -s ${K3S_NODE_PASSWORD_PATH} ] && cp ${K3S_NODE_PASSWORD_PATH} "$tmp/k3s/node-password"
[ -f ${K3S_CONFIG_PATH} ] && cp ${K3S_CONFIG_PATH} "$tmp/k3s/config.yaml"
[ -f ${K3S_REGISTRIES_PATH} ] && cp ${K3S_REGISTRIES_PATH} "$tmp/k3s/registries.yaml"
if [ -d ${K3S_ETC_DIR}/config.yaml.d ]; then
  mkdir -p "$tmp/k3s/config.yaml.d"
  for f in ${K3S_ETC_DIR}/config.yaml.d/*.yaml; do [ -f "$f" ] && cp "$f" "$tmp/k3s/config.yaml.d/"; done
fi
[ -f ${POP_JOURNAL} ] && cp ${POP_JOURNAL} "$tmp/pop/journal.json"
[ -f ${K3S_SERVER_CA_PATH} ] && cp ${K3S_SERVER_CA_PATH} "$tmp/meta/server-ca.crt"
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
pause=0
if [ -d "$D/server/db/etcd" ]; then
  ds=etcd
  mkdir -p "$tmp/snap"
  k3s etcd-snapshot save --name fsm-edge-backup --dir "$tmp/snap" >&2
  found=
  for f in "$tmp/snap"/fsm-edge-backup-*; do [ -f "$f" ] && found=$f; done
  [ -n "$found" ] || { echo "k3s etcd-snapshot save wrote no snapshot in $tmp/snap" >&2; exit 4; }
  mv "$found" "$tmp/datastore/etcd-snapshot"
  rm -rf "$tmp/snap"
else
  ds=sqlite
  mkdir -p "$tmp/datastore/sqlite"
  if command -v sqlite3 >/dev/null 2>&1 && [ -f "$D/server/db/state.db" ]; then
    sqlite3 "$D/server/db/state.db" ".backup '$tmp/datastore/sqlite/state.db'"
  else
    t0=$(ms); was=0; rc=0
    systemctl is-active --quiet k3s && was=1
    [ $was = 1 ] && { timeout 120 systemctl stop k3s || rc=$?; }
    if [ $rc = 0 ]; then
      for f in "$D/server/db"/*; do
        [ -f "$f" ] || continue
        case "$f" in *.migrated) continue ;; esac
        cp -p "$f" "$tmp/datastore/sqlite/" || { rc=$?; break; }
      done
    fi
    # start k3s again whatever happened above: the control plane must not stay down
    [ $was = 1 ] && { timeout 300 systemctl start k3s || { echo "k3s did not start again after the copy" >&2; rc=5; }; }
    pause=$(( $(ms) - t0 ))
    [ $rc = 0 ] || exit $rc
  fi
fi
vols=
i=0
for v in "$@"; do
  i=$((i + 1))
  [ -d "$v" ] || { echo "volume $v is not a directory" >&2; exit 6; }
  mkdir -p "$tmp/volumes"
  n=$(basename "$v" | tr -c 'A-Za-z0-9._-\\n' '_')
  tar -C "$v" -cf "$tmp/volumes/$i-$n.tar" .
  vols="$vols $i-$n"
done
ver=$(k3s --version 2>/dev/null | head -n 1 | awk '{ print $3 }')
{
  echo "format=fsm-edge-pop-snapshot/v1"
  echo "site=$site"
  echo "source=$source"
  echo "createdAt=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  node=$(sed -n 's/^node-name: *//p' ${K3S_CONFIG_PATH} 2>/dev/null | tr -d ""'" | head -n 1)
  echo "nodeName=\${node:-$(hostname)}"
  echo "arch=$(uname -m)"
  echo "k3sVersion=$ver"
  echo "datastore=$ds"
  echo "pauseMs=$pause"
} > "$tmp/meta/info.env"
parts="k3s pop datastore meta"
[ -d "$tmp/volumes" ] && parts="$parts volumes"
# shellcheck disable=SC2086
tar -C "$tmp" -cf "$dir/$name.tar.part" $parts
sum=$(sha256sum "$dir/$name.tar.part" | cut -d' ' -f1)
size=$(wc -c < "$dir/$name.tar.part" | tr -d ' ')
echo "$sum" > "$dir/$name.sha256"
mv -f "$dir/$name.tar.part" "$dir/$name.tar"
if [ "$keep" -gt 0 ]; then
  n=$(ls -1 "$dir" | grep -c '\\.tar$' || true)
  if [ "$n" -gt "$keep" ]; then
    ls -1 "$dir" | grep '\\.tar$' | sort | head -n $((n - keep)) | while read -r old; do
      rm -f "$dir/$old" "$dir/\${old%.tar}.sha256" "$dir/\${old%.tar}.tar.pull-key"
    done
  fi
fi
echo "snapshot=$dir/$name.tar size=$size sha256=$sum pauseMs=$pause datastore=$ds"
`;

/** The argv of one snapshot run (paths and names only: nothing secret). */
export function snapshotCommand(dir: string, site: string, source: 'controller' | 'scheduled', keep: number, volumes: string[]): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return ['sh', POP_SNAPSHOT_SCRIPT, q(dir), q(site), source, String(keep), ...volumes.map(q)].join(' ');
}

export function backupSettings(site: Site): { keep: number; schedule: string; volumes: string[] } {
  const b = site.spec.backup;
  return { keep: b?.keep ?? 7, schedule: b?.schedule ?? 'daily', volumes: b?.volumes ?? [] };
}

export function backupUnits(site: Site): { service: string; timer: string } {
  const s = backupSettings(site);
  const service = `[Unit]
Description=fsm-edge scheduled backup snapshot (k3s datastore, token, config)
After=k3s.service

[Service]
Type=oneshot
ExecStart=${snapshotCommand(POP_SCHEDULED_DIR, site.metadata.name, 'scheduled', s.keep, s.volumes)}
TimeoutStartSec=900
`;
  const timer = `[Unit]
Description=fsm-edge scheduled backup snapshot

[Timer]
OnCalendar=${s.schedule}
RandomizedDelaySec=15m
Persistent=true

[Install]
WantedBy=timers.target
`;
  return { service, timer };
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

export const BACKUP_TIMER_PROBE = `
for f in ${POP_SNAPSHOT_SCRIPT} ${BACKUP_SERVICE_UNIT} ${BACKUP_TIMER_UNIT}; do
  if [ -f "$f" ]; then echo "sha $f $(sha256sum < "$f" | cut -d' ' -f1)"; else echo "sha $f -"; fi
done
echo "timer=$(systemctl is-enabled fsm-edge-backup.timer 2>/dev/null)"
`;

interface TimerLive {
  sha: Map<string, string>;
  enabled: boolean;
}

/** The last install phase: the snapshot script, and (unless schedule is "off") the nightly timer with retention. */
export const backupTimerPhase = definePhase<InstallContext, { service: string; timer: string; off: boolean }, TimerLive>({
  id: 'backup-timer',
  title: 'schedule backups on the POP',
  probe: () => BACKUP_TIMER_PROBE,
  prepare: (ctx) => ({ ...backupUnits(ctx.site), off: backupSettings(ctx.site).schedule === 'off' }),
  inputs: (_ctx, u) => ({ script: sha(SNAPSHOT_SCRIPT), service: sha(u.service), timer: sha(u.timer), off: u.off }),
  check(_ctx, _u, env) {
    const m = new Map<string, string>();
    let enabled = false;
    for (const line of env.probe.split('\n')) {
      const s = /^sha (\S+) (\S+)$/.exec(line.trim());
      if (s) m.set(s[1]!, s[2]!);
      if (line.trim() === 'timer=enabled') enabled = true;
    }
    return { sha: m, enabled };
  },
  plan(_ctx, u, live) {
    const changes: PlannedChange[] = [];
    const files: Array<[string, string, number]> = [[POP_SNAPSHOT_SCRIPT, SNAPSHOT_SCRIPT, 0o700]];
    if (!u.off) files.push([BACKUP_SERVICE_UNIT, u.service, 0o644], [BACKUP_TIMER_UNIT, u.timer, 0o644]);
    let unitsChanged = false;
    for (const [path, text, mode] of files) {
      if (live.sha.get(path) === sha(text)) continue;
      if (path !== POP_SNAPSHOT_SCRIPT) unitsChanged = true;
      changes.push(shellChange(`write ${path}`, writeFileScript(path, text, mode)));
    }
    if (u.off && (live.enabled || live.sha.get(BACKUP_TIMER_UNIT) !== '-')) {
      changes.push(
        shellChange(
          'disable the backup timer (schedule: off)',
          `systemctl disable --now fsm-edge-backup.timer >/dev/null 2>&1 || true; rm -f ${BACKUP_TIMER_UNIT} ${BACKUP_SERVICE_UNIT}; systemctl daemon-reload`,
        ),
      );
    } else if (!u.off && (unitsChanged || !live.enabled)) {
      changes.push(
        shellChange(
          'enable fsm-edge-backup.timer',
          'systemctl daemon-reload && systemctl enable --now fsm-edge-backup.timer >/dev/null 2>&1 && systemctl restart fsm-edge-backup.timer',
        ),
      );
    }
    return changes;
  },
  describe: (ctx, u, _live, changes, dryRun) => ({
    summary:
      dryRun && changes.length
        ? `would: ${changes.join(', ')}`
        : u.off
          ? 'no scheduled backups (schedule: off)'
          : `scheduled backups ${backupSettings(ctx.site).schedule}, keep ${backupSettings(ctx.site).keep}, in ${POP_SCHEDULED_DIR}`,
  }),
});
