// The facts phase: what the POP is, read from its section of the run's one batched probe (no round trip of
// its own). Later phases read `ctx.facts`.

import { definePhase } from '../engine/phase.js';
import type { InstallContext } from './context.js';
import { describeFacts, FACTS_SCRIPT, type Facts, parseFacts } from './host-facts.js';

export { describeFacts, type Facts, k3sHealthWord, parseFacts, probeFacts } from './host-facts.js';

export const factsPhase = definePhase<InstallContext, undefined, Facts>({
  id: 'facts',
  title: 'gather facts',
  always: true,
  probe: () => FACTS_SCRIPT,
  check(ctx, _prep, env) {
    ctx.facts = parseFacts(env.probe);
    return ctx.facts;
  },
  plan: () => [],
  describe: (_ctx, _prep, facts) => ({ summary: describeFacts(facts) }),
});
