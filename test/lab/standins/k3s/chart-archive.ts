// Reading a Helm chart archive (.tgz) without dependencies: gunzip + a minimal ustar/pax reader.
import zlib from 'node:zlib';
import { tarOf } from '../../images/synthetic.js';

export interface ChartFiles {
  /** Chart directory name inside the archive (`fsm`). */
  top: string;
  files: Map<string, Buffer>;
}

export function readChartArchive(tgz: Buffer): ChartFiles {
  let tar: Buffer;
  try {
    tar = zlib.gunzipSync(tgz);
  } catch {
    throw new Error('gzip: invalid header');
  }
  const files = new Map<string, Buffer>();
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const field = (a: number, n: number) =>
      h
        .subarray(a, a + n)
        .toString('utf8')
        .replace(/\0.*$/s, '');
    let name = field(0, 100);
    const prefix = field(345, 155);
    if (prefix) name = `${prefix}/${name}`;
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = String.fromCharCode(h[156] ?? 48);
    const body = tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = body.toString('utf8').replace(/\0.*$/s, '');
      continue;
    }
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      if (m) longName = m[1];
      continue;
    }
    if (type === 'g') continue;
    if (longName) {
      name = longName;
      longName = undefined;
    }
    if (type === '0' || type === '\0') files.set(name.replace(/^\.\//, ''), Buffer.from(body));
  }
  const top = [...files.keys()].map((k) => k.split('/')[0]!).find((t) => files.has(`${t}/Chart.yaml`));
  if (!top) throw new Error('Chart.yaml file is missing');
  return { top, files };
}

/** Writes a minimal chart .tgz (ustar, mtime 0) from `files` (paths relative to the chart dir `top`). */
export function writeChartArchive(top: string, files: Record<string, string>): Buffer {
  return zlib.gzipSync(tarOf(Object.fromEntries(Object.entries(files).map(([rel, text]) => [`${top}/${rel}`, text]))), { level: 9 });
}
