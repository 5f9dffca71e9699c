// How retention's actions read on a terminal: their row in the plan table and the words of their
// progress line (the executor adds the relation and the elapsed time).
import { formatBytes, formatCount, instantText } from "../log/text-view.ts";
import type { Applied, PlanRow } from "../run/execute-plan.ts";
import type { RetentionAction } from "./plan.ts";

export function retentionPlanRow(a: RetentionAction): PlanRow {
  switch (a.kind) {
    case "remove_partition":
      return {
        rows: `~${formatCount(a.rowsEstimate)}`,
        action: `${a.mode}, ${formatBytes(a.bytes)}${a.expiredHold ? " (its hold has expired)" : ""}`,
      };
    case "delete_rows":
      // Rows are deleted by their time, not by a range of the relation's bounds.
      return {
        range: `before ${instantText(a.before)}`,
        rows: `${a.rowsEstimated ? "~" : ""}${formatCount(a.rows)}`,
        action: `delete rows (${a.reason.replaceAll("_", " ")})`,
      };
    case "finalize_detach":
      return { action: "finish an interrupted DETACH" };
    case "finish_removal":
      return { action: `finish ${a.mode} (a run stopped after the detach)` };
  }
}

export function retentionProgress(a: RetentionAction, applied: Applied): string {
  const { bytes, incomplete } = applied.detail as { bytes?: unknown; incomplete?: unknown };
  switch (a.kind) {
    case "delete_rows":
      return `${formatCount(applied.rows ?? 0)} rows deleted${incomplete ? " (stopped early: the warning above says why)" : ""}`;
    case "remove_partition": {
      const did = { drop: "dropped", detach: "detached", archive: "archived" }[a.mode];
      return a.mode === "drop" && typeof bytes === "number" ? `${did}, ${formatBytes(bytes)} freed` : did;
    }
    case "finalize_detach":
      return "detach finished";
    case "finish_removal":
      return "removal finished";
  }
}
