// Rules across policy entries about rollup targets, checked when the policy file is read.
import type { z } from "zod";

/**
 * A rollup target is written by one source only (its state is kept per target), is never a source
 * itself, and, when it has a policy entry of its own (so that partition-manager and retention manage
 * it), that entry's time column is the target's hour column.
 */
export function checkRollupTargets(
  tables: readonly {
    table: string;
    timeColumn: string;
    partitioned: boolean;
    defaultPartition: boolean;
    rollup?: { target: string } | undefined;
  }[],
  ctx: z.RefinementCtx,
): void {
  const writers = new Map<string, number>();
  tables.forEach((t, i) => {
    if (!t.rollup) return;
    const target = t.rollup.target;
    if (target === t.table) {
      ctx.addIssue({
        code: "custom",
        path: ["tables", i, "rollup", "target"],
        message: `${target} is the table being rolled up; name another table for its hourly rollups`,
      });
      return;
    }
    const first = writers.get(target);
    if (first !== undefined)
      ctx.addIssue({
        code: "custom",
        path: ["tables", i, "rollup", "target"],
        message: `${target} is already the rollup target of tables[${first}] (${tables[first]!.table}); each source needs a target of its own`,
      });
    else writers.set(target, i);
  });
  tables.forEach((t, i) => {
    if (!writers.has(t.table)) return;
    if (t.rollup)
      ctx.addIssue({
        code: "custom",
        path: ["tables", i, "rollup"],
        message: `${t.table} is a rollup target; rolling it up again is not supported`,
      });
    if (t.timeColumn !== "bucket_ts")
      ctx.addIssue({
        code: "custom",
        path: ["tables", i, "timeColumn"],
        message: `${t.table} is a rollup target, whose hours are in column bucket_ts: set "timeColumn": "bucket_ts"`,
      });
    // rollup-hourly writes the buckets of every hour that has raw rows, history included, while
    // partition-manager makes partitions from the current interval on: without a DEFAULT partition
    // the older buckets have nowhere to go and every run fails.
    if (t.partitioned && !t.defaultPartition)
      ctx.addIssue({
        code: "custom",
        path: ["tables", i, "defaultPartition"],
        message: `${t.table} is a partitioned rollup target: it needs its DEFAULT partition for the hours before its first partition (rollup-hourly writes history); remove "defaultPartition": false`,
      });
  });
}
