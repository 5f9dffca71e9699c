// Where retention decides what to drop: per child of a partitioned table, whether it is expired
// (its upper bound at or before the cutoff), held, not rolled up for good yet, or in the way of
// an archive name; which straddling children and which DEFAULT rows lose their expired rows; and
// the guard rails that refuse a run that would remove too much. Also the unfinished removals a
// killed run left, and a plain table's row deletes. Pure; planRetention (plan.ts) puts it together.
import type { RetentionPolicy, TablePolicy } from "../config/policy.ts";
import { displayRelation, type Relation } from "../db/relation.ts";
import type { ChildPartition, TableCatalog } from "../partitions/catalog.ts";
import { expiryRange, isExpired, straddlesCutoff } from "./expiry.ts";
import { keepUnexportedRows, planExport } from "./export-plan.ts";
import { exportOf, removalMode } from "./export-target.ts";
import type { RetentionHold } from "./holds.ts";
import type { RetentionAction, RetentionFacts, RetentionFinding } from "./plan.ts";
import { archiveClash, partitionNotFinal, rowsFigure, rowsNotFinal } from "./plan-findings.ts";

type RemovePartition = Extract<RetentionAction, { kind: "remove_partition" }>;

/** One planning run: its inputs, and the plan as it is being built. */
export interface Decision {
  readonly policy: TablePolicy;
  readonly retention: RetentionPolicy;
  readonly facts: RetentionFacts;
  readonly now: Date;
  readonly cutoff: Date;
  /** rowDeleteLimit: rows before it may be deleted row by row; null: none may. */
  readonly limit: Date | null;
  readonly actions: RetentionAction[];
  readonly findings: RetentionFinding[];
  readonly refusals: string[];
  /** The holds by partition (displayRelation). */
  readonly holdByPartition: ReadonlyMap<string, RetentionHold>;
}

/** Tables a killed run detached but did not yet drop or archive: finish them unless held or clashing. */
export function finishUnfinished(d: Decision): void {
  for (const u of d.facts.unfinishedRemovals) {
    // A hold placed after a run was killed mid-removal still protects the (detached) partition.
    const shown = displayRelation(u.partition);
    const hold = d.facts.holds.find((h) => h.partition === shown && h.until > d.now);
    if (hold) {
      d.findings.push({
        severity: "info",
        code: "held",
        partition: shown,
        message: `${shown} is held until ${hold.until.toISOString()} (${hold.reason}); a killed run had started removing it (mode ${u.mode}): it stays detached and is not ${u.mode === "drop" ? "dropped" : "moved"} until the hold ends`,
      });
      continue;
    }
    const clash = archiveClash(d.retention, u.mode, u.partition, d.facts);
    if (clash) {
      d.findings.push(clash);
      continue;
    }
    d.actions.push({ kind: "finish_removal", partition: u.partition, mode: u.mode });
  }
}

/**
 * Row deletes in one leaf (a plain table, or the DEFAULT partition), less the rows not final yet.
 * None in mode "export", which removes only rows it has exported (whole partitions).
 */
export function deleteExpiredRows(
  d: Decision,
  relation: Relation,
  reason: "plain_table" | "default_partition",
): void {
  const shown = displayRelation(relation);
  if (exportOf(d.policy)) {
    keepUnexportedRows(d, relation, d.facts.expiredRows.get(shown) ?? 0);
    return;
  }
  const expired = d.facts.expiredRows.get(shown) ?? 0;
  if (expired > 0 && keptByHold(d, shown, expired)) return;
  const notFinal = rowsNotFinal(d.facts, shown, d.cutoff, d.limit);
  if (notFinal.finding) d.findings.push(notFinal.finding);
  const rows = expired - notFinal.kept;
  if (rows > 0 && d.limit)
    d.actions.push({ kind: "delete_rows", relation, reason, before: d.limit, rows, ...estimated(d, shown) });
}

/** Marks a row-delete action whose rows are the planner's estimate (facts.rowEstimates). */
function estimated(d: Decision, qualified: string): { rowsEstimated?: true } {
  return d.facts.rowEstimates?.get(qualified)?.deletable ? { rowsEstimated: true } : {};
}

/** Whether a hold keeps `qualified`'s expired rows (a hold keeps all of a relation's rows); says so. */
function keptByHold(d: Decision, qualified: string, rows: number): boolean {
  const hold = d.holdByPartition.get(qualified);
  if (!hold || hold.until <= d.now) return false;
  d.findings.push({
    severity: "info",
    code: "held",
    partition: qualified,
    message: `${qualified} is held until ${hold.until.toISOString()} (${hold.reason}): its ${rowsFigure(d.facts, qualified, rows, "expired")} rows before the cutoff are kept`,
  });
  return true;
}

/** A partitioned table: its children, the guard rails, then its DEFAULT partition's rows. */
export function decidePartitions(d: Decision, catalog: TableCatalog): void {
  const removals: RemovePartition[] = [];
  for (const child of catalog.children) {
    const relation: Relation = { schema: child.schema, name: child.name };
    if (child.detachPending) {
      d.actions.push({ kind: "finalize_detach", partition: relation });
      continue;
    }
    const range = expiryRange(child.bound);
    if (!range || !Number.isFinite(range.to)) continue; // MAXVALUE never expires
    const to = new Date(range.to);
    const from = Number.isFinite(range.from) ? new Date(range.from) : null;
    if (isExpired(to, d.cutoff)) {
      const removal = decideExpired(d, catalog, child, relation, { from, to });
      if (removal) removals.push(removal);
    } else if (d.retention.exactCutoff && straddlesCutoff(range, d.cutoff)) {
      decideStraddling(d, relation);
    }
  }
  guardRemovals(d, removals);
  d.actions.push(...removals.sort((a, b) => a.to.getTime() - b.to.getTime()));
  if (catalog.defaultPartition) {
    const def: Relation = { schema: catalog.defaultPartition.schema, name: catalog.defaultPartition.name };
    deleteExpiredRows(d, def, "default_partition");
  }
}

/** An expired child: removed, unless a hold, the rollup or an archive clash keeps it. */
function decideExpired(
  d: Decision,
  catalog: TableCatalog,
  child: ChildPartition,
  relation: Relation,
  { from, to }: { from: Date | null; to: Date },
): RemovePartition | undefined {
  const qualified = displayRelation(relation);
  const hold = d.holdByPartition.get(qualified);
  if (hold && hold.until.getTime() > d.now.getTime()) {
    d.findings.push({
      severity: "info",
      code: "held",
      partition: qualified,
      message: `kept ${qualified} past its cutoff: held until ${hold.until.toISOString()} by ${hold.createdBy} (${hold.reason})`,
    });
    return undefined;
  }
  const notFinal = partitionNotFinal(d.facts.rollup, qualified, from, to);
  if (notFinal) {
    d.findings.push(notFinal);
    return undefined;
  }
  if (hold) {
    d.findings.push({
      severity: "info",
      code: "hold_expired",
      partition: qualified,
      message: `the hold on ${qualified} expired at ${hold.until.toISOString()} (${hold.reason}); it is removed now`,
    });
  }
  const mode = removalMode(d.retention.mode);
  const clash = archiveClash(d.retention, mode, relation, d.facts);
  if (clash) {
    d.findings.push(clash);
    return undefined;
  }
  const exported = planExport(d, relation, { from, to }, child.partitioned === true);
  if (exported === "refused") return undefined;
  return {
    kind: "remove_partition",
    partition: relation,
    from,
    to,
    rowsEstimate: child.rowEstimate,
    bytes: child.bytes,
    mode,
    concurrently: catalog.defaultPartition === undefined,
    ...(hold ? { expiredHold: hold.reason } : {}),
    ...(exported ? { exportTo: exported } : {}),
    ...(d.facts.exportMarked?.has(displayRelation(relation)) ? { exportMarked: true } : {}),
    ...(child.foreignKeys ? { foreignKeys: true } : {}),
  };
}

/** A child across the cutoff (exactCutoff): its expired rows are deleted, unless it is held. */
function decideStraddling(d: Decision, relation: Relation): void {
  const qualified = displayRelation(relation);
  const rows = d.facts.expiredRows.get(qualified) ?? 0;
  if (rows === 0 || keptByHold(d, qualified, rows)) return;
  const notFinal = rowsNotFinal(d.facts, qualified, d.cutoff, d.limit);
  if (notFinal.finding) d.findings.push(notFinal.finding);
  if (rows - notFinal.kept > 0 && d.limit)
    d.actions.push({
      kind: "delete_rows",
      relation,
      reason: "straddling_partition",
      before: d.limit,
      rows: rows - notFinal.kept,
      ...estimated(d, qualified),
    });
}

/** The guard rails: too many removals at once, or every partition that holds data. */
function guardRemovals(d: Decision, removals: readonly RemovePartition[]): void {
  const { maxDropsPerRun } = d.retention;
  if (removals.length > maxDropsPerRun) {
    d.refusals.push(
      `it would remove ${removals.length} partitions, more than maxDropsPerRun (${maxDropsPerRun}): ${removals.map((r) => displayRelation(r.partition)).join(", ")}`,
    );
  }
  const withRows = [...d.facts.childHasRows].filter(([, has]) => has).map(([name]) => name);
  const removed = new Set(removals.map((r) => displayRelation(r.partition)));
  if (withRows.length > 0 && withRows.every((name) => removed.has(name))) {
    d.refusals.push(`it would remove every partition that holds data (${withRows.join(", ")})`);
  }
}
