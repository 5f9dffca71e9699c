// The retention planner: pure, like the partition planner. From the policy, what the database
// holds (children with real bounds, holds, expired rows, and for a table that is rolled up,
// how far its rollups are final) and `now`, it decides what to remove, what to delete row by row,
// and whether the run must be refused. Raw rows of hours the rollup has not made final are never
// removed: such partitions and rows are kept, with a warning, and the rest of the plan goes ahead.
// This file holds the plan's types and puts it together; the decisions are in decide.ts.
import type { Manifest } from "../cold/manifest.ts";
import { approximateMs, formatDuration } from "../config/duration.ts";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import type { Relation } from "../db/relation.ts";
import type { TableCatalog } from "../partitions/catalog.ts";
import type { RollupFrontier } from "../rollups/frontier.ts";
import type { Finding, Plan } from "../run/execute-plan.ts";
import { type Decision, decidePartitions, deleteExpiredRows, finishUnfinished } from "./decide.ts";
import type { RowEstimates } from "./expired-rows.ts";
import { cutoffAt, retentionOf } from "./expiry.ts";
import type { RetentionHold } from "./holds.ts";

export { keepOf, retentionCutoff } from "./expiry.ts";

export const KEEP_FLOOR_MS = 86_400_000; // 1 day: a shorter keep is almost certainly a typo

/** What becomes of a detached partition (mode "export" is an export, then "drop"). */
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
      /** Mode "export": the directory its files go to; exported and verified before the detach. */
      readonly exportTo?: string;
      /**
       * It carries a killed export run's mark: whatever the mode is now, it is not dropped before
       * that export is read back and confirmed (so never in the one transaction of mode drop).
       */
      readonly exportMarked?: true;
      /**
       * A foreign key refers from or to it: its DETACH and DROP lock another table, which mode
       * drop's one transaction must not wait for while it holds the parent.
       */
      readonly foreignKeys?: true;
    }
  | {
      readonly kind: "delete_rows";
      /** A leaf relation (never a partitioned parent): rows are addressed by its own ctid. */
      readonly relation: Relation;
      readonly reason: "plain_table" | "default_partition" | "straddling_partition";
      readonly before: Date;
      readonly rows: number;
      /** `rows` is the planner's estimate (where a run deletes in time order: expired-rows.ts). */
      readonly rowsEstimated?: true;
    };

export type RetentionFindingCode =
  | "held"
  | "hold_expired"
  | "nothing_expired"
  | "archive_name_taken"
  | "rollup_not_final"
  | "export_planned"
  | "export_unbounded"
  | "export_subpartitioned"
  | "export_default_rows"
  | "export_exists"
  | "export_reused"
  | "export_replaced"
  | "export_unreadable";

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
  /** displayRelation(leaf) -> rows older than the cutoff that would be deleted row by row. */
  readonly expiredRows: ReadonlyMap<string, number>;
  /**
   * displayRelation(leaf) -> which of its figures are the planner's estimates, not counts (the rows
   * to delete, expiredRows - notFinalRows; notFinalRows). Undefined or absent: counted.
   */
  readonly rowEstimates?: ReadonlyMap<string, RowEstimates> | undefined;
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
  /**
   * Mode "export": displayRelation(partition) -> what its export directory already holds, for the
   * expired partitions whose directory has a manifest (or one that cannot be read). Undefined when
   * the policy does not export.
   */
  readonly existingExports?: ReadonlyMap<string, ExistingExport> | undefined;
  /**
   * Partitions (displayRelation) still attached that carry a killed export run's mark: each is
   * dropped only once that export is confirmed. Undefined: none known.
   */
  readonly exportMarked?: ReadonlySet<string> | undefined;
}

/**
 * A manifest already in a partition's export directory, as export-facts.ts read it: a valid one,
 * a torn or hand-edited one ("invalid"), or one a file system error kept from being read
 * ("unreadable": ENOTDIR, EACCES...).
 */
export type ExistingExport =
  | {
      readonly dir: string;
      readonly state: "ok";
      readonly manifest: Manifest;
      /** The partition's rows, counted when the manifest was read. */
      readonly rowsNow: number;
    }
  | { readonly dir: string; readonly state: "invalid"; readonly reason: string }
  | { readonly dir: string; readonly state: "unreadable"; readonly reason: string };

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
  const d: Decision = {
    policy,
    retention,
    facts,
    now,
    cutoff,
    limit: rowDeleteLimit(cutoff, rollup?.frontier),
    actions: [],
    findings: [],
    refusals: [],
    holdByPartition: new Map(facts.holds.map((h) => [h.partition, h])),
  };
  const { actions, findings, refusals } = d;
  if (approximateMs(keep) < KEEP_FLOOR_MS) {
    refusals.push(`keep "${formatDuration(keep)}" is shorter than the 1 day floor`);
  }
  finishUnfinished(d);
  if (facts.catalog) decidePartitions(d, facts.catalog);
  else deleteExpiredRows(d, policyTable(policy), "plain_table");

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
