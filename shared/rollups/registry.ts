// The registry of real-time reads (telemetry_jobs.rollup_reads, migration 0010_rollup_reads): one row
// per rollup target, from which telemetry_jobs.hourly_series() builds its queries. rollup-hourly
// writes it from the policy of each table it rolls up.
import { type Kysely, sql } from "kysely";
import { policyTable, rollupTarget, type TablePolicy } from "../config/policy.ts";
import { displayRelation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";

/**
 * Upserts the registry row of the policy's rollup target: its watermark key (the policy's
 * `rollup.target` text, as rollup-hourly keys telemetry_jobs.rollup_watermarks), source, time column
 * (and whether the catalog says it is `timestamp without time zone`, read as UTC), group columns
 * and metrics. Idempotent: the row is written only when something differs, so runs under load do
 * not rewrite it (updated_at moves only on a real change). Throws when the policy has no rollup,
 * or when the source or its time column is missing or the column is not a timestamp.
 */
export async function registerRollupRead(db: Kysely<DB>, policy: TablePolicy): Promise<void> {
  const rollup = policy.rollup;
  if (!rollup) throw new Error(`${policy.table} has no rollup in its policy: nothing to register`);
  const source = policyTable(policy);
  const target = rollupTarget(rollup);
  const column = await sql<{ type: string }>`
    SELECT a.atttypid::pg_catalog.regtype::text AS type
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${source.schema} AND c.relname = ${source.name}
       AND a.attname = ${policy.timeColumn} AND a.attnum > 0 AND NOT a.attisdropped`.execute(db);
  const type = column.rows[0]?.type;
  if (type === undefined)
    throw new Error(
      `cannot register the real-time read of ${displayRelation(target)}: ${displayRelation(source)} has no column ${policy.timeColumn}`,
    );
  if (type !== "timestamp with time zone" && type !== "timestamp without time zone")
    throw new Error(
      `cannot register the real-time read of ${displayRelation(target)}: ${displayRelation(source)}.${policy.timeColumn} is ${type}, not a timestamp`,
    );
  const jsonb = "jsonb" in rollup.metrics ? rollup.metrics.jsonb : null;
  const columns = "columns" in rollup.metrics ? [...rollup.metrics.columns] : null;
  // An identical row is left alone without even a row lock (ON CONFLICT ... WHERE would still lock
  // it); a concurrent first registration by another shard meets ON CONFLICT.
  await sql`
    WITH v (target_schema, target_name, watermark_key, source_schema, source_name, time_column,
            time_is_utc_timestamp, group_column, target_group_column, metrics_jsonb, metrics_columns) AS (
      VALUES (${target.schema}::text, ${target.name}::text, ${rollup.target}::text, ${source.schema}::text,
              ${source.name}::text, ${policy.timeColumn}::text, ${type === "timestamp without time zone"}::boolean,
              ${rollup.groupBy}::text, ${rollup.groupColumn}::text, ${jsonb}::text, ${columns}::text[]))
    INSERT INTO telemetry_jobs.rollup_reads AS r
           (target_schema, target_name, watermark_key, source_schema, source_name, time_column,
            time_is_utc_timestamp, group_column, target_group_column, metrics_jsonb, metrics_columns,
            updated_at)
    SELECT v.*, now() FROM v
     WHERE NOT EXISTS (
       SELECT 1 FROM telemetry_jobs.rollup_reads o
        WHERE o.target_schema = v.target_schema AND o.target_name = v.target_name
          AND (o.watermark_key, o.source_schema, o.source_name, o.time_column, o.time_is_utc_timestamp,
               o.group_column, o.target_group_column, o.metrics_jsonb, o.metrics_columns)
              IS NOT DISTINCT FROM
              (v.watermark_key, v.source_schema, v.source_name, v.time_column, v.time_is_utc_timestamp,
               v.group_column, v.target_group_column, v.metrics_jsonb, v.metrics_columns))
    ON CONFLICT (target_schema, target_name) DO UPDATE
       SET watermark_key = excluded.watermark_key, source_schema = excluded.source_schema,
           source_name = excluded.source_name, time_column = excluded.time_column,
           time_is_utc_timestamp = excluded.time_is_utc_timestamp, group_column = excluded.group_column,
           target_group_column = excluded.target_group_column, metrics_jsonb = excluded.metrics_jsonb,
           metrics_columns = excluded.metrics_columns, updated_at = excluded.updated_at
     WHERE (r.watermark_key, r.source_schema, r.source_name, r.time_column, r.time_is_utc_timestamp,
            r.group_column, r.target_group_column, r.metrics_jsonb, r.metrics_columns)
           IS DISTINCT FROM
           (excluded.watermark_key, excluded.source_schema, excluded.source_name, excluded.time_column,
            excluded.time_is_utc_timestamp, excluded.group_column, excluded.target_group_column,
            excluded.metrics_jsonb, excluded.metrics_columns)`.execute(db);
}
