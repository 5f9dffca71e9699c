// Health of one managed table, from its catalog snapshot: what an operator (and an alert) needs to
// know at a glance. Pure, like the planner.
import type { TablePolicy } from "../config/policy.ts";
import { displayRelation } from "../db/relation.ts";
import { boundRange } from "./bounds.ts";
import type { TableCatalog } from "./catalog.ts";
import { DEFAULT_GUARD_CONSTRAINT, GUARD_RUNBOOK } from "./naming.ts";
import { planPartitions } from "./plan.ts";
import { addIntervals, floorToInterval } from "./time.ts";

export type Verdict = "OK" | "WARN" | "CRIT";

export interface TableHealth {
  table: string;
  verdict: Verdict;
  reasons: string[];
  partitions: number;
  coveredFrom: string | null;
  coveredTo: string | null;
  /** Whole intervals after the current one that already have partitions (contiguously). */
  futureBufferIntervals: number;
  /** Intervals the buffer is short of the policy's premake (0 when it has them all): what alerts watch. */
  futureBufferShortfall: number;
  defaultRows: number;
  /** Intervals missing between existing children, or ahead within premake. */
  missingIntervals: number;
  totalBytes: number;
  totalRowsEstimate: number;
}

export function assessHealth(policy: TablePolicy, catalog: TableCatalog, now: Date): TableHealth {
  const ranges = catalog.children.flatMap((c) => boundRange(c.bound) ?? []).sort((a, b) => a.from - b.from);
  const covers = (t: number) => ranges.some((r) => r.from <= t && r.to > t);
  const current = floorToInterval(now, policy.interval);
  let buffer = 0;
  const currentCovered = covers(now.getTime());
  if (currentCovered) {
    for (let i = 1; i <= 10_000; i++) {
      const start = addIntervals(current, policy.interval, i).getTime();
      if (!covers(start)) break;
      buffer = i;
    }
  }
  const defaultRows = catalog.defaultBuckets.reduce((n, b) => n + b.rows, 0) + catalog.defaultNullKeyRows;
  const plan = planPartitions(policy, catalog, now);
  const missing = plan.actions.filter((a) => a.kind === "create_partition" && a.reason !== "rescue").length;

  const reasons: string[] = [];
  let verdict: Verdict = "OK";
  const raise = (v: Verdict, reason: string) => {
    reasons.push(`${v}: ${reason}`);
    if (v === "CRIT" || (v === "WARN" && verdict === "OK")) verdict = v;
  };
  if (!currentCovered)
    raise("CRIT", `no partition for the current ${policy.interval} interval: new rows go to DEFAULT or fail`);
  else if (buffer < Math.min(2, policy.premake))
    raise("WARN", `only ${buffer} future partition(s) ready (premake ${policy.premake})`);
  else if (buffer < policy.premake) raise("WARN", `${buffer} of ${policy.premake} premade partitions ready`);
  if (defaultRows > 0) raise("WARN", `${defaultRows} rows in the DEFAULT partition`);
  if (missing > 0) raise("WARN", `${missing} interval(s) missing a partition (gaps or premake)`);
  // Its removal failed, or the run that added it was killed (or, seen by status, is still under
  // way): it refuses rows of its ranges, which may have begun.
  if (catalog.defaultGuard && catalog.defaultPartition)
    raise(
      "WARN",
      `constraint ${DEFAULT_GUARD_CONSTRAINT} is still on ${displayRelation(catalog.defaultPartition)} (left by a partition-manager run that did not finish, unless one is under way): it refuses rows dated in the ranges it names until it is dropped; the next run drops it first, or drop it by hand (${GUARD_RUNBOOK})`,
    );
  if (policy.defaultPartition && !catalog.defaultPartition)
    raise("WARN", "no DEFAULT partition: out-of-range rows are rejected");
  for (const f of plan.findings)
    if (f.severity !== "info") raise(f.severity === "crit" ? "CRIT" : "WARN", f.message);

  return {
    table: policy.table,
    verdict,
    reasons,
    partitions: catalog.children.length,
    coveredFrom:
      ranges.length && Number.isFinite(ranges[0]!.from) ? new Date(ranges[0]!.from).toISOString() : null,
    coveredTo:
      ranges.length && Number.isFinite(ranges.at(-1)!.to) ? new Date(ranges.at(-1)!.to).toISOString() : null,
    futureBufferIntervals: buffer,
    futureBufferShortfall: Math.max(0, policy.premake - buffer),
    defaultRows,
    missingIntervals: missing,
    totalBytes: catalog.children.reduce((n, c) => n + c.bytes, 0) + (catalog.defaultPartition?.bytes ?? 0),
    totalRowsEstimate: catalog.children.reduce((n, c) => n + c.rowEstimate, 0),
  };
}
