// The retention planner: pure, like the partition planner. From the policy, what the database
// holds (children with real bounds, holds, counted expired rows, and for a table that is rolled up,
// how far its rollups are final) and `now`, it decides what to remove, what to delete row by row,
// and whether the run must be refused. Raw rows of hours the rollup has not made final are never
// removed: such partitions and rows are kept, with a warning, and the rest of the plan goes ahead.
import { approximateMs, formatDuration } from "../config/duration.ts";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { displayRelation, type Relation } from "../db/relation.ts";
import { boundRange } from "../partitions/bounds.ts";
import type { TableCatalog } from "../partitions/catalog.ts";
import { describeRollupFrontier, type RollupFrontier } from "../rollups/frontier.ts";
import type { Finding, Plan } from "../run/execute-plan.ts";
import { cutoffAt, isExpired, retentionOf, straddlesCutoff } from "./expiry.ts";
import type { RetentionHold } from "./holds.ts";

export { keepOf, retentionCutoff } from "./expiry.ts";

export const KEEP_FLOOR_MS = 86_400_000; // 1 day: a shorter keep is almost certainly a typo

export type RetentionMode = "drop" | "detach" | "archive";

export type RetentionAction =
  | { readonly kind: "finalize_detach"; readonly partition: Relation }
  | { readonly kind: "finish_removal"; readonly partition: Relation; readonly mode: RetentionMode }
  | {
      readonly kind: "remove_partition";
      readonly partition: Relation;
      readonly from: Date | null;
      readonly to: Date;
      readonly rowsEstimate: number;
      readonly bytes: number;
      readonly mode: RetentionMode;
      /** DETACH ... CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the parent); impossible with a DEFAULT partition. */
      readonly concurrently: boolean;
      /** A hold that existed but has expired. */
      readonly expiredHold?: string;
    }
  | {
      readonly kind: "delete_rows";
      /** A leaf relation (never a partitioned parent): rows are addressed by its own ctid. */
      readonly relation: Relation;
      readonly reason: "plain_table" | "default_partition" | "straddling_partition";
      readonly before: Date;
      readonly rows: number;
    };

export type RetentionFindingCode =
  | "held"
  | "hold_expired"
  | "nothing_expired"
  | "archive_name_taken"
  | "rollup_not_final";

/** A retention finding: the one Finding shape, with retention's codes. */
export type RetentionFinding = Finding<RetentionFindingCode>;

/** `refusal`: why the run must not go ahead without --force. */
export interface RetentionPlan extends Plan<RetentionAction, RetentionFindingCode> {
  readonly table: string;
  readonly cutoff: Date;
  /**
   * Tables with a rollup block: the rollup frontier (null: no hour is final yet) and whether it kept
   * any expired partition or row this run.
   */
  readonly rollup?: { readonly frontier: Date | null; readonly blocked: boolean };
}

/** What the retention planner needs to know about a table, read by facts.ts. */
export interface RetentionFacts {
  readonly table: string;
  /** Partitioned tables: the catalog; plain tables: undefined. */
  readonly catalog: TableCatalog | undefined;
  /** displayRelation(child) -> whether it has at least one row. */
  readonly childHasRows: ReadonlyMap<string, boolean>;
  /** displayRelation(leaf) -> rows older than the cutoff that would be deleted row by row (counted). */
  readonly expiredRows: ReadonlyMap<string, number>;
  /** Tables a killed run detached but did not yet drop or archive (marked by comment). */
  readonly unfinishedRemovals: readonly { partition: Relation; mode: RetentionMode }[];
  readonly holds: readonly RetentionHold[];
  /**
   * Archive mode: displayRelation(partition) -> the names its move would need (its own and its
   * indexes', which SET SCHEMA moves along) that the archive schema already holds. Empty otherwise.
   */
  readonly archiveClashes: ReadonlyMap<string, readonly string[]>;
  /**
   * Tables whose policy has a rollup block: how far rollup-hourly has made hours final, and per
   * row-delete target (displayRelation(leaf)), how many of its expiredRows are at or after the row
   * delete limit (rowDeleteLimit) and so must stay. Undefined for tables without a rollup block.
   */
  readonly rollup: RetentionRollupFacts | undefined;
}

export interface RetentionRollupFacts {
  readonly frontier: RollupFrontier;
  readonly notFinalRows: ReadonlyMap<string, number>;
}

/**
 * The instant before which rows may be deleted row by row: the cutoff, or the rollup frontier when
 * that is earlier (raw rows of hours the rollup has not made final are still to be rolled up).
 * null: no row may be deleted (no hour is final yet). Without rollup facts: the cutoff.
 */
export function rowDeleteLimit(cutoff: Date, rollup: RollupFrontier | undefined): Date | null {
  if (!rollup) return cutoff;
  if (rollup.frontier === null) return null;
  return rollup.frontier < cutoff ? rollup.frontier : cutoff;
}

const ROLLUP_ADVICE = "Check rollup-hourly: its last executions and their errors (docs/runbooks/rollups.md)";

/** An expired partition whose upper bound is after the rollup frontier: its hours are not final. */
function partitionNotFinal(
  rollup: RetentionRollupFacts | undefined,
  partition: string,
  from: Date | null,
  to: Date,
): RetentionFinding | undefined {
  if (!rollup) return undefined;
  const frontier = rollup.frontier.frontier;
  if (frontier !== null && to.getTime() <= frontier.getTime()) return undefined;
  return {
    severity: "warn",
    code: "rollup_not_final",
    partition,
    message: `kept ${partition} [${from?.toISOString() ?? "MINVALUE"}, ${to.toISOString()}) past its cutoff: its hours are not rolled up for good yet (${describeRollupFrontier(rollup.frontier)}). ${ROLLUP_ADVICE}; the first retention run after it has caught up removes the partition.`,
  };
}

/** Expired rows of a row-delete target kept because they are at or after the rollup frontier. */
function rowsNotFinal(
  rollup: RetentionRollupFacts | undefined,
  relation: string,
  cutoff: Date,
  limit: Date | null,
): { finding?: RetentionFinding; kept: number } {
  const kept = rollup?.notFinalRows.get(relation) ?? 0;
  if (!rollup || kept === 0) return { kept: 0 };
  return {
    kept,
    finding: {
      severity: "warn",
      code: "rollup_not_final",
      partition: relation,
      message: `kept ${kept} rows of ${relation} older than the cutoff ${cutoff.toISOString()}: their hours are not rolled up for good yet (${describeRollupFrontier(rollup.frontier)}), so this run deletes ${limit ? `only rows before ${limit.toISOString()}` : "none"}. ${ROLLUP_ADVICE}; the first retention run after it has caught up deletes them.`,
    },
  };
}

/**
 * Archive mode moves a partition, with its indexes, into the archive schema under their own names.
 * When one is taken (another managed table of the same name in another schema archived its child
 * first), the move would fail after the detach and strand the partition: find it before anything
 * is done, and leave that partition as it is.
 */
function archiveClash(
  retention: { archiveSchema: string },
  mode: RetentionMode,
  partition: Relation,
  facts: RetentionFacts,
): RetentionFinding | undefined {
  const shown = displayRelation(partition);
  const clashes = mode === "archive" ? facts.archiveClashes.get(shown) : undefined;
  if (!clashes || clashes.length === 0) return undefined;
  const taken = clashes.map((name) => displayRelation({ schema: retention.archiveSchema, name })).join(", ");
  return {
    severity: "warn",
    code: "archive_name_taken",
    partition: shown,
    message: `${shown} is expired, but the archive already has ${taken}, which moving it there needs (archived from another table of the same name?). ${shown} is left as it is; rename what is in the way, or give this table an archiveSchema of its own.`,
  };
}

export function planRetention(
  policy: TablePolicy,
  facts: RetentionFacts,
  now: Date,
  options: { force: boolean },
): RetentionPlan {
  const retention = retentionOf(policy);
  const keep = retention.keepDuration;
  const cutoff = cutoffAt(keep, now);
  if (policy.rollup && !facts.rollup)
    throw new Error(`${policy.table} has a rollup block, but the retention facts lack its rollup frontier`);
  const rollup = facts.rollup;
  const limit = rowDeleteLimit(cutoff, rollup?.frontier);
  const actions: RetentionAction[] = [];
  const findings: RetentionFinding[] = [];
  const refusals: string[] = [];
  if (approximateMs(keep) < KEEP_FLOOR_MS) {
    refusals.push(`keep "${formatDuration(keep)}" is shorter than the 1 day floor`);
  }

  for (const u of facts.unfinishedRemovals) {
    // A hold placed after a run was killed mid-removal still protects the (detached) partition.
    const shown = displayRelation(u.partition);
    const hold = facts.holds.find((h) => h.partition === shown && h.until > now);
    if (hold) {
      findings.push({
        severity: "info",
        code: "held",
        partition: shown,
        message: `${shown} is held until ${hold.until.toISOString()} (${hold.reason}); a killed run had started removing it (mode ${u.mode}): it stays detached and is not ${u.mode === "drop" ? "dropped" : "moved"} until the hold ends`,
      });
      continue;
    }
    const clash = archiveClash(retention, u.mode, u.partition, facts);
    if (clash) {
      findings.push(clash);
      continue;
    }
    actions.push({ kind: "finish_removal", partition: u.partition, mode: u.mode });
  }

  const catalog = facts.catalog;
  if (!catalog) {
    const table = policyTable(policy);
    const shown = displayRelation(table);
    const notFinal = rowsNotFinal(rollup, shown, cutoff, limit);
    if (notFinal.finding) findings.push(notFinal.finding);
    const rows = (facts.expiredRows.get(shown) ?? 0) - notFinal.kept;
    if (rows > 0 && limit)
      actions.push({
        kind: "delete_rows",
        relation: table,
        reason: "plain_table",
        before: limit,
        rows,
      });
  } else {
    const holdByPartition = new Map(facts.holds.map((h) => [h.partition, h]));
    const removals: Extract<RetentionAction, { kind: "remove_partition" }>[] = [];
    for (const child of catalog.children) {
      const relation: Relation = { schema: child.schema, name: child.name };
      const qualified = displayRelation(relation);
      if (child.detachPending) {
        actions.push({ kind: "finalize_detach", partition: relation });
        continue;
      }
      const range = boundRange(child.bound);
      if (!range || !Number.isFinite(range.to)) continue; // MAXVALUE never expires
      const to = new Date(range.to);
      const from = Number.isFinite(range.from) ? new Date(range.from) : null;
      if (isExpired(to, cutoff)) {
        const hold = holdByPartition.get(qualified);
        if (hold && hold.until.getTime() > now.getTime()) {
          findings.push({
            severity: "info",
            code: "held",
            partition: qualified,
            message: `kept ${qualified} past its cutoff: held until ${hold.until.toISOString()} by ${hold.createdBy} (${hold.reason})`,
          });
          continue;
        }
        const notFinal = partitionNotFinal(rollup, qualified, from, to);
        if (notFinal) {
          findings.push(notFinal);
          continue;
        }
        if (hold) {
          findings.push({
            severity: "info",
            code: "hold_expired",
            partition: qualified,
            message: `the hold on ${qualified} expired at ${hold.until.toISOString()} (${hold.reason}); it is removed now`,
          });
        }
        const clash = archiveClash(retention, retention.mode, relation, facts);
        if (clash) {
          findings.push(clash);
          continue;
        }
        removals.push({
          kind: "remove_partition",
          partition: relation,
          from,
          to,
          rowsEstimate: child.rowEstimate,
          bytes: child.bytes,
          mode: retention.mode,
          concurrently: catalog.defaultPartition === undefined,
          ...(hold ? { expiredHold: hold.reason } : {}),
        });
      } else if (retention.exactCutoff && straddlesCutoff(range, cutoff)) {
        const rows = facts.expiredRows.get(qualified) ?? 0;
        const hold = holdByPartition.get(qualified);
        if (rows > 0 && hold && hold.until > now) {
          // A hold keeps the whole partition, its expired rows included.
          findings.push({
            severity: "info",
            code: "held",
            partition: qualified,
            message: `${qualified} is held until ${hold.until.toISOString()} (${hold.reason}): its ${rows} rows before the cutoff are kept`,
          });
        } else if (rows > 0) {
          const notFinal = rowsNotFinal(rollup, qualified, cutoff, limit);
          if (notFinal.finding) findings.push(notFinal.finding);
          if (rows - notFinal.kept > 0 && limit)
            actions.push({
              kind: "delete_rows",
              relation,
              reason: "straddling_partition",
              before: limit,
              rows: rows - notFinal.kept,
            });
        }
      }
    }
    if (removals.length > retention.maxDropsPerRun) {
      refusals.push(
        `it would remove ${removals.length} partitions, more than maxDropsPerRun (${retention.maxDropsPerRun}): ${removals.map((r) => displayRelation(r.partition)).join(", ")}`,
      );
    }
    const withRows = [...facts.childHasRows].filter(([, has]) => has).map(([name]) => name);
    const removed = new Set(removals.map((r) => displayRelation(r.partition)));
    if (withRows.length > 0 && withRows.every((name) => removed.has(name))) {
      refusals.push(`it would remove every partition that holds data (${withRows.join(", ")})`);
    }
    actions.push(...removals.sort((a, b) => a.to.getTime() - b.to.getTime()));
    if (catalog.defaultPartition) {
      const def: Relation = { schema: catalog.defaultPartition.schema, name: catalog.defaultPartition.name };
      const shown = displayRelation(def);
      const notFinal = rowsNotFinal(rollup, shown, cutoff, limit);
      if (notFinal.finding) findings.push(notFinal.finding);
      const rows = (facts.expiredRows.get(shown) ?? 0) - notFinal.kept;
      if (rows > 0 && limit)
        actions.push({
          kind: "delete_rows",
          relation: def,
          reason: "default_partition",
          before: limit,
          rows,
        });
    }
  }
  if (actions.length === 0 && !findings.some((f) => f.code === "rollup_not_final")) {
    findings.push({
      severity: "info",
      code: "nothing_expired",
      message: `nothing is older than the cutoff ${cutoff.toISOString()}`,
    });
  }
  const refusal =
    refusals.length > 0 && !options.force
      ? `refused: ${refusals.join("; and ")}. Check retention.keep and maxDropsPerRun; run with --dry-run to see the plan, and with --force if this is really intended.`
      : undefined;
  const rollupState = rollup && {
    frontier: rollup.frontier.frontier,
    blocked: findings.some((f) => f.code === "rollup_not_final"),
  };
  return {
    table: policy.table,
    cutoff,
    actions,
    findings,
    ...(refusal ? { refusal } : {}),
    ...(rollupState ? { rollup: rollupState } : {}),
  };
}
