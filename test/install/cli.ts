// Runs the fsm-edge CLI from source (tests use this so they never meet a stale dist/).
import { main } from '../../src/cli/main.js';
process.exitCode = await main(process.argv);
