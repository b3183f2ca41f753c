// `fsm-edge config …`: check configuration files and print the JSON Schema editors use.

import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { checkConfigFilesDeep, checkHubRefs, configJsonSchema, type Hub } from '../../config/index.js';
import { JSON_OPTION_HELP } from '../options.js';
import { CliError, EXIT_USAGE, formatDiagnostic, outputFor } from '../output.js';

export function register(program: Command): void {
  const config = program.command('config').description('validate Site, Fleet, Hub and Recipe files; print their JSON Schema');

  config
    .command('validate')
    .description('check configuration files; every problem is reported as file:line:column with the field path')
    .argument('<file...>', 'YAML files (several documents per file allowed, separated by ---)')
    .option('--json', JSON_OPTION_HELP)
    .addHelpText(
      'after',
      `
A Fleet is checked together with the site files its globs match, after merging its defaults.
When Hub documents are among the files, every site's spec.hub.ref must name one of them.
Exit code 0 when every file is valid, 2 when any problem was found.`,
    )
    .action(function (this: Command, files: string[]) {
      const out = outputFor(this);
      const checked = checkConfigFilesDeep(files);
      const { documents, sites, failedInputs } = checked;
      // With Hub documents among the files, every site's hub.ref must name one of them.
      const hubs = documents.filter((d) => d.kind === 'Hub').map((d) => d.value as Hub);
      const refProblems = hubs.length ? checkHubRefs(sites, hubs) : [];
      for (const p of refProblems) {
        const input = files.find((f) => resolve(f) === resolve(p.file));
        if (input && !failedInputs.includes(input)) failedInputs.push(input);
      }
      const diagnostics = [...checked.diagnostics, ...refProblems];
      const valid = diagnostics.length === 0;
      const perFile = files.map((file) => ({
        file,
        valid: !failedInputs.includes(file),
        documents: documents
          .filter((d) => d.source.file === file)
          .map((d) => ({ kind: d.kind, name: d.value.metadata.name, line: d.source.line })),
      }));
      out.result({ ok: valid, files: perFile, sites: sites.map((s) => s.metadata.name), diagnostics }, () => {
        for (const f of perFile) {
          if (f.valid) {
            const what = f.documents.map((d) => `${d.kind} ${d.name}`).join(', ');
            out.ok(`${f.file}: ${what}`);
          }
        }
        if (sites.length && valid)
          out.line(`${sites.length} site${sites.length === 1 ? '' : 's'}: ${sites.map((s) => s.metadata.name).join(', ')}`);
      });
      if (!valid) {
        if (!out.json) {
          const c = out.errColor;
          for (const d of diagnostics) out.io.stderr.write(`${c.bold(formatDiagnostic(d))}\n`);
          const bad = new Set(diagnostics.map((d) => d.file)).size;
          out.io.stderr.write(
            `${c.red('error:')} ${diagnostics.length} problem${diagnostics.length === 1 ? '' : 's'} in ${bad} file${bad === 1 ? '' : 's'}\n`,
          );
        }
        out.exitCode = EXIT_USAGE;
      }
    });

  config
    .command('schema')
    .description('print the JSON Schema (draft-07) of all document kinds, for yaml-language-server and other editors')
    .option('--out <file>', 'write to a file instead of stdout')
    .addHelpText(
      'after',
      `
Use it in an editor with the YAML extension (yaml-language-server), first line of a config file:
  # yaml-language-server: $schema=./fsm-edge.schema.json
or for all files in VS Code settings: "yaml.schemas": { "./fsm-edge.schema.json": ["*.site.yaml", "fleet*.yaml"] }`,
    )
    .action(function (this: Command, opts: { out?: string }) {
      const text = JSON.stringify(configJsonSchema(), null, 2) + '\n';
      if (opts.out) {
        try {
          writeFileSync(opts.out, text);
        } catch (err) {
          throw new CliError(`cannot write ${opts.out}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
        }
        outputFor(this).note(`wrote ${opts.out}`);
        return;
      }
      outputFor(this).io.stdout.write(text);
    });
}
