// The contract every phase keeps (after k0sctl's phase/ package, typed and smaller):
//   prepare — render and compute once, on the controller;
//   check   — read the live state of the POP (from the run's one batched probe, so it costs no round trip);
//   plan    — the changes, as data: a description and the function that makes the change;
//   apply   — the runner executes exactly the planned changes, in order (a dry run skips this step);
//   settle  — gates and waits after the changes (k3s ready, FSM healthy, Managed on the hub).
// A dry run is the same code with apply skipped, so what it prints is what a real run would do.

import type { Host } from '../transport/host.js';
import { PhaseRefusal } from './failure.js';
import type { ScriptChange } from './script-batch.js';

export { PhaseRefusal };

/** A change made by controller-side code (an API call, a blob sync). Called by the runner, only in a real run. */
export interface CodeChange {
  description: string;
  run(): Promise<unknown>;
}

/**
 * One change a phase will make. Shell changes (`script`) that follow each other are sent to the POP as one
 * command (one round trip); code changes run one by one.
 */
export type PlannedChange = CodeChange | ScriptChange;

export function change(description: string, run: () => Promise<unknown>): CodeChange {
  return { description, run };
}

export function shellChange(description: string, script: string, extra: Omit<ScriptChange, 'description' | 'script'> = {}): ScriptChange {
  return { description, script, ...extra };
}

export const isScriptChange = (c: PlannedChange): c is ScriptChange => 'script' in c;

/** What the runner hands every phase step. */
export interface PhaseEnv {
  host: Host;
  dryRun: boolean;
  signal: AbortSignal;
  /** This phase's section of the run's batched live-state probe (stdout lines), if it contributed one. */
  probe: string;
}

export interface PhaseResult {
  /** One line for the operator: "sent 41 of 58 blobs, 212 MiB, 1.9 MB/s". */
  summary?: string;
  /** Non-fatal findings the operator should see. */
  warnings?: string[];
  /** Figures for the site record (bytes sent, round trips, …). */
  metrics?: Record<string, number>;
  /**
   * The phase could not finish for a reason outside the POP that is not a failure (the hub is down): reported,
   * not journaled, so the next run (or `fsm-edge register`) does it.
   */
  pending?: string;
}

export interface Phase<Ctx, Prep = unknown, Live = unknown> {
  /** Stable id, used as the journal key: `facts`, `preflight`, `sync`, `k3s`, `mesh`, … */
  readonly id: string;
  readonly title: string;
  /** Checked and settled every run (facts, preflight, sync): it feeds later phases, or is as cheap as its check. */
  readonly always?: boolean;
  /**
   * A POSIX sh snippet for the run's batched probe (one round trip for all phases). Its stdout reaches `check` as
   * `env.probe`. It must only read, and must not fail the probe (every command tolerates a missing tool).
   */
  probe?(ctx: Ctx): string;
  prepare?(ctx: Ctx, env: PhaseEnv): Prep | Promise<Prep>;
  /** What the result depends on (rendered files, digests, versions); a change re-runs `settle`. */
  inputs?(ctx: Ctx, prep: Prep): unknown;
  /** Reads the live state. May refuse (PhaseRefusal) — nothing has changed yet. */
  check(ctx: Ctx, prep: Prep, env: PhaseEnv): Live | Promise<Live>;
  /**
   * The changes that bring the live state to the wanted one; empty when it already is. Decides only: the
   * changes act on `env.host` when the runner runs them.
   */
  plan(ctx: Ctx, prep: Prep, live: Live, env: PhaseEnv): PlannedChange[];
  /** False when the live state, though nothing needs changing, is not healthy yet: then `settle` runs (waits). */
  healthy?(live: Live): boolean;
  /**
   * Gates after apply, in real runs: when something changed, or the journal does not vouch for this phase with
   * these inputs (a run that died while waiting), or the phase is `always`.
   */
  settle?(ctx: Ctx, prep: Prep, live: Live, env: PhaseEnv, applied: readonly string[]): Promise<PhaseResult>;
  /** The line for the operator when the phase had nothing to settle (and for dry runs). */
  describe?(ctx: Ctx, prep: Prep, live: Live, changes: readonly string[], dryRun: boolean): PhaseResult;
}

/** A phase with its Prep/Live types erased, for lists of phases. */
// biome-ignore lint/suspicious/noExplicitAny: the runner passes each phase its own Prep and Live back unchanged.
export type AnyPhase<Ctx> = Phase<Ctx, any, any>;

/** Keeps a phase's Prep and Live types checked inside its definition, then erases them. */
export function definePhase<Ctx, Prep = undefined, Live = undefined>(p: Phase<Ctx, Prep, Live>): AnyPhase<Ctx> {
  return p;
}
