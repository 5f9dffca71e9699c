// The retention job's work for one table: read the facts, plan, and hand the plan to the executor
// (which logs it, refuses or stops at --dry-run, and applies it action by action, each audited and
// logged); then report counts and bytes freed. For a table that is
// rolled up, the health record also says how far the rollups are final and whether that kept
// expired data this run (rollupFrontier, rollupBlocked), so that an alert can see a stalled rollup.
import type { Kysely } from "kysely";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { TEXT } from "../log/text-view.ts";
import { type ActionSteps, executePlan } from "../run/execute-plan.ts";
import type { TableContext, TableReport } from "../run/runner.ts";
import { applyRetentionAction } from "./apply.ts";
import type { RetentionContext, RetentionOutcome } from "./context.ts";
import { retentionCutoff, retentionOf } from "./expiry.ts";
import { readRetentionFacts } from "./facts.ts";
import { planRetention, type RetentionAction, type RetentionPlan } from "./plan.ts";
import { retentionPlanRow, retentionProgress } from "./present.ts";
import { resumeBlock } from "./progress.ts";
import { type RemovePartition, removeTogether } from "./remove.ts";

export function describeRetentionAction(a: RetentionAction): string {
  switch (a.kind) {
    case "remove_partition":
      return `${a.mode} ${displayRelation(a.partition)} [${a.from?.toISOString() ?? "MINVALUE"}, ${a.to.toISOString()}) ~${a.rowsEstimate} rows, ${a.bytes} bytes${a.expiredHold ? " (its hold has expired)" : ""}`;
    case "delete_rows":
      return `delete ${a.rows} rows older than ${a.before.toISOString()} from ${displayRelation(a.relation)} (${a.reason.replace("_", " ")})`;
    case "finalize_detach":
      return `finish the interrupted DETACH CONCURRENTLY of ${displayRelation(a.partition)}`;
    case "finish_removal":
      return `finish removing ${displayRelation(a.partition)} (mode ${a.mode}; a previous run stopped after detaching it)`;
  }
}

export async function manageRetention(
  db: Kysely<DB>,
  ctx: TableContext,
  options: { now: Date; dryRun: boolean; force: boolean },
): Promise<TableReport> {
  const { policy, log } = ctx;
  const retention = retentionOf(policy);
  const cutoff = retentionCutoff(policy, options.now);
  const lock = { lockTimeoutMs: policy.lockTimeoutMs, budgetMs: policy.retryBudgetMs };
  const facts = await readRetentionFacts(db, policy, cutoff, lock);
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
  });
  const done = await executePlan({ ...ctx, signal: steps.signal }, plan, steps, options);
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
  run: { now: Date; deadline: number; totals: Totals },
): ActionSteps<RetentionAction> & { signal: AbortSignal } {
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
  const together = removalsTogether(retentionCtx, plan, ctx.signal);
  return {
    signal: together.signal,
    describe: describeRetentionAction,
    planFields: (a) => ({ action: a.kind }),
    target: (action) => ({
      partition: displayRelation(actionRelation(action)),
      ...(action.kind === "remove_partition"
        ? { from: action.from ?? undefined, to: action.to }
        : action.kind === "delete_rows"
          ? { to: action.before }
          : {}),
    }),
    findingFields: (f) =>
      f.code === "rollup_not_final" ? { rollupFrontier: plan.rollup?.frontier ?? null } : {},
    apply: async (action) => {
      const startBlock =
        action.kind === "delete_rows"
          ? await resumeBlock(db, policy.table, displayRelation(action.relation))
          : 0;
      const outcome =
        (action.kind === "remove_partition" ? await together.outcome(action) : undefined) ??
        (await applyRetentionAction(retentionCtx, action, { startBlock }));
      if (action.kind === "remove_partition" && action.mode === "drop") totals.bytesFreed += outcome.bytes;
      if (action.kind === "delete_rows") totals.rowsDeleted += outcome.rows;
      totals.incomplete ||= outcome.incomplete === true;
      return {
        rows: outcome.rows,
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
    },
    doneSeverity: "notice",
    planRow: retentionPlanRow,
    progressText: retentionProgress,
  };
}

/**
 * The plan's partition removals, done together by removeTogether when the first of them is
 * applied; each later one then only reports its outcome, so that the executor audits each. A stop
 * request waits (the returned signal stays unaborted) until every removal done has been audited.
 * `outcome` is undefined when they could not be done together: apply them one by one.
 */
function removalsTogether(ctx: RetentionContext, plan: RetentionPlan, stop: AbortSignal) {
  const removals = plan.actions.filter((a): a is RemovePartition => a.kind === "remove_partition");
  const done = new Map<RetentionAction, RetentionOutcome>();
  let tried = false;
  const gate = new AbortController();
  const release = () => {
    if (stop.aborted && done.size === 0) gate.abort(stop.reason);
  };
  stop.addEventListener("abort", release, { once: true });
  release();
  return {
    signal: gate.signal,
    async outcome(action: RemovePartition): Promise<RetentionOutcome | undefined> {
      if (!tried) {
        tried = true;
        const outcomes = await removeTogether(ctx, removals);
        if (outcomes !== "busy") for (const [i, r] of removals.entries()) done.set(r, outcomes[i]!);
      }
      const outcome = done.get(action);
      done.delete(action);
      release();
      return outcome;
    },
  };
}

/** The relation an action works on. */
function actionRelation(action: RetentionAction): Relation {
  return action.kind === "delete_rows" ? action.relation : action.partition;
}
