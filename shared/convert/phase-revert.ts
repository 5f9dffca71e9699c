// Phase revert: until finalize, back to one plain table. Before the swap it removes what prepare
// built (abandon); after it, one transaction detaches the historical partition, copies the rows
// written since the swap into it and gives it the table's name back.
import { type Kysely, sql } from "kysely";
import { EXIT } from "../config/errors.ts";
import { columnSql, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import type { StepOutcome } from "./apply.ts";
import type { ConversionDesign } from "./design.ts";
import { afterPrepareStep, executeStep, executeSteps } from "./execute.ts";
import type { ConversionState } from "./facts.ts";
import { readChangeTriggers } from "./facts-dependents.ts";
import { readTableFacts } from "./facts-table.ts";
import {
  type ConversionRecord,
  type PhaseContext,
  type PhaseOutcome,
  prepareState,
  Refusal,
} from "./phase-context.ts";
import { inSchema } from "./step.ts";
import { abandonSteps } from "./step-abandon.ts";
import { revertStep } from "./step-revert.ts";

export type RevertDecision =
  | { kind: "nothing"; message: string }
  | { kind: "refused"; reason: string }
  | { kind: "abandon"; design: ConversionDesign }
  | { kind: "revert"; design: ConversionDesign };

/**
 * Which revert the recorded conversion calls for, if any. Pure; `stored` (the recorded design) is
 * called only when the revert is one that reads it.
 */
export function decideRevert(
  record: ConversionRecord | null,
  stored: () => ConversionDesign | null,
  state: Pick<ConversionState, "historyAttached">,
  shown: string,
): RevertDecision {
  if (!record || record.phase === "reverted")
    return {
      kind: "nothing",
      message: record ? "already reverted" : "no conversion recorded: nothing to revert",
    };
  if (record.phase === "finalized")
    return {
      kind: "refused",
      reason: `${shown} was finalized: revert is no longer possible (the objects it needs were dropped)`,
    };
  const d = stored();
  if (!d) return { kind: "refused", reason: "the conversion record has no design; cannot revert" };
  if (record.phase === "preparing" || record.phase === "prepared") return { kind: "abandon", design: d };
  if (!state.historyAttached)
    return {
      kind: "refused",
      reason: `${d.names.history} is no longer a partition of ${shown} (did retention drop or detach it?): revert needs it`,
    };
  return { kind: "revert", design: d };
}

export async function revertPhase(ctx: PhaseContext): Promise<PhaseOutcome> {
  const decision = decideRevert(ctx.record, ctx.storedDesign, ctx.state, ctx.shown);
  switch (decision.kind) {
    case "nothing":
      ctx.log.notice(decision.message);
      return { exitCode: EXIT.ok, already: true };
    case "refused":
      throw new Refusal(decision.reason);
    case "abandon": {
      const facts = await readTableFacts(ctx.db, ctx.table, ctx.options.policy.timeColumn, null);
      const steps = abandonSteps(decision.design, prepareState(facts, ctx.state));
      await executeSteps(ctx, { steps, afterStep: afterPrepareStep(ctx) });
      return { exitCode: EXIT.ok };
    }
    case "revert":
      return await revertSwapped(ctx, decision.design);
  }
}

async function revertSwapped(ctx: PhaseContext, d: ConversionDesign): Promise<PhaseOutcome> {
  const { db, log, table } = ctx;
  const rowsToCopy = await rowsSinceSwap(db, table, d);
  log.info(
    `${rowsToCopy} rows were written to the new partitions since the swap; revert copies them back under the lock`,
    { rowsToCopy },
  );
  const columns = await copyableColumns(db, table, inSchema(d, d.names.history));
  const changeTriggers = await readChangeTriggers(db, table);
  let outcome: StepOutcome;
  try {
    outcome = await executeStep(ctx, revertStep(d, columns, changeTriggers));
  } catch (error) {
    if (sqlState(error) === SQLSTATE.uniqueViolation)
      throw new Refusal(
        `revert rolled back, nothing changed: rows written since the swap duplicate a unique key the plain table enforces (${(error as Error).message}). ` +
          "Delete the duplicates from the new partitions (the unique constraints you passed to --drop-unique, or the old primary key), then revert again",
      );
    throw error;
  }
  if (!ctx.options.dryRun)
    log.notice(`reverted in ${outcome.durationMs} ms: ${ctx.shown} is one plain table again`, {
      event: "convert_revert",
      durationMs: outcome.durationMs,
      rowsCopied: outcome.rows[4] ?? null,
    });
  return { exitCode: EXIT.ok, report: outcome };
}

/** Rows the new partitions hold (pruned by the bound: the historical partition is not read). */
async function rowsSinceSwap(db: Kysely<DB>, table: Relation, d: ConversionDesign): Promise<number> {
  const time = columnSql(d.timeColumn);
  const r = await sql<{ n: number }>`
    SELECT count(*)::float8 AS n FROM ${relationSql(table)}
     WHERE ${time} >= ${d.boundary}::timestamptz OR ${time} IS NULL`.execute(db);
  return r.rows[0]?.n ?? 0;
}

/** Columns the partitioned table and the historical partition both have (non-generated), in the parent's order. */
async function copyableColumns(db: Kysely<DB>, parent: Relation, history: Relation): Promise<string[]> {
  const r = await sql<{ name: string }>`
    SELECT a.attname AS name FROM pg_attribute a
     WHERE a.attrelid = ${relationOidSql(parent)} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
       AND EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = ${relationOidSql(history)}
                      AND b.attname = a.attname AND NOT b.attisdropped)
     ORDER BY a.attnum`.execute(db);
  return r.rows.map((x) => x.name);
}
