// One shard of a rollout of the fake fleet, as its own process (the pods of the emitted Job are separate
// processes that share nothing but the state volume): `tsx shard-process.ts INDEX COUNT STATE_DIR SITES`.
// Builds the fleet, keeps its share by `inShard`, runs the rollout, writes the report, and prints one JSON line:
// the sites whose install ran in this process and the report's directory.

import { RolloutSchema } from '../../src/config/fleet.js';
import { planRollout } from '../../src/rollout/plan.js';
import { writeRolloutReport } from '../../src/rollout/report.js';
import { runRollout } from '../../src/rollout/run.js';
import { inShard } from '../../src/rollout/shard.js';
import { rolloutReportDir } from '../../src/rollout/state.js';
import { DIGEST, FakeFleet } from './fake-fleet.js';

const [index, count, root, sites] = process.argv.slice(2);
const shard = { index: Number(index), count: Number(count) };
const fleet = new FakeFleet(sites!.split(','));
const targets = fleet.targets().filter((t) => inShard(t.site.metadata.name, shard));
const report = await runRollout({
  fleet: 'edge',
  plan: planRollout(
    targets.map((t) => ({ name: t.site.metadata.name })),
    RolloutSchema.parse({ canary: 1, waves: ['50%'] }),
  ),
  targets,
  bundle: { name: 'test-bundle', digest: DIGEST },
  operation: fleet.operation,
  facts: fleet.facts,
  runOptions: {},
  stateDir: root!,
  resume: false,
  shard,
});
const dir = rolloutReportDir(root!, report.id);
writeRolloutReport(dir, report);
process.stdout.write(`${JSON.stringify({ installed: fleet.started, dir })}\n`);
