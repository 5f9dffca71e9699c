// The never-stale hourly read for applications: a typed wrapper over the SQL function
// public.telemetry_hourly_series (migration 0004), which serves final hours from the rollups and
// aggregates raw rows for open hours and for hours with rows the job has not rolled up yet.
import { type Kysely, sql } from "kysely";

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
  db: Kysely<any>,
  query: { deviceId: string; metricKey: string; from: Date; to: Date },
): Promise<HourlyPoint[]> {
  const r = await sql<{
    bucket_ts: Date;
    sample_count: string;
    sum: number;
    min: number;
    max: number;
    avg: number;
    source: "rollup" | "raw";
  }>`SELECT * FROM public.telemetry_hourly_series(${query.deviceId}, ${query.metricKey}, ${query.from}, ${query.to})`.execute(
    db,
  );
  return r.rows.map((row) => ({
    bucketTs: row.bucket_ts,
    sampleCount: Number(row.sample_count),
    sum: row.sum,
    min: row.min,
    max: row.max,
    avg: row.avg,
    source: row.source,
  }));
}
