// How partition-manager's actions read on a terminal: their row in the plan table and the words of
// their progress line (the executor adds the partition and the elapsed time).

import { formatCount } from "../log/text-view.ts";
import type { Applied, PlanRow } from "../run/execute-plan.ts";
import type { PartitionAction } from "./plan.ts";

export function partitionPlanRow(a: PartitionAction): PlanRow {
  switch (a.kind) {
    case "create_default_partition":
      return { action: "create DEFAULT" };
    case "guard_default":
      return { action: `guard DEFAULT for ${a.ranges.length} range(s)` };
    case "drop_default_guard":
      return { action: a.leftover ? "drop DEFAULT guard left by an earlier run" : "drop DEFAULT guard" };
    case "create_partition":
      return {
        rows: a.defaultRows > 0 ? formatCount(a.defaultRows) : "",
        action: `create (${a.reason})`,
      };
  }
}

export function partitionProgress(a: PartitionAction, applied: Applied): string {
  if (a.kind !== "create_partition") return "done";
  const moved = applied.rows ?? 0;
  return moved > 0 ? `${formatCount(moved)} rows moved` : "created";
}
