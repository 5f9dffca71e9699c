// partition-manager's work for one table: read the catalog, plan, print the plan, apply it action
// by action (each audited), then report the table's health for the run summary.
import type { Kysely } from "kysely";
import { parseQualifiedName } from "../config/identifiers.ts";
import type { TableContext, TableReport } from "../run/runner.ts";
import { applyPartitionAction } from "./apply.ts";
import { readCatalog } from "./catalog.ts";
import { assessHealth } from "./health.ts";
import { type PartitionAction, planPartitions } from "./plan.ts";

export function describeAction(a: PartitionAction): string {
  if (a.kind === "create_default_partition") return `create DEFAULT partition ${a.partition}`;
  const rows = a.defaultRows > 0 ? `, moving ${a.defaultRows} rows out of DEFAULT` : "";
  return `create ${a.partition} [${a.from.toISOString()}, ${a.to.toISOString()}) (${a.reason}${rows})`;
}

export async function managePartitions(
  db: Kysely<any>,
  ctx: TableContext,
  options: { now: Date; dryRun: boolean },
): Promise<TableReport> {
  const { policy, log } = ctx;
  const table = parseQualifiedName(policy.table)!;
  const lock = { lockTimeoutMs: policy.lockTimeoutMs, budgetMs: policy.retryBudgetMs };
  let catalog = await readCatalog(db, table, policy.timeColumn, policy.interval, lock);
  const plan = planPartitions(policy, catalog, options.now);
  for (const f of plan.findings)
    (f.severity === "info" ? log.info : log.warn)(f.message, { finding: f.code, partition: f.partition });
  if (plan.actions.length === 0) log.info("partitions are up to date: nothing to do");
  for (const a of plan.actions)
    log.info(`${options.dryRun ? "would " : "plan: "}${describeAction(a)}`, {
      action: a.kind,
      partition: a.partition,
    });
  const counts: Record<string, number> = {};
  if (options.dryRun) {
    for (const a of plan.actions) counts[a.kind] = (counts[a.kind] ?? 0) + 1;
    return {
      status: "ok",
      actions: counts,
      health: { ...assessHealth(policy, catalog, options.now), planned: plan.actions.length },
    };
  }

  let failed: string | undefined;
  for (const action of plan.actions) {
    if (ctx.signal.aborted) {
      log.warn("stopping between actions: termination requested");
      return { status: "interrupted", actions: counts };
    }
    const startedAt = new Date();
    const range = action.kind === "create_partition" ? { from: action.from, to: action.to } : {};
    try {
      const outcome = await applyPartitionAction(
        { db, policy, catalog, log, now: options.now, signal: ctx.signal },
        action,
      );
      counts[action.kind] = (counts[action.kind] ?? 0) + 1;
      await ctx.record({
        kind: action.kind,
        partition: action.partition,
        ...range,
        rows: outcome.rows,
        outcome: outcome.alreadyDone ? "skipped" : "ok",
        detail: {
          reason: action.kind === "create_partition" ? action.reason : "default",
          lockRetries: outcome.lockRetries,
        },
        startedAt,
        finishedAt: new Date(),
      });
      log.info(`done: ${describeAction(action)}`, {
        action: action.kind,
        partition: action.partition,
        rowsMoved: outcome.rows,
        lockRetries: outcome.lockRetries,
      });
    } catch (error) {
      failed = (error as Error).message;
      await ctx.record({
        kind: action.kind,
        partition: action.partition,
        ...range,
        outcome: "failed",
        error: failed,
        startedAt,
        finishedAt: new Date(),
      });
      log.error(`failed: ${describeAction(action)}`, {
        action: action.kind,
        partition: action.partition,
        error: failed,
      });
      break; // later actions on this table would meet the same obstacle; other tables go on
    }
  }
  catalog = await readCatalog(db, table, policy.timeColumn, policy.interval, lock);
  const health = assessHealth(policy, catalog, options.now);
  return {
    status: failed ? "failed" : "ok",
    actions: counts,
    health: { ...health },
    ...(failed ? { error: failed } : {}),
  };
}
