// Binary-safe atomic writes inside a change batch: the bytes travel base64-encoded (gzip first for datastore
// files) in a quoted here-document on the batch's stdin — never in argv, never in a log — and land through the
// transport's temp-file + chmod + rename, so a cut link leaves the old file or none, never half of one.

import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { atomicWriteCommand } from '../transport/remote-command.js';

/** Base64 in 76-character lines: no line can equal the here-document's delimiter. */
function base64Lines(data: Buffer): string {
  const b64 = data.toString('base64');
  return b64.length ? `${b64.replace(/.{1,76}/g, '$&\n')}` : '';
}

export const B64_EOF_PREFIX = 'FSM_EDGE_B64_';

export function writeBytesScript(path: string, data: Buffer, mode: number, opts: { gzip?: boolean; nonce?: string } = {}): string {
  const eof = `${B64_EOF_PREFIX}${opts.nonce ?? randomBytes(8).toString('hex')}`;
  const body = opts.gzip ? gzipSync(data, { level: 6 }) : data;
  const fill = opts.gzip ? `base64 -d <<'${eof}' | gzip -dc > "$t"` : `base64 -d > "$t" <<'${eof}'`;
  return `${atomicWriteCommand(path, mode, fill)}\n${base64Lines(body)}${eof}`;
}

/** Bytes a write costs on the wire (what the batch carries), for the figures. */
export function wireBytes(data: Buffer, gzip?: boolean): number {
  const body = gzip ? gzipSync(data, { level: 6 }) : data;
  return base64Lines(body).length;
}
