// What a manifest already in a partition's export directory says about that partition, in one place
// for the run (export-step.ts, which reads the files back before it reuses or refuses) and the plan
// (export-plan.ts, which reads the manifest only): an export of this very partition (same table,
// relation, key column and bounds) may be reused; any other intact export there may be the only
// copy of a dropped partition's rows and is never written over without --re-export. Pure.
import { microsOf, type PartitionToExport } from "../cold/export.ts";
import type { Manifest } from "../cold/manifest.ts";
import { displayRelation, sameRelation } from "../db/relation.ts";

export const EXPORT_RUNBOOK = 'docs/runbooks/retention.md, "Exporting to the cold tier"';

/** The manifest describes `target`: same table, partition, key column and bounds (to the microsecond). */
export function describesPartition(manifest: Manifest, target: PartitionToExport): boolean {
  const micros = (d: Date) => microsOf(d).toString();
  return (
    sameRelation(manifest.table, target.table) &&
    sameRelation(manifest.partition.relation, target.partition) &&
    manifest.partition.keyColumn === target.keyColumn &&
    manifest.partition.from.micros === micros(target.from) &&
    manifest.partition.to.micros === micros(target.to)
  );
}

/** What the manifest holds, for messages: `<partition> [from, to) (N rows, exported <when>)`. */
export function exportedContents(manifest: Manifest): string {
  const { relation, from, to } = manifest.partition;
  const at = (i: { micros: string }) => new Date(Number(BigInt(i.micros) / 1000n)).toISOString();
  return `${displayRelation(relation)} [${at(from)}, ${at(to)}) (${manifest.rows} rows, exported ${manifest.exportedAt})`;
}

/** What to do about an intact export of other rows in the way: the same advice from run and plan. */
export const OTHER_EXPORT_ADVICE = `Move that export elsewhere (or restore it) and run again, or run with --re-export if it is an earlier copy of this same partition's rows. See ${EXPORT_RUNBOOK}.`;
