// What `migrate convert` knows about a table, as read from the catalog: what preflight reports,
// what the planner decides from, and how far an earlier (possibly killed) run got. The types live
// here; the reads are in facts-table.ts (the table itself), facts-dependents.ts (what hangs on
// it) and facts-state.ts (the conversion's progress).
import type { Relation } from "../db/relation.ts";
import type { ConversionPhase } from "./step.ts";

export interface ColumnFacts {
  name: string;
  type: string;
  notNull: boolean;
  /** "" none, "a" GENERATED ALWAYS, "d" BY DEFAULT. */
  identity: "" | "a" | "d";
  /** The identity's sequence (qualified, quoted as PostgreSQL prints it), when identity is set. */
  identitySequence: string | null;
  defaultExpr: string | null;
  generated: boolean;
  hasColumnGrants: boolean;
}

export interface ConstraintFacts {
  name: string;
  /** p primary key, u unique, f foreign key, c check, x exclusion, t constraint trigger. */
  /** n: NOT NULL (catalogued as a constraint from PostgreSQL 18). */
  type: "p" | "u" | "f" | "c" | "x" | "t" | "n";
  columns: string[];
  definition: string;
  validated: boolean;
  noInherit: boolean;
  /** The index behind a p/u/x constraint. */
  indexName: string | null;
}

export interface IndexFacts {
  name: string;
  unique: boolean;
  primary: boolean;
  /** Set when the index backs a constraint (primary key, unique, exclusion). */
  constraintName: string | null;
  valid: boolean;
  columns: string[];
  /** pg_get_indexdef: "CREATE [UNIQUE] INDEX name ON schema.table USING method (...) [WHERE ...]". */
  definition: string;
  /** The part from " USING " on: the same on any table with these columns. */
  body: string;
}

export interface ObjectRef {
  /** What it is ("foreign key", "view", "trigger"...). */
  kind: string;
  /** Qualified name, ready to paste into psql. */
  name: string;
  detail?: string;
}

/**
 * One of rollup-hourly's two change-tracking triggers (shared/rollups/changes.ts), recognised by
 * its name and its function, telemetry_jobs.record_rollup_changes. Convert moves these with the
 * table instead of refusing it.
 */
export interface ChangeTriggerFacts {
  name: string;
  /** The trigger's arguments as stored (the time column, the group column). */
  args: string[];
  /** pg_trigger.tgenabled: O fires, D disabled, R only as a replica, A always. */
  enabled: "O" | "D" | "R" | "A";
}

export interface OwnedSequence {
  sequence: string;
  column: string;
}

export interface Grant {
  grantee: string;
  privilege: string;
  grantable: boolean;
}

export interface TableFacts {
  table: Relation;
  exists: boolean;
  /** r plain, p partitioned, f foreign, v view... */
  relkind: string;
  isPartition: boolean;
  inheritance: boolean;
  persistence: "p" | "u" | "t";
  owner: string;
  comment: string | null;
  replicaIdentity: "d" | "n" | "f" | "i";
  rowSecurity: boolean;
  /** pg_class.reltuples: -1 when the table was never vacuumed or analyzed. */
  rowEstimate: number;
  totalBytes: number;
  columns: ColumnFacts[];
  constraints: ConstraintFacts[];
  indexes: IndexFacts[];
  incomingForeignKeys: ObjectRef[];
  dependentViews: ObjectRef[];
  /** Triggers, rollup-hourly's change triggers excepted (those are in changeTriggers). */
  triggers: ObjectRef[];
  changeTriggers: ChangeTriggerFacts[];
  rules: ObjectRef[];
  publications: ObjectRef[];
  ownedSequences: OwnedSequence[];
  grants: Grant[];
  /** Time range of the rows (null when the table is empty). */
  minTime: Date | null;
  maxTime: Date | null;
  /** Rows at or beyond the boundary being considered (they cannot go into the historical partition). */
  rowsAtOrAfterBoundary: number;
}

/** How far the conversion got, from the bookkeeping row and the catalog. */
export interface ConversionState {
  record: {
    phase: ConversionPhase;
    boundary: Date;
    plan: unknown;
  } | null;
  /** Our CHECK on the old table: absent, NOT VALID, or valid. */
  boundCheck: "absent" | "not-valid" | "valid";
  /** Indexes telemetry-jobs builds on the old table, by name: absent, invalid (a killed build) or valid. */
  builtIndexes: Record<string, "absent" | "invalid" | "valid">;
  /** The new partitioned parent exists (before the swap, under its temporary name). */
  parentExists: boolean;
  /** After the swap: the table is partitioned and the historical partition is attached to it. */
  historyAttached: boolean;
}
