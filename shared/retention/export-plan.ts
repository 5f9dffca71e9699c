// The planner's part of mode "export": the directory an expired partition is exported to, said in
// a finding (so a dry run shows what would be written where), with what the run will make of an
// export already there, or why it cannot be exported; and the expired rows it keeps because only
// whole partitions are exported. Pure: what is on disk comes in the facts (export-facts.ts).
import type { PartitionToExport } from "../cold/export.ts";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { Decision } from "./decide.ts";
import {
  describesPartition,
  EXPORT_RUNBOOK,
  exportedContents,
  OTHER_EXPORT_ADVICE,
} from "./existing-export.ts";
import { exportDirectory, exportOf, exportTarget } from "./export-target.ts";
import type { ExistingExport, RetentionFinding } from "./plan.ts";
import { rowsFigure } from "./plan-findings.ts";

/**
 * Mode "export": the partition's export directory, or "refused" (with a finding) when it has none.
 * A partition bounded below by MINVALUE has no start to name its directory by (the Hive key is
 * `<key>_start=<ISO>`), and any made-up start would misstate what the files hold: it is kept, and
 * the finding says how to give it a real bound. A partition that is itself partitioned holds no
 * row of its own (they are in its partitions), and the export reads a partition's own rows: its
 * export would be empty, verify as equal, and let the drop take the whole month. It is kept too.
 * undefined: the policy does not export.
 */
export function planExport(
  d: Decision,
  relation: Relation,
  range: { from: Date | null; to: Date },
  subpartitioned: boolean,
): string | "refused" | undefined {
  const block = exportOf(d.policy);
  if (!block) return undefined;
  const shown = displayRelation(relation);
  const { from, to } = range;
  if (subpartitioned) {
    d.findings.push({
      severity: "warn",
      code: "export_subpartitioned",
      partition: shown,
      message: `kept ${shown} past its cutoff: it is itself partitioned, and mode "export" exports a partition's own rows, which are all in its partitions here. Nothing of it is exported or removed. Remove it by hand once you hold a copy of its rows.`,
    });
    return "refused";
  }
  if (from === null) {
    d.findings.push({
      severity: "warn",
      code: "export_unbounded",
      partition: shown,
      message: `kept ${shown} [MINVALUE, ${to.toISOString()}) past its cutoff: mode "export" names each partition's directory by its lower bound (${d.policy.timeColumn}_start=<ISO>), and this one has none. Give it a real lower bound (detach it, then attach it again FROM the earliest instant it holds) and the next run exports it.`,
    });
    return "refused";
  }
  const target = exportTarget(d.policy, relation, { from, to });
  const dir = exportDirectory(block.to, target);
  d.findings.push({
    severity: "info",
    code: "export_planned",
    partition: shown,
    message: `${shown} [${from.toISOString()}, ${to.toISOString()}) is exported to ${dir} (${block.format}, ${block.compression}), read back and verified, and only then detached and dropped`,
  });
  const existing = d.facts.existingExports?.get(shown);
  if (existing) d.findings.push(existingExportFinding(existing, block.to, target));
  return dir;
}

/**
 * What the run will do with the export already in the partition's directory, from its manifest
 * alone (a plan reads no part file): an export of this partition with as many rows is verified and
 * reused; an export of other rows (another partition or bounds, or another row count) is refused
 * while its files are intact; a damaged manifest is replaced; an unreadable one fails the export.
 */
function existingExportFinding(
  existing: ExistingExport,
  root: string,
  target: PartitionToExport,
): RetentionFinding {
  const shown = displayRelation(target.partition);
  const { dir } = existing;
  if (existing.state === "unreadable") {
    const message = `could not read the manifest in ${dir}: ${existing.reason}. A run cannot export ${shown} there and keeps it attached: check retention.export.to (${root}), the mount and this job's permissions on it. See ${EXPORT_RUNBOOK}.`;
    return { severity: "warn", code: "export_unreadable", partition: shown, message };
  }
  if (existing.state === "invalid") {
    const message = `${dir} holds a damaged or partial export (its manifest: ${existing.reason}): a run clears it and exports ${shown} anew`;
    return { severity: "info", code: "export_replaced", partition: shown, message };
  }
  const { manifest, rowsNow } = existing;
  const ours = `${shown} [${target.from.toISOString()}, ${target.to.toISOString()}) (${rowsNow} rows)`;
  if (describesPartition(manifest, target) && manifest.rows === String(rowsNow)) {
    const message = `${dir} already holds an export of ${exportedContents(manifest)}, as many rows as ${ours}: a run reads it back and compares it with the partition, and if they are equal, reuses it instead of writing it again (--re-export writes it again); if the rows differ, it refuses ${shown} as for an export of other rows`;
    return { severity: "info", code: "export_reused", partition: shown, message };
  }
  const message = `${dir} already holds an export of ${exportedContents(manifest)}, not of ${ours}: a run without --re-export does not export ${shown} over it while its files are intact (the plan reads only the manifest), and keeps ${shown} attached with an ERROR (exit 1). ${OTHER_EXPORT_ADVICE}`;
  return { severity: "warn", code: "export_exists", partition: shown, message };
}

/**
 * Mode "export" never deletes rows one by one (they would be gone without an export): expired rows
 * of the DEFAULT partition are kept, and the finding says how to get them exported.
 */
export function keepUnexportedRows(d: Decision, relation: Relation, rows: number): void {
  if (rows === 0) return;
  const shown = displayRelation(relation);
  d.findings.push({
    severity: "warn",
    code: "export_default_rows",
    partition: shown,
    message: `kept ${rowsFigure(d.facts, shown, rows, "expired")} rows of ${shown} before ${d.cutoff.toISOString()} past their cutoff: mode "export" removes only partitions it has exported, never rows one by one. To have them exported, create a partition for their range and move them into it (start it at another instant than an exported partition's start, whose directory it would otherwise share; docs/runbooks/retention.md, "Exporting to the cold tier"): the next run exports it and drops it.`,
  });
}
