// The retention job's work for one table: read the facts, plan, and hand the plan to the executor
// (which logs it, refuses or stops at --dry-run, and applies it action by action, each audited and
// logged; the partition removals together; each removal audited in the transaction that finishes
// it); then report counts and bytes freed. For a table that is rolled up, the health record also
// says how far the rollups are final and whether that kept expired data this run (rollupFrontier,
// rollupBlocked), so that an alert can see a stalled rollup.
import type { Kysely } from "kysely";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { TEXT } from "../log/text-view.ts";
import type { InspectedTable } from "../partitions/catalog.ts";
import { type ActionSteps, type Applied, executePlan } from "../run/execute-plan.ts";
import type { TableContext, TableReport } from "../run/runner.ts";
import { applyRetentionAction } from "./apply.ts";
import type { RetentionContext, RetentionOutcome } from "./context.ts";
import { retentionCutoff, retentionOf } from "./expiry.ts";
import { readRetentionFacts, type UnfinishedRemoval } from "./facts.ts";
import { planRetention, type RetentionAction, type RetentionPlan } from "./plan.ts";
import { retentionPlanRow, retentionProgress } from "./present.ts";
import { resumeBlock } from "./progress.ts";
import type { RemovePartition } from "./remove.ts";
import { removeTogether } from "./remove-together.ts";

export function describeRetentionAction(a: RetentionAction): string {
  switch (a.kind) {
    case "remove_partition":
      return `${a.mode} ${displayRelation(a.partition)} [${a.from?.toISOString() ?? "MINVALUE"}, ${a.to.toISOString()}) ~${a.rowsEstimate} rows, ${a.bytes} bytes${a.expiredHold ? " (its hold has expired)" : ""}`;
    case "delete_rows":
      return `delete ${a.rowsEstimated ? "about " : ""}${a.rows} rows older than ${a.before.toISOString()} from ${displayRelation(a.relation)} (${a.reason.replace("_", " ")})`;
    case "finalize_detach":
      return `finish the interrupted DETACH CONCURRENTLY of ${displayRelation(a.partition)}`;
    case "finish_removal":
      return `finish removing ${displayRelation(a.partition)} (mode ${a.mode}; a previous run stopped after detaching it)`;
  }
}

export async function manageRetention(
  db: Kysely<DB>,
  ctx: TableContext,
  options: { now: Date; dryRun: boolean; force: boolean; inspected?: InspectedTable | undefined },
): Promise<TableReport> {
  const { policy, log } = ctx;
  const retention = retentionOf(policy);
  const cutoff = retentionCutoff(policy, options.now);
  const lock = { lockTimeoutMs: policy.lockTimeoutMs, budgetMs: policy.retryBudgetMs };
  const facts = await readRetentionFacts(db, policy, cutoff, lock, {
    counting: options.dryRun ? "exact" : "estimate",
    inspected: options.inspected,
  });
  const plan = planRetention(policy, facts, options.now, { force: options.force });
  const rollupHealth = plan.rollup
    ? { rollupFrontier: plan.rollup.frontier?.toISOString() ?? null, rollupBlocked: plan.rollup.blocked }
    : {};
  log.info(`cutoff ${cutoff.toISOString()} (keep ${retention.keep}, mode ${retention.mode})`, {
    cutoff,
    partitioned: policy.partitioned,
    [TEXT]: `cutoff ${cutoff.toISOString()} (keep ${retention.keep}, mode ${retention.mode})`,
  });
  const totals: Totals = { bytesFreed: 0, rowsDeleted: 0, incomplete: false };
  const steps = retentionSteps(db, ctx, plan, {
    now: options.now,
    deadline: Date.now() + retention.timeBudgetMs,
    totals,
    unfinished: new Map(facts.unfinishedRemovals.map((u) => [displayRelation(u.partition), u])),
  });
  const done = await executePlan(ctx, plan, steps, options);
  const { bytesFreed, rowsDeleted } = totals;
  switch (done.status) {
    case "refused":
      return { status: "refused", actions: {}, error: done.error, errorLogged: true };
    case "planned":
      return {
        status: "ok",
        actions: done.actions,
        health: { cutoff: cutoff.toISOString(), planned: plan.actions.length, ...rollupHealth },
      };
    case "interrupted":
      return { status: "interrupted", actions: done.actions };
    case "failed":
      return {
        status: "failed",
        actions: done.actions,
        error: done.error,
        errorLogged: true,
        health: { cutoff: cutoff.toISOString(), bytesFreed, rowsDeleted, ...rollupHealth },
      };
    case "ok":
      return {
        status: "ok",
        actions: done.actions,
        health: {
          cutoff: cutoff.toISOString(),
          bytesFreed,
          rowsDeleted,
          rowDeletesIncomplete: totals.incomplete,
          ...rollupHealth,
        },
      };
  }
}

/** What the run's actions freed, for the health record. */
interface Totals {
  bytesFreed: number;
  rowsDeleted: number;
  incomplete: boolean;
}

/** How the executor describes, audits and applies retention's actions. */
function retentionSteps(
  db: Kysely<DB>,
  ctx: TableContext,
  plan: RetentionPlan,
  run: {
    now: Date;
    deadline: number;
    totals: Totals;
    /** A killed run's leftovers by displayRelation: their range and rows, as their marks say. */
    unfinished: ReadonlyMap<string, UnfinishedRemoval>;
  },
): ActionSteps<RetentionAction> {
  const { policy, log } = ctx;
  const { totals } = run;
  const retentionCtx: RetentionContext = {
    db,
    policy,
    log,
    signal: ctx.signal,
    now: run.now,
    deadline: run.deadline,
  };
  const leftover = (action: RetentionAction) =>
    action.kind === "finish_removal" ? run.unfinished.get(displayRelation(action.partition)) : undefined;
  const applied = (action: RetentionAction, outcome: RetentionOutcome) => {
    addToTotals(totals, action, outcome);
    return appliedAs(action, outcome, leftover(action));
  };
  let triedTogether = false;
  return {
    describe: describeRetentionAction,
    planFields: (a) => ({ action: a.kind }),
    target: (action) => ({
      partition: displayRelation(actionRelation(action)),
      ...(action.kind === "remove_partition"
        ? { from: action.from ?? undefined, to: action.to }
        : action.kind === "delete_rows"
          ? { to: action.before }
          : { from: leftover(action)?.range?.from ?? undefined, to: leftover(action)?.range?.to }),
    }),
    findingFields: (f) =>
      f.code === "rollup_not_final" ? { rollupFrontier: plan.rollup?.frontier ?? null } : {},
    // The plan's partition removals, done together when the first of them is reached (once: when
    // the parent is busy, "busy", each is then removed by itself). Where they are removed in one
    // transaction, their audit rows are written in it, so a kill leaves neither or both; the run's
    // totals count them only once it has committed.
    applyTogether: async (action, later, auditInside) => {
      if (action.kind !== "remove_partition" || triedTogether) return undefined;
      triedTogether = true;
      const removals = [action, ...later.filter((a): a is RemovePartition => a.kind === "remove_partition")];
      const pairs = (outcomes: readonly RetentionOutcome[]) =>
        removals.map((r, i) => [r, appliedAs(r, outcomes[i]!, undefined)] as const);
      const done = await removeTogether(retentionCtx, removals, (trx, outcomes) =>
        auditInside(trx, pairs(outcomes)),
      );
      if (done === "busy") return undefined;
      for (const [i, r] of removals.entries()) addToTotals(totals, r, done.outcomes[i]!);
      return { applied: pairs(done.outcomes), audited: done.audited };
    },
    // Removals and leftovers are audited in the transaction that finishes them (their outcome says
    // audited); row deletes commit batch by batch and are audited once done.
    apply: async (action, auditInside) => {
      const startBlock =
        action.kind === "delete_rows"
          ? await resumeBlock(db, policy.table, displayRelation(action.relation))
          : 0;
      const known = { startBlock, leftoverTo: leftover(action)?.range?.to };
      const outcome = await applyRetentionAction(retentionCtx, action, known, (trx, outcomes) =>
        auditInside(trx, appliedAs(action, outcomes[0]!, leftover(action))),
      );
      return { ...applied(action, outcome), audited: outcome.audited === true };
    },
    doneSeverity: "notice",
    planRow: retentionPlanRow,
    progressText: retentionProgress,
  };
}

/** Adds what applying `action` freed or deleted to the run's totals. */
function addToTotals(totals: Totals, action: RetentionAction, outcome: RetentionOutcome): void {
  if (action.kind === "remove_partition" && action.mode === "drop") totals.bytesFreed += outcome.bytes;
  if (action.kind === "delete_rows") totals.rowsDeleted += outcome.rows;
  totals.incomplete ||= outcome.incomplete === true;
}

/** What applying `action` did, for the executor (audit row, records). */
function appliedAs(
  action: RetentionAction,
  outcome: RetentionOutcome,
  leftover: UnfinishedRemoval | undefined,
): Applied {
  return {
    // A leftover's rows: its estimate when known (its mark's, else its own), not a count of 0.
    rows: action.kind === "finish_removal" ? leftover?.rowsEstimate : outcome.rows,
    outcome: "ok",
    detail: {
      path: outcome.path,
      bytes: outcome.bytes,
      mode: action.kind === "remove_partition" ? action.mode : undefined,
      hold: action.kind === "remove_partition" ? (action.expiredHold ? "expired" : "none") : undefined,
      incomplete: outcome.incomplete,
      nextBlock: outcome.nextBlock,
      batches: outcome.batches,
    },
    logFields: { path: outcome.path, rows: outcome.rows },
  };
}

/** The relation an action works on. */
function actionRelation(action: RetentionAction): Relation {
  return action.kind === "delete_rows" ? action.relation : action.partition;
}
