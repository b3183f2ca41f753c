// Type=notify readiness. Node cannot send a datagram to systemd's unix socket itself, so it asks
// systemd-notify to send READY=1 *on behalf of this process* (`--pid`: as root, the message carries our pid in
// its credentials, which the default NotifyAccess=main accepts). Without NOTIFY_SOCKET (not under systemd) it is
// a no-op, as sd_notify is.
import { execCmd } from './exec.js';
import { log } from './log.js';

export async function notifyReady(): Promise<void> {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return;
  const r = await execCmd('systemd-notify', ['--ready', `--pid=${process.pid}`], { env: { ...process.env, NOTIFY_SOCKET: socket } });
  if (r.code !== 0) log.error(`Failed to notify systemd of readiness: ${r.stderr.trim() || `systemd-notify exited ${r.code}`}`);
}
