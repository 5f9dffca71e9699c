// Mode "export" in one place, pure: which removal it is (an export, then a drop), where a
// partition's files go under the policy's export root, and what the export reads. The retention
// planner and the removal steps both ask here, so they cannot disagree about a directory.
import { microsOf, type PartitionToExport } from "../cold/export.ts";
import { partitionDirectory } from "../cold/layout.ts";
import { policyTable, type RetentionPolicy, type TablePolicy } from "../config/policy.ts";
import type { Relation } from "../db/relation.ts";
import type { RetentionMode } from "./plan.ts";

type ExportBlock = NonNullable<RetentionPolicy["export"]>;

/** What becomes of a detached partition: mode "export" drops it once its export is verified. */
export function removalMode(mode: RetentionPolicy["mode"]): RetentionMode {
  return mode === "export" ? "drop" : mode;
}

/** The policy's export block when it exports (zod guarantees the block with mode "export"). */
export function exportOf(policy: Pick<TablePolicy, "retention">): ExportBlock | undefined {
  return policy.retention?.mode === "export" ? policy.retention.export : undefined;
}

/** The partition as the cold tier's export reads it: the key column is also the time column. */
export function exportTarget(
  policy: Pick<TablePolicy, "table" | "timeColumn">,
  partition: Relation,
  range: { from: Date; to: Date },
): PartitionToExport {
  return {
    table: policyTable(policy),
    partition,
    keyColumn: policy.timeColumn,
    timeColumn: policy.timeColumn,
    from: range.from,
    to: range.to,
  };
}

/** The directory a partition starting at `from` is exported to. */
export function exportDirectory(root: string, target: PartitionToExport): string {
  return partitionDirectory(root, {
    table: target.table,
    keyColumn: target.keyColumn,
    startMicros: microsOf(target.from),
  });
}
