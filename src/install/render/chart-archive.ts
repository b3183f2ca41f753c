// Reads Chart.yaml, values.yaml and values.schema.json out of a Helm chart archive (.tgz) on the controller,
// so the values can be validated against the chart's own schema before anything is written on the POP.

import { t as listTar, type ReadEntry } from 'tar';
import { parse } from 'yaml';

export interface ChartMeta {
  name: string;
  version: string;
  appVersion?: string;
  /** Chart defaults (values.yaml). */
  defaults: Record<string, unknown>;
  /** values.schema.json, when the chart has one. */
  schema?: Record<string, unknown>;
}

const WANTED = new Set(['Chart.yaml', 'values.yaml', 'values.schema.json']);

export async function readChartArchive(file: string): Promise<ChartMeta> {
  const found = new Map<string, Buffer>();
  const pending: Promise<void>[] = [];
  await listTar({
    file,
    onReadEntry: (entry: ReadEntry) => {
      // `<chart>/values.yaml` at the top level of the chart dir only (not subcharts).
      const parts = entry.path.split('/');
      const base = parts.length === 2 ? parts[1]! : '';
      if (!WANTED.has(base)) {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      pending.push(
        new Promise((resolve, reject) => {
          entry.on('data', (c: Buffer) => chunks.push(c));
          entry.on('end', () => {
            found.set(base, Buffer.concat(chunks));
            resolve();
          });
          entry.on('error', reject);
        }),
      );
    },
  });
  await Promise.all(pending);
  const chartYaml = found.get('Chart.yaml');
  if (!chartYaml) throw new Error(`${file}: not a Helm chart archive (no <chart>/Chart.yaml)`);
  const chart = parse(chartYaml.toString('utf8')) as { name?: string; version?: string; appVersion?: string };
  const values = found.get('values.yaml');
  const schema = found.get('values.schema.json');
  return {
    name: chart.name ?? '',
    version: String(chart.version ?? ''),
    ...(chart.appVersion ? { appVersion: String(chart.appVersion) } : {}),
    defaults: values ? ((parse(values.toString('utf8')) as Record<string, unknown>) ?? {}) : {},
    ...(schema ? { schema: JSON.parse(schema.toString('utf8')) as Record<string, unknown> } : {}),
  };
}
