// What every phase of `migrate convert` starts from: the options, the table, and the conversion's
// recorded state, read once when the phase starts. Each phase (phase-*.ts) then reads the facts it
// needs, asks the pure planner for its steps, and runs them through execute.ts.
import type { Kysely } from "kysely";
import { EXIT, type ExitCode } from "../config/errors.ts";
import type { TablePolicy } from "../config/policy.ts";
import type { Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import type { ExecContext } from "./apply.ts";
import type { ConversionDesign, ConvertInput } from "./design.ts";
import { INGEST_COLUMN } from "./design.ts";
import type { ConversionState, TableFacts } from "./facts.ts";
import type { PrepareState } from "./step-prepare.ts";

export const CONVERT_PHASES = [
  "preflight",
  "prepare",
  "swap",
  "verify",
  "revert",
  "finalize",
  "status",
] as const;
export type ConvertPhase = (typeof CONVERT_PHASES)[number] | "all";

export interface ConvertOptions {
  phase: ConvertPhase;
  policy: TablePolicy;
  now: Date;
  boundary?: Date | undefined;
  dropUnique: readonly string[];
  dryRun: boolean;
  lockTimeoutMs: number;
  retryBudgetMs: number;
  progressEveryMs: number;
}

export type ConversionRecord = NonNullable<ConversionState["record"]>;

export interface PhaseContext {
  db: Kysely<DB>;
  log: Logger;
  options: ConvertOptions;
  signal: AbortSignal;
  table: Relation;
  /** How the table is named in messages: `schema.name`, each part quoted as quote_ident would. */
  shown: string;
  state: ConversionState;
  record: ConversionRecord | null;
  /** The recorded conversion, unless it was reverted (then a new one may start). */
  active: ConversionRecord | null;
  /**
   * The design stored with the active conversion, read and checked on the first call (then kept);
   * null without one. Called only where a phase uses the design: a row whose design this release
   * cannot use fails those paths, never status or a phase that has nothing to do.
   */
  storedDesign: () => ConversionDesign | null;
  input: ConvertInput;
  exec: ExecContext;
}

export interface PhaseOutcome {
  exitCode: ExitCode;
  already?: boolean;
  report?: unknown;
}

/**
 * Exit code of a refused phase (a preflight problem, or a state the phase cannot run from):
 * nothing was changed. The same code as bad usage.
 */
export const REFUSED = EXIT.usage;

/** The phase will not run in this state: exit 2, nothing changed. */
export class Refusal extends Error {
  override readonly name = "Refusal";
}

/** What prepare already built, from the table's facts and the conversion's state. */
export function prepareState(facts: TableFacts, state: ConversionState): PrepareState {
  return {
    hasIngestColumn: facts.columns.some((c) => c.name === INGEST_COLUMN),
    boundCheck: state.boundCheck,
    builtIndexes: state.builtIndexes,
    parentExists: state.parentExists,
  };
}

/** What the operator accepted when the recorded conversion started (a resumed phase keeps it). */
export function acceptedInput(input: ConvertInput, stored: ConversionDesign): ConvertInput {
  return { ...input, dropUnique: stored.keptOnHistory.map((k) => k.name) };
}
