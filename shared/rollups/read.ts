// The never-stale hourly reads for applications, typed wrappers over two SQL functions that serve
// final hours from the rollups and aggregate raw rows for open hours and for hours with rows the
// job has not rolled up yet:
// - readRollupSeries: any rollup target of the policy, through telemetry_jobs.hourly_series
//   (product migration 0010_rollup_reads), which finds the target's source and shape in
//   telemetry_jobs.rollup_reads (rollup-hourly registers each target on its runs);
// - readHourlySeries: the starter table only, through public.telemetry_hourly_series (the starter
//   schema's migrations).
import { type Kysely, sql } from "kysely";
import type { Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";

export interface HourlyPoint {
  bucketTs: Date;
  sampleCount: number;
  sum: number;
  min: number;
  max: number;
  avg: number;
  /** "rollup" (materialized) or "raw" (aggregated at read time). */
  source: "rollup" | "raw";
}

/**
 * One device's hourly series of one metric key over [from, to), in whole hours. Rows whose device_id
 * is NULL are in no series, exactly as rollup-hourly skips them (a NULL group is no bucket): the
 * function matches rows by `device_id = p_device_id`, which never holds for NULL, whether the hour
 * is served from the rollups or from raw rows.
 */
export async function readHourlySeries(
  db: Kysely<DB>,
  query: { deviceId: string; metricKey: string; from: Date; to: Date },
): Promise<HourlyPoint[]> {
  const r =
    await sql<SeriesRow>`SELECT * FROM public.telemetry_hourly_series(${query.deviceId}, ${query.metricKey}, ${query.from}, ${query.to})`.execute(
      db,
    );
  return r.rows.map(toPoint);
}

/**
 * One group's hourly series of one metric key in the rollup target `target` over [from, to), in
 * whole UTC hours, each hour from the rollups when they are up to date for it and from the raw
 * rows otherwise: always equal to a GROUP BY of the source's raw rows, with rollup-hourly's rules
 * (finite numbers only; rows whose group is NULL are in no series). `group` is the group value as
 * the target stores it (text); `target` is the policy's rollup target as parts. The result does not
 * depend on the session's TimeZone or search_path. Throws (SQLSTATE 42704) when no rollup read is
 * registered for the target.
 */
export async function readRollupSeries(
  db: Kysely<DB>,
  query: { target: Relation; group: string; metricKey: string; from: Date; to: Date },
): Promise<HourlyPoint[]> {
  const r = await sql<SeriesRow>`
    SELECT * FROM telemetry_jobs.hourly_series(${query.target.schema}::text, ${query.target.name}::text,
      ${query.group}::text, ${query.metricKey}::text, ${query.from}::timestamptz, ${query.to}::timestamptz)`.execute(
    db,
  );
  return r.rows.map(toPoint);
}

interface SeriesRow {
  bucket_ts: Date;
  /** bigint: text from pg */
  sample_count: string;
  sum: number;
  min: number;
  max: number;
  avg: number;
  source: "rollup" | "raw";
}

function toPoint(row: SeriesRow): HourlyPoint {
  return {
    bucketTs: row.bucket_ts,
    sampleCount: Number(row.sample_count),
    sum: row.sum,
    min: row.min,
    max: row.max,
    avg: row.avg,
    source: row.source,
  };
}
