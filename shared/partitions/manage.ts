// partition-manager's work for one table: read the catalog, plan, hand the plan to the executor
// (which logs it and applies it action by action, each audited), then report the table's health.
import type { Kysely } from "kysely";
import { policyTable } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import { type ActionSteps, executePlan } from "../run/execute-plan.ts";
import type { TableContext, TableReport } from "../run/runner.ts";
import { applyPartitionAction } from "./apply.ts";
import { readCatalog } from "./catalog.ts";
import { assessHealth } from "./health.ts";
import { type PartitionAction, planPartitions } from "./plan.ts";
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
  const steps: ActionSteps<PartitionAction> = {
    describe: describeAction,
    planFields: (a) => ({ action: a.kind, partition: a.partition }),
    target: (a) => ({
      partition: a.partition,
      ...(a.kind === "create_partition" ? { from: a.from, to: a.to } : {}),
    }),
    apply: async (action) => {
      const outcome = await applyPartitionAction(
        { db, policy, catalog, log, now: options.now, signal: ctx.signal },
        action,
      );
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
  const done = await executePlan(ctx, plan, steps, options);
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
