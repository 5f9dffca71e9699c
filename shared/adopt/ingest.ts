// Adds rollup change-tracking (ingest_xid column and (ingest_xid, time) index) to an application's
// existing table while it is being written to. The facts come from ingest-facts.ts, the plan from
// ingest-plan.ts, and ingest-execute.ts carries out each action; this file runs the plan, one
// action at a time, re-reading the catalog at the start of every run so that a run killed anywhere
// is finished by the next. The actions go through the plan executor (shared/run/execute-plan.ts),
// which logs the plan, stops at a dry run or on SIGTERM, and audits each action. (ingest-execute.ts
// says which locks each action takes.)
import type { Kysely } from "kysely";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { actionsDone, executePlanOrThrow, type PlanRun } from "../rollups/plan-run.ts";
import type { ActionSteps } from "../run/execute-plan.ts";
import type { IngestAction } from "./ingest-actions.ts";
import { describeIngestAction } from "./ingest-actions.ts";
import { type ActionRunOptions, applyIngestAction, auditOf, type IngestAudit } from "./ingest-execute.ts";
import { type IngestDetachPendingFact, type IngestFacts, readIngestFacts } from "./ingest-facts.ts";
import { INGEST_COLUMN, INGEST_DEFAULT, planIngestTracking } from "./ingest-plan.ts";

export class AdoptionRefusedError extends Error {
  override readonly name = "AdoptionRefusedError";
}

export interface IngestAdoptionOptions extends ActionRunOptions {
  source: Relation;
  timeColumn: string;
  dryRun: boolean;
  /** The catalog as the caller read it just now; read here when not given. */
  facts?: IngestFacts | undefined;
}

export interface IngestAdoptionResult {
  /** The planned actions, as the statements an operator would type. */
  planned: string[];
  /** Actions carried out by this run. */
  done: number;
  /** Column and a valid index are in place once this run ends. */
  complete: boolean;
}

/**
 * The table has an xid8 ingest_xid with its default, on every partition too (partitions being
 * detached aside), and a valid index usable by rollup-hourly.
 */
export async function ingestTrackingReady(
  db: Kysely<DB>,
  source: Relation,
  timeColumn: string,
): Promise<boolean> {
  return ingestFactsReady(await readIngestFacts(db, source, timeColumn));
}

/** ingestTrackingReady, from facts already read. */
export function ingestFactsReady(f: IngestFacts): boolean {
  if (f.column?.type !== "xid8" || f.column.default !== INGEST_DEFAULT) return false;
  if (f.relkind === "r") return f.indexes.some((i) => i.valid && i.leading);
  if (f.relkind === "p")
    return (
      f.partitions.every((p) => p.columnDefault === INGEST_DEFAULT) &&
      f.indexes.some((i) => i.partitioned && i.valid && i.leading)
    );
  return false;
}

/**
 * Why adoption would refuse this table, if it would; reads the catalog only and changes nothing,
 * so a table can be refused before anything else is done to it.
 */
export async function ingestRefusal(
  db: Kysely<DB>,
  source: Relation,
  timeColumn: string,
): Promise<string | undefined> {
  return planIngestTracking(await readIngestFacts(db, source, timeColumn)).refusal;
}

export async function adoptIngestTracking(
  db: Kysely<DB>,
  o: IngestAdoptionOptions,
): Promise<IngestAdoptionResult> {
  const shown = displayRelation(o.source);
  const log = o.log.child({ table: shown });
  const facts = o.facts ?? (await readIngestFacts(db, o.source, o.timeColumn));
  const plan = planIngestTracking(facts);
  if (plan.refusal !== undefined) throw new AdoptionRefusedError(plan.refusal);
  if (plan.postponed !== undefined) {
    log.warn(plan.postponed, { detachPending: facts.detachPending.map((p) => displayRelation(p.relation)) });
    return { planned: [], done: 0, complete: false };
  }
  logDetachPending(log, facts);
  const planned = plan.actions.map(describeIngestAction);
  if (planned.length === 0) {
    log.debug(`insert tracking (ingest_xid and its index) is in place on ${shown}`);
    return { planned, done: 0, complete: true };
  }
  // Rollups may already have run on this table: rows that slipped past them are worth a warning.
  const run = ingestRun(db, o, log, facts.column?.default === INGEST_DEFAULT);
  let done = 0;
  let actions = plan.actions;
  // The table can change under us: a partition created after the catalog was read, but before the
  // parent index existed, has no index, and the parent stays invalid. So the catalog is read again
  // after the plan and whatever is still missing is done too, a few rounds at most (a table that
  // keeps changing is left to the next run).
  for (let round = 1; ; round++) {
    const outcome = await run.execute(actions);
    if (outcome.status === "planned") return { planned, done: 0, complete: false };
    done += actionsDone(outcome);
    if (outcome.status !== "ok") {
      log.notice(`stopping: ${done} of ${planned.length} actions done; the next run finishes the rest`);
      return { planned, done, complete: false };
    }
    const after = planIngestTracking(await readIngestFacts(db, o.source, o.timeColumn));
    if (after.refusal !== undefined) throw new AdoptionRefusedError(after.refusal);
    if (after.postponed !== undefined) {
      log.warn(after.postponed);
      return { planned, done, complete: false };
    }
    if (after.actions.length === 0) return { planned, done, complete: true };
    const remaining = after.actions.map(describeIngestAction);
    if (round === MAX_ROUNDS || o.signal.aborted) {
      log.warn(
        `change tracking on ${shown} is not complete yet (the table keeps changing); the next run continues`,
        { remaining },
      );
      return { planned, done, complete: false };
    }
    log.notice(`${shown} changed while adoption ran; ${remaining.length} more actions`, { remaining });
    planned.push(...remaining);
    actions = after.actions;
  }
}

/** One insert-tracking action as the plan executor sees it: its kind is the audit row's. */
interface IngestStep {
  readonly kind: IngestAudit["kind"];
  readonly action: IngestAction;
}

/** Hands each round's actions to the plan executor; a failed action is thrown again. */
function ingestRun(db: Kysely<DB>, o: IngestAdoptionOptions, log: Logger, adoptedBefore: boolean) {
  const steps: ActionSteps<IngestStep> = {
    // "would run: <statement>" in a dry run.
    describe: (s) => `run: ${describeIngestAction(s.action)}`,
    planFields: (s) => ({ action: s.action.kind }),
    target: (s) => ({ partition: auditOf(s.action).partition }),
    apply: async ({ action }) => {
      await applyIngestAction(db, o, log, action);
      if (action.kind === "set_default" && action.partitionOf && adoptedBefore) warnNullRows(log, action);
      return { outcome: "ok", detail: auditOf(action).detail, logFields: {} };
    },
    doneSeverity: "info",
  };
  const ctx = { log, signal: o.signal, record: o.record ?? (async () => {}) };
  return {
    async execute(actions: readonly IngestAction[]): Promise<PlanRun> {
      const plan = {
        actions: actions.map((action) => ({ kind: auditOf(action).kind, action })),
        findings: [],
      };
      return await executePlanOrThrow(ctx, plan, steps, { dryRun: o.dryRun });
    },
  };
}

const MAX_ROUNDS = 3;

/**
 * Partitions with an interrupted DETACH ... CONCURRENTLY are left out (they are leaving the table).
 * One without ingest_xid (the column was added after the detach began) keeps PostgreSQL 18 from
 * finishing the detach, which the operator has to hear about.
 */
function logDetachPending(log: Logger, facts: IngestFacts): void {
  if (facts.detachPending.length === 0) return;
  const shown = displayRelation(facts.table);
  const finalize = (p: IngestDetachPendingFact) =>
    `ALTER TABLE ${shown} DETACH PARTITION ${displayRelation(p.relation)} FINALIZE`;
  log.info(
    `skipping ${facts.detachPending.map((p) => displayRelation(p.relation)).join(", ")}: an interrupted DETACH ... CONCURRENTLY ` +
      "is taking them out of the table (retention finishes it with FINALIZE)",
  );
  for (const p of facts.detachPending.filter((d) => !d.hasColumn))
    log.warn(
      `partition ${displayRelation(p.relation)} of ${shown} is half detached (DETACH ... CONCURRENTLY was interrupted) and has no ` +
        `${INGEST_COLUMN}: the column was added after the detach began. Finish the detach: ${finalize(p)}. PostgreSQL 18 ` +
        `refuses that FINALIZE ("could not convert row type") while ${shown} has ${INGEST_COLUMN} and the partition has not, and ` +
        `the partition cannot be altered meanwhile; there the way out is ALTER TABLE ${shown} DROP COLUMN ${INGEST_COLUMN}, the ` +
        "FINALIZE, adoption again, and rollup-hourly --from/--to over the hours not rolled up yet",
      { partition: displayRelation(p.relation) },
    );
}

/** A partition of an adopted table was found without the default, now set: say what was missed. */
function warnNullRows(log: Logger, a: Extract<IngestAction, { kind: "set_default" }>): void {
  const p = displayRelation(a.table);
  log.warn(
    `partition ${p} had no default for ${INGEST_COLUMN} (attached without it, e.g. made with CREATE TABLE ... (LIKE ...)); ` +
      `set now. Rows inserted directly into ${p} since it was attached have NULL ${INGEST_COLUMN}, which rollup-hourly never ` +
      "takes for new: those that arrived after their hour had been rolled up were not rolled up. Rebuild those hours with " +
      `rollup-hourly --from <start> --to <end>${a.bound ? ` (the partition holds ${a.bound})` : ""}`,
    { partition: p },
  );
}
