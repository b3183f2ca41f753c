// The real CLI, run from source (tsx) so the wizard tests need no build: what bin/fsm-edge.js runs from dist/.
import { main } from '../../src/cli/main.js';
process.exitCode = await main(process.argv);
