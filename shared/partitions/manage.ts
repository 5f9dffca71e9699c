// partition-manager's work for one table: read the catalog, plan, hand the plan to the executor
// (which logs it and applies it action by action, each audited), then report the table's health.
import type { Kysely } from "kysely";
import { policyTable } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import { type ActionSteps, executePlan, type PlanOutcome } from "../run/execute-plan.ts";
import type { TableContext, TableReport } from "../run/runner.ts";
import { type ApplyContext, applyPartitionAction } from "./apply.ts";
import { readCatalog } from "./catalog.ts";
import { dropGuardAfterUnfinishedRun } from "./default-guard.ts";
import { assessHealth } from "./health.ts";
import { type PartitionAction, type PartitionPlan, planPartitions } from "./plan.ts";
import { partitionPlanRow, partitionProgress } from "./present.ts";

export function describeAction(a: PartitionAction): string {
  if (a.kind === "create_default_partition") return `create DEFAULT partition ${a.partition}`;
  if (a.kind === "guard_default")
    return `prove ${a.ranges.length} range(s) absent from ${a.partition} (a validated CHECK, so that their attaches do not scan it)`;
  if (a.kind === "drop_default_guard")
    return a.leftover
      ? `drop the guard constraint an earlier run left on ${a.partition} (it may refuse rows of ranges that have begun)`
      : `drop the guard constraint of ${a.partition}`;
  const rows = a.defaultRows > 0 ? `, moving ${a.defaultRows} rows out of DEFAULT` : "";
  return `create ${a.partition} [${a.from.toISOString()}, ${a.to.toISOString()}) (${a.reason}${rows})`;
}

/** The audit row's reason for an action that is not a create. */
function actionReason(a: Exclude<PartitionAction, { kind: "create_partition" }>): string {
  return a.kind === "drop_default_guard" && a.leftover ? "guard left by an earlier run" : "default";
}

export async function managePartitions(
  db: Kysely<DB>,
  ctx: TableContext,
  options: { now: Date; dryRun: boolean },
): Promise<TableReport> {
  const { policy, log } = ctx;
  const table = policyTable(policy);
  const lock = { lockTimeoutMs: policy.lockTimeoutMs, budgetMs: policy.retryBudgetMs };
  const catalog = await readCatalog(db, table, policy.timeColumn, policy.interval, lock);
  const plan = planPartitions(policy, catalog, options.now);
  const applyCtx: ApplyContext = { db, policy, catalog, log, now: options.now, signal: ctx.signal };
  const steps: ActionSteps<PartitionAction> = {
    describe: describeAction,
    planFields: (a) => ({ action: a.kind, partition: a.partition }),
    target: (a) => ({
      partition: a.partition,
      ...(a.kind === "create_partition" ? { from: a.from, to: a.to } : {}),
    }),
    apply: async (action) => {
      const outcome = await applyPartitionAction(applyCtx, action);
      return {
        rows: outcome.rows,
        outcome: outcome.alreadyDone ? "skipped" : "ok",
        detail: {
          reason: action.kind === "create_partition" ? action.reason : actionReason(action),
          lockRetries: outcome.lockRetries,
        },
        logFields: { rowsMoved: outcome.rows, lockRetries: outcome.lockRetries },
      };
    },
    nothingToDo: "partitions are up to date: nothing to do",
    doneSeverity: "info",
    planRow: partitionPlanRow,
    progressText: partitionProgress,
  };
  const done = await executeDroppingGuard(ctx, plan, steps, { dryRun: options.dryRun, apply: applyCtx });
  // A rescue refused above maxRescueRows (a CRIT finding) ends the table refused, after the rest.
  const refused = plan.findings.find((f) => f.code === "rescue_refused")?.message;
  switch (done.status) {
    case "refused":
      return { status: "refused", actions: {}, error: done.error, errorLogged: true };
    case "planned":
      return {
        status: "ok",
        actions: done.actions,
        health: { ...assessHealth(policy, catalog, options.now), planned: plan.actions.length },
      };
    case "interrupted":
      return { status: "interrupted", actions: done.actions };
  }
  const after = await readCatalog(db, table, policy.timeColumn, policy.interval, lock);
  const health = assessHealth(policy, after, options.now);
  return {
    status: done.status === "ok" && refused ? "refused" : done.status,
    actions: done.actions,
    health: { ...health },
    ...(done.status === "failed" ? { error: done.error } : refused ? { error: refused } : {}),
    // The executor logged the failed action, and the refusal is the CRIT finding it logged.
    ...(done.status === "failed" || refused ? { errorLogged: true } : {}),
  };
}

/**
 * The executor stops at the first failed action or stop request (or throws), before the plan's
 * last action: a guard the plan adds, or a leftover it could not drop first, would stay on DEFAULT
 * and refuse rows of its ranges, one of which may begin before the next run. So whenever the plan
 * touches the guard and did not run to the end, the guard is dropped here, whatever stopped it.
 */
async function executeDroppingGuard(
  ctx: TableContext,
  plan: PartitionPlan,
  steps: ActionSteps<PartitionAction>,
  options: { dryRun: boolean; apply: ApplyContext },
): Promise<PlanOutcome> {
  const guarded = plan.actions.some((a) => a.kind === "guard_default" || a.kind === "drop_default_guard");
  let done: PlanOutcome | undefined;
  let dropped = false;
  try {
    done = await executePlan(ctx, plan, steps, options);
  } finally {
    if (guarded && !options.dryRun && done?.status !== "ok")
      dropped = await dropGuardAfterUnfinishedRun(options.apply, ctx.record);
  }
  if (!dropped || done.status === "refused") return done;
  const n = done.actions.drop_default_guard ?? 0;
  return { ...done, actions: { ...done.actions, drop_default_guard: n + 1 } };
}
