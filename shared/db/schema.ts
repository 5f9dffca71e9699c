// Kysely table types for the bookkeeping schema. Managed telemetry tables are addressed by
// identifiers from the policy (sql.id/sql.table), not through these types.
import type { ColumnType, Generated } from "kysely";

export type Timestamp = ColumnType<Date, Date | string, Date | string>;

export interface JobRunsTable {
  id: Generated<string>;
  job: string;
  started_at: Generated<Date>;
  finished_at: Timestamp | null;
  status: Generated<"running" | "ok" | "skipped" | "failed" | "interrupted" | "refused">;
  logical_now: Timestamp;
  host: string | null;
  execution: string | null;
  args: ColumnType<unknown, string, string>;
  summary: ColumnType<unknown, string | null, string | null>;
}

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
  detail: ColumnType<unknown, string | null, string | null>;
  started_at: Timestamp;
  finished_at: Timestamp;
}

export interface RetentionHoldsTable {
  partition_name: string;
  hold_until: Timestamp;
  reason: string;
  created_at: Generated<Date>;
  created_by: Generated<string>;
}

export interface DB {
  "telemetry_jobs.retention_holds": RetentionHoldsTable;
  "telemetry_jobs.job_runs": JobRunsTable;
  "telemetry_jobs.job_actions": JobActionsTable;
}
