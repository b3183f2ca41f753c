#!/usr/bin/env node
// Runs the compiled CLI; `npm ci` builds it (prepare), `npm run build` refreshes it.
import { main } from '../dist/cli/main.js';
process.exitCode = await main(process.argv);
