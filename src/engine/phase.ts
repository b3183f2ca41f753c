// The shape every install phase has (after k0sctl's phase/ package, typed and smaller).
// A phase can say whether it is already done (`check`), what it would change (`plan`, from the same code
// path as `apply` via `Changes`), and do it (`apply`). The runner records each finished phase in the POP's
// journal so a re-run continues where it stopped.

import type { Host } from '../transport/host.js';

/**
 * Every change a phase makes goes through `change(description, fn)`. In a dry run the description is
 * collected and `fn` is skipped; in a real run `fn` runs. The plan can never drift from what apply does.
 */
export class Changes {
  readonly planned: string[] = [];
  constructor(readonly dryRun: boolean) {}

  async change<T>(description: string, fn: () => Promise<T>): Promise<T | undefined> {
    this.planned.push(description);
    if (this.dryRun) return undefined;
    return fn();
  }
}

export interface PhaseOutcome {
  /** One line for the operator: "sent 41 of 58 blobs, 212 MiB, 1.9 MB/s". */
  summary: string;
  /** What changed (empty when the phase found everything already done). */
  changes: string[];
  /** Non-fatal findings the operator should see. */
  warnings?: string[];
  /** Figures for the site record (bytes sent, round trips, …). */
  metrics?: Record<string, number>;
}

export interface Phase<Ctx> {
  /** Stable id, used as the journal key: `facts`, `preflight`, `sync`, `k3s`, `mesh`, … */
  readonly id: string;
  readonly title: string;
  /** True when the host already is in the state this phase produces (then apply is skipped). */
  check?(ctx: Ctx, host: Host): Promise<boolean>;
  /** Does the work, or in a dry run only records what it would do. Must be safe to run again. */
  apply(ctx: Ctx, host: Host, changes: Changes): Promise<PhaseOutcome>;
}

/** A refusal the operator can act on: the reason and the fix. Nothing was changed on the host. */
export class PhaseRefusal extends Error {
  constructor(
    readonly phase: string,
    readonly reason: string,
    readonly fix: string,
  ) {
    super(`${phase}: ${reason}\n  fix: ${fix}`);
    this.name = 'PhaseRefusal';
  }
}
