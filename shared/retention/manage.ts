// The retention job's work for one table: read the facts, plan, refuse or print the plan, apply it
// action by action (each audited and logged), and report counts and bytes freed. For a table that is
// rolled up, the health record also says how far the rollups are final and whether that kept
// expired data this run (rollupFrontier, rollupBlocked), so that an alert can see a stalled rollup.
import type { Kysely } from "kysely";
import { displayRelation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { TableContext, TableReport } from "../run/runner.ts";
import { applyRetentionAction } from "./apply.ts";
import { readRetentionFacts } from "./facts.ts";
import { planRetention, type RetentionAction, retentionCutoff } from "./plan.ts";
import { resumeBlock } from "./progress.ts";

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
  const cutoff = retentionCutoff(policy, options.now);
  const lock = { lockTimeoutMs: policy.lockTimeoutMs, budgetMs: policy.retryBudgetMs };
  const facts = await readRetentionFacts(db, policy, cutoff, lock);
  const plan = planRetention(policy, facts, options.now, { force: options.force });
  const rollupHealth = plan.rollup
    ? { rollupFrontier: plan.rollup.frontier?.toISOString() ?? null, rollupBlocked: plan.rollup.blocked }
    : {};
  log.info(
    `cutoff ${cutoff.toISOString()} (keep ${policy.retention!.keep}, mode ${policy.retention!.mode})`,
    {
      cutoff,
      partitioned: policy.partitioned,
    },
  );
  for (const f of plan.findings) {
    (f.severity === "warn" ? log.warn : log.info)(f.message, {
      finding: f.code,
      partition: f.partition,
      ...(f.code === "rollup_not_final" ? { rollupFrontier: plan.rollup?.frontier ?? null } : {}),
    });
  }
  for (const a of plan.actions)
    log.info(`${options.dryRun ? "would " : "plan: "}${describeRetentionAction(a)}`, { action: a.kind });
  const counts: Record<string, number> = {};
  if (plan.refusal) {
    log.error(plan.refusal, { refused: true });
    return { status: "refused", actions: {}, error: plan.refusal };
  }
  if (options.dryRun) {
    for (const a of plan.actions) counts[a.kind] = (counts[a.kind] ?? 0) + 1;
    return {
      status: "ok",
      actions: counts,
      health: { cutoff: cutoff.toISOString(), planned: plan.actions.length, ...rollupHealth },
    };
  }

  const deadline = Date.now() + policy.retention!.timeBudgetMs;
  let bytesFreed = 0;
  let rowsDeleted = 0;
  let incomplete = false;
  for (const action of plan.actions) {
    if (ctx.signal.aborted) {
      log.warn("stopping between actions: termination requested");
      return { status: "interrupted", actions: counts };
    }
    const startedAt = new Date();
    const partition = displayRelation("partition" in action ? action.partition : action.relation);
    const range =
      action.kind === "remove_partition"
        ? { from: action.from ?? undefined, to: action.to }
        : action.kind === "delete_rows"
          ? { to: action.before }
          : {};
    try {
      const startBlock =
        action.kind === "delete_rows"
          ? await resumeBlock(db, policy.table, displayRelation(action.relation))
          : 0;
      const outcome = await applyRetentionAction(
        { db, policy, log, signal: ctx.signal, now: options.now, deadline },
        action,
        { startBlock },
      );
      counts[action.kind] = (counts[action.kind] ?? 0) + 1;
      if (action.kind === "remove_partition" && action.mode === "drop") bytesFreed += outcome.bytes;
      if (action.kind === "delete_rows") rowsDeleted += outcome.rows;
      incomplete ||= outcome.incomplete === true;
      await ctx.record({
        kind: action.kind,
        partition,
        ...range,
        rows: outcome.rows,
        outcome: "ok",
        detail: {
          path: outcome.path,
          bytes: outcome.bytes,
          mode: action.kind === "remove_partition" ? action.mode : undefined,
          hold: action.kind === "remove_partition" ? (action.expiredHold ? "expired" : "none") : undefined,
          incomplete: outcome.incomplete,
          nextBlock: outcome.nextBlock,
        },
        startedAt,
        finishedAt: new Date(),
      });
      log.notice(`done: ${describeRetentionAction(action)}`, {
        action: action.kind,
        partition,
        path: outcome.path,
        rows: outcome.rows,
      });
    } catch (error) {
      const message = (error as Error).message;
      await ctx.record({
        kind: action.kind,
        partition,
        ...range,
        outcome: "failed",
        error: message,
        startedAt,
        finishedAt: new Date(),
      });
      log.error(`failed: ${describeRetentionAction(action)}`, {
        action: action.kind,
        partition,
        error: message,
      });
      return {
        status: "failed",
        actions: counts,
        error: message,
        health: { cutoff: cutoff.toISOString(), bytesFreed, rowsDeleted, ...rollupHealth },
      };
    }
  }
  return {
    status: "ok",
    actions: counts,
    health: {
      cutoff: cutoff.toISOString(),
      bytesFreed,
      rowsDeleted,
      rowDeletesIncomplete: incomplete,
      ...rollupHealth,
    },
  };
}
