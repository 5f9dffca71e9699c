// Kysely table types for the bookkeeping schema, telemetry_jobs: one interface per table the
// migrations create, with the columns and types those migrations give them. Managed telemetry
// tables are addressed by identifiers from the policy (sql.id/sql.table), not through these types.
//
// Types as node-postgres returns them: timestamptz as Date, bigint and xid8 as string (pg does not
// parse 64-bit integers), int as number, jsonb parsed, text[] as string[], pg_snapshot as its text
// form ('xmin:xmax:xip,...'). jsonb columns are written as JSON text.
import type { ColumnType, Generated } from "kysely";

export type Timestamp = ColumnType<Date, Date | string, Date | string>;

/** A jsonb column: read parsed, written as JSON text. */
type Json<Nullable extends null = never> = ColumnType<unknown, string | Nullable, string | Nullable>;

/** One row per job run (migrations 0001 and 0005). */
export interface JobRunsTable {
  id: Generated<string>;
  job: string;
  started_at: Generated<Date>;
  finished_at: Timestamp | null;
  status: Generated<"running" | "ok" | "skipped" | "failed" | "interrupted" | "refused" | "abandoned">;
  logical_now: Timestamp;
  host: string | null;
  execution: string | null;
  args: Json;
  summary: Json<null>;
}

/** One row per action a run carried out or attempted (migration 0001). */
export interface JobActionsTable {
  id: Generated<string>;
  run_id: string;
  table_name: string;
  kind: string;
  partition_name: string | null;
  range_from: Timestamp | null;
  range_to: Timestamp | null;
  rows: string | number | null;
  outcome: "ok" | "failed" | "skipped";
  error: string | null;
  detail: Json<null>;
  started_at: Timestamp;
  finished_at: Timestamp;
}

/** Partitions retention must keep past their cutoff (migrations 0003 and 0009). */
export interface RetentionHoldsTable {
  /** The partition as displayRelation renders it: `schema.name`, parts quoted where needed. */
  partition_name: string;
  hold_until: Timestamp;
  reason: string;
  created_at: Generated<Date>;
  created_by: Generated<string>;
}

/** How far rollup-hourly has rolled up each target, per task of a layout (migration 0004). */
export interface RollupWatermarksTable {
  /** The policy's rollup.target text, exactly as the job keys it. */
  target: string;
  shard_count: number;
  shard_index: number;
  /** Rows whose inserting transaction had committed in this snapshot are rolled up. */
  seen: string;
  /** Hours before this are final; later hours are still open. */
  final_before: Timestamp;
  /** A rebuild in progress: hours [backfill_next, backfill_to) are not recomputed yet. */
  backfill_next: Timestamp | null;
  backfill_to: Timestamp | null;
  updated_at: Generated<Date>;
}

/** Hours of a rollup source changed by UPDATE or DELETE, written by its trigger (migration 0007). */
export interface RollupChangesTable {
  source_schema: string;
  source_name: string;
  /** The group column's value as text, never NULL. */
  group_value: string;
  bucket_ts: Timestamp;
  xid: Generated<string>;
  recorded_at: Generated<Date>;
}

/** One row per `migrate convert` of a table (migration 0006). */
export interface ConversionsTable {
  /** The table as `schema.name` text. */
  table_name: string;
  phase: "preparing" | "prepared" | "swapped" | "reverted" | "finalized";
  /** The historical partition holds the rows before this instant. */
  boundary: Timestamp;
  plan: Json;
  started_at: Generated<Date>;
  updated_at: Generated<Date>;
}

/** How telemetry_jobs.hourly_series() reads each rollup target and its source (migration 0010). */
export interface RollupReadsTable {
  target_schema: string;
  target_name: string;
  /** rollup_watermarks.target of this target. */
  watermark_key: string;
  source_schema: string;
  source_name: string;
  time_column: string;
  /** The time column is timestamp without time zone, holding UTC wall-clock time. */
  time_is_utc_timestamp: boolean;
  group_column: string;
  target_group_column: string;
  /** The metrics: one jsonb column of key -> value, or numeric columns named as their keys. */
  metrics_jsonb: string | null;
  metrics_columns: string[] | null;
  updated_at: Generated<Date>;
}

/** A history table of Kysely's migrator: one row per applied migration (migrator.ts). */
export interface MigrationHistoryTable {
  name: string;
  /** When it was applied, as ISO 8601 text. */
  timestamp: string;
}

/** A lock table of Kysely's migrator. */
export interface MigrationLockTable {
  id: string;
  is_locked: Generated<number>;
}

export interface DB {
  "telemetry_jobs.job_runs": JobRunsTable;
  "telemetry_jobs.job_actions": JobActionsTable;
  "telemetry_jobs.retention_holds": RetentionHoldsTable;
  "telemetry_jobs.rollup_watermarks": RollupWatermarksTable;
  "telemetry_jobs.rollup_changes": RollupChangesTable;
  "telemetry_jobs.conversions": ConversionsTable;
  "telemetry_jobs.rollup_reads": RollupReadsTable;
  "telemetry_jobs.kysely_migration": MigrationHistoryTable;
  "telemetry_jobs.kysely_migration_lock": MigrationLockTable;
  "telemetry_jobs.kysely_starter_migration": MigrationHistoryTable;
  "telemetry_jobs.kysely_starter_migration_lock": MigrationLockTable;
}
