// Which sites a command acts on: the Site and Fleet documents of the given files (with Hub documents among
// them or in `--hub`), filtered by name, each with its Hub and the file it came from.

import path from 'node:path';
import { loadSites, sourceOf } from '../config/index.js';
import { UsageError } from '../config/errors.js';
import type { Hub } from '../config/hub.js';
import type { SiteTarget } from './run-sites.js';

/** The selection is not possible as asked: the caller's input is wrong (exit 2 at the CLI). */
export class TargetError extends UsageError {
  constructor(message: string, fix?: string) {
    super(message, fix);
    this.name = 'TargetError';
  }
}

export function selectSites(files: readonly string[], opts: { hub?: string; site?: readonly string[] } = {}): SiteTarget[] {
  const cfg = loadSites(opts.hub ? [...files, opts.hub] : [...files]);
  let sites = cfg.sites;
  if (opts.site?.length) {
    const unknown = opts.site.filter((n) => !sites.some((s) => s.metadata.name === n));
    if (unknown.length)
      throw new TargetError(
        `no site named ${unknown.join(', ')} in ${files.join(', ')}`,
        `sites there: ${sites.map((s) => s.metadata.name).join(', ')}`,
      );
    sites = sites.filter((s) => opts.site!.includes(s.metadata.name));
  }
  if (sites.length === 0) throw new TargetError(`no Site in ${files.join(', ')}`, 'give a Site or Fleet file');
  return sites.map((site) => {
    const file = sourceOf(site)?.file ?? files[0]!;
    let hub: Hub | undefined;
    if (site.spec.hub) {
      hub = cfg.hubs.find((h) => h.metadata.name === site.spec.hub!.ref);
      if (!hub) {
        throw new TargetError(
          `site ${site.metadata.name} registers with hub "${site.spec.hub.ref}", but no Hub document of that name was given`,
          'add the Hub document to the site file or pass it with --hub hub.yaml',
        );
      }
    }
    return { site, ...(hub ? { hub } : {}), file, configDir: path.dirname(path.resolve(file)) };
  });
}
