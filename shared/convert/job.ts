// `migrate convert`: holds the table's job locks, then runs the phases asked for, in order. Each
// phase (phase-*.ts) reads the facts it needs, asks the pure planner for its steps and runs them
// through the plan executor every job uses (execute.ts).
// Every phase is idempotent: it works out from the catalog and telemetry_jobs.conversions what is
// already done, so the same command after a kill finishes the job. While it works it holds
// partition-manager's and retention's advisory locks on the table, so neither touches the table
// while it changes shape.
import { type Kysely, sql } from "kysely";
import { ConfigError, EXIT, type ExitCode } from "../config/errors.ts";
import { policyTable } from "../config/policy.ts";
import { displayRelation, relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { withAdvisoryLocks } from "../run/advisory-lock.ts";
import { boundaryProblem } from "./boundary.ts";
import { readStoredDesign } from "./design-schema.ts";
import { readConversionState } from "./facts-state.ts";
import { convertNames } from "./names.ts";
import {
  CONVERT_PHASES,
  type ConvertOptions,
  type ConvertPhase,
  type PhaseContext,
  type PhaseOutcome,
  REFUSED,
  Refusal,
} from "./phase-context.ts";
import { finalizePhase } from "./phase-finalize.ts";
import { preflightPhase } from "./phase-preflight.ts";
import { preparePhase } from "./phase-prepare.ts";
import { revertPhase } from "./phase-revert.ts";
import { statusPhase } from "./phase-status.ts";
import { swapPhase } from "./phase-swap.ts";
import { verifyPhase } from "./phase-verify.ts";
import { tableKey } from "./step.ts";

export { CONVERT_PHASES, type ConvertOptions, type ConvertPhase };

type Phase = Exclude<ConvertPhase, "all">;

const PHASES: Record<Phase, (ctx: PhaseContext) => Promise<PhaseOutcome>> = {
  preflight: preflightPhase,
  prepare: preparePhase,
  swap: swapPhase,
  verify: verifyPhase,
  revert: revertPhase,
  finalize: finalizePhase,
  status: statusPhase,
};

export interface ConvertResult {
  exitCode: ExitCode;
  /** The phases that ran, in order, with what each did. */
  phases: { phase: string; outcome: "done" | "already-done" | "refused" | "failed"; detail?: unknown }[];
}

export async function runConvert(
  db: Kysely<DB>,
  log: Logger,
  options: ConvertOptions,
  signal: AbortSignal = new AbortController().signal,
): Promise<ConvertResult> {
  await checkReady(db, options);
  const qualified = tableKey(policyTable(options.policy));
  // Adoption (the adopt command, rollup-hourly's first step) is kept out too: it adds the same
  // ingest_xid column and index that prepare adds, and must not build them beside a phase.
  const keys = ["convert", "partition-manager", "retention", "adopt"].map((job) => `${job}:${qualified}`);
  const result: ConvertResult = { exitCode: EXIT.ok, phases: [] };
  const locked = await withAdvisoryLocks(db, keys, async (lost) => {
    await runPhases(db, log, options, AbortSignal.any([signal, lost]), result);
    if (result.exitCode === EXIT.ok && options.phase === "all" && !options.dryRun)
      log.notice(
        `converted ${qualified}. Check it, then run \`migrate convert finalize --table ${qualified}\` (until then \`revert\` undoes the conversion)`,
      );
  });
  if (!locked.acquired) {
    log.error(
      `another job holds ${locked.busy} (a convert, partition-manager or retention run on ${qualified}); try again when it has finished`,
    );
    return { exitCode: EXIT.failed, phases: [] };
  }
  return result;
}

/** The bookkeeping table exists and --boundary is usable; else a configuration error. */
async function checkReady(db: Kysely<DB>, options: ConvertOptions): Promise<void> {
  const conversions = { schema: "telemetry_jobs", name: "conversions" };
  const ready = await sql<{ ok: boolean }>`SELECT ${relationOidSql(conversions)} IS NOT NULL AS ok`.execute(
    db,
  );
  if (!ready.rows[0]?.ok)
    throw new ConfigError("telemetry_jobs.conversions is missing: run `telemetry-jobs migrate up` first");
  if (options.boundary) {
    const problem = boundaryProblem(options.boundary, options.now, options.policy);
    if (problem) throw new ConfigError(problem);
  }
}

/** The phases asked for, in order, until one does not finish with exit code 0. */
async function runPhases(
  db: Kysely<DB>,
  log: Logger,
  options: ConvertOptions,
  signal: AbortSignal,
  result: ConvertResult,
): Promise<void> {
  const phases: Phase[] =
    options.phase === "all" ? ["preflight", "prepare", "swap", "verify"] : [options.phase];
  for (const phase of phases) {
    if (signal.aborted) {
      log.warn("stopping before the next phase (signal)", { phase });
      result.exitCode = EXIT.failed;
      return;
    }
    const plog = log.child({ phase });
    try {
      const outcome = await runPhase(db, plog, options, phase, signal);
      const failed = outcome.exitCode === REFUSED ? "refused" : "failed";
      result.phases.push({
        phase,
        outcome: outcome.exitCode !== EXIT.ok ? failed : outcome.already ? "already-done" : "done",
        detail: outcome.report,
      });
      if (outcome.exitCode !== EXIT.ok) {
        result.exitCode = outcome.exitCode;
        return;
      }
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      plog.error(error.message, { exitCode: REFUSED });
      result.phases.push({ phase, outcome: "refused", detail: error.message });
      result.exitCode = REFUSED;
      return;
    }
  }
}

/** `read`, run on the first call only; later calls give its result. */
function once<T>(read: () => T): () => T {
  let done: { value: T } | null = null;
  return () => {
    done ??= { value: read() };
    return done.value;
  };
}

/** Reads where the conversion stands, then runs the phase from there. */
async function runPhase(
  db: Kysely<DB>,
  log: Logger,
  options: ConvertOptions,
  phase: Phase,
  signal: AbortSignal,
): Promise<PhaseOutcome> {
  const table = policyTable(options.policy);
  const state = await readConversionState(db, table, convertNames(table.name));
  const record = state.record;
  const active = record && record.phase !== "reverted" ? record : null;
  if (active && options.boundary && options.boundary.getTime() !== active.boundary.getTime())
    throw new Refusal(
      `the conversion in progress uses the boundary ${active.boundary.toISOString()}; --boundary ${options.boundary.toISOString()} differs (revert first to start over)`,
    );
  const ctx: PhaseContext = {
    db,
    log,
    options,
    signal,
    table,
    shown: displayRelation(table),
    state,
    record,
    active,
    // The design prepare stored with the conversion (recordStep), checked as it is read back, and
    // read only when the phase needs it: status and a phase with nothing to do never fail on it. A
    // reverted conversion's is never used (the next prepare designs afresh), so it is not read.
    storedDesign: once(() => (active ? readStoredDesign(tableKey(table), active) : null)),
    input: {
      policy: options.policy,
      now: options.now,
      boundary: options.boundary,
      dropUnique: options.dropUnique,
    },
    exec: {
      db,
      log,
      lockTimeoutMs: options.lockTimeoutMs,
      retryBudgetMs: options.retryBudgetMs,
      table,
      progressEveryMs: options.progressEveryMs,
      signal,
    },
  };
  return await PHASES[phase](ctx);
}
