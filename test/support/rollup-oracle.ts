// An independent model of what telemetry_rollups_hourly must hold: the rows a test inserted,
// aggregated in TypeScript (not with the SQL under test).
import type pg from "pg";

export interface RawRow {
  device: string;
  ts: Date;
  /** The metrics document as inserted (any JSON value). */
  metrics: unknown;
}

export interface Bucket {
  count: number;
  sum: number;
  min: number;
  max: number;
}

const HOUR = 3_600_000;
export const hourOf = (d: Date) => new Date(Math.floor(d.getTime() / HOUR) * HOUR);
export const bucketKey = (device: string, key: string, hour: Date) =>
  `${device}|${key}|${hour.toISOString()}`;

/** Only finite JSON numbers are measurements. */
export function countsAsMeasurement(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

export function expectedBuckets(rows: readonly RawRow[], finalBefore: Date, from = new Date(-8.64e15)) {
  const out = new Map<string, Bucket>();
  for (const r of rows) {
    const h = hourOf(r.ts);
    if (!(h < finalBefore) || h < from) continue;
    if (typeof r.metrics !== "object" || r.metrics === null || Array.isArray(r.metrics)) continue;
    for (const [key, v] of Object.entries(r.metrics)) {
      if (!countsAsMeasurement(v)) continue;
      const k = bucketKey(r.device, key, h);
      const b = out.get(k);
      if (b) {
        b.count++;
        b.sum += v;
        b.min = Math.min(b.min, v);
        b.max = Math.max(b.max, v);
      } else out.set(k, { count: 1, sum: v, min: v, max: v });
    }
  }
  return out;
}

export async function insertRows(pool: pg.Pool | pg.Client, rows: readonly RawRow[]): Promise<void> {
  if (rows.length === 0) return;
  await pool.query(
    `INSERT INTO public.telemetry_points (device_id, ts, metrics)
     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::jsonb[])`,
    [
      rows.map((r) => r.device),
      rows.map((r) => r.ts.toISOString()),
      rows.map((r) => JSON.stringify(r.metrics)),
    ],
  );
}

export async function storedBuckets(pool: pg.Pool, table = "public.telemetry_rollups_hourly") {
  const r = await pool.query(
    `SELECT device_id, metric_key, bucket_ts, sample_count::int AS n, sum, min, max, avg FROM ${table}`,
  );
  const out = new Map<string, Bucket & { avg: number }>();
  for (const row of r.rows)
    out.set(bucketKey(row.device_id, row.metric_key, row.bucket_ts), {
      count: row.n,
      sum: row.sum,
      min: row.min,
      max: row.max,
      avg: row.avg,
    });
  return out;
}

/** Differences between two bucket maps (sums compared to 1e-9 relative: float addition order). */
export function bucketDiff(expected: Map<string, Bucket>, actual: Map<string, Bucket>): string[] {
  const problems: string[] = [];
  for (const [k, e] of expected) {
    const a = actual.get(k);
    if (!a) problems.push(`missing ${k}`);
    else if (
      a.count !== e.count ||
      a.min !== e.min ||
      a.max !== e.max ||
      Math.abs(a.sum - e.sum) > 1e-9 * Math.max(1, Math.abs(e.sum))
    )
      problems.push(`wrong ${k}: expected ${JSON.stringify(e)}, got ${JSON.stringify(a)}`);
  }
  for (const k of actual.keys()) if (!expected.has(k)) problems.push(`unexpected ${k}`);
  return problems.slice(0, 10);
}

/** A raw row a test can address again later: `key` is stored in message_id. */
export interface KeyedRow extends RawRow {
  key: string;
}

export async function insertKeyedRows(pool: pg.Pool | pg.Client, rows: readonly KeyedRow[]): Promise<void> {
  if (rows.length === 0) return;
  await pool.query(
    `INSERT INTO public.telemetry_points (device_id, ts, metrics, message_id)
     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::jsonb[], $4::text[])`,
    [
      rows.map((r) => r.device),
      rows.map((r) => r.ts.toISOString()),
      rows.map((r) => JSON.stringify(r.metrics)),
      rows.map((r) => r.key),
    ],
  );
}

/**
 * The model of one device's hourly series of one metric key over the whole hours touching
 * [from, to), every hour included whether final or open (what the real-time read returns).
 */
export function expectedSeries(
  rows: readonly RawRow[],
  device: string,
  metricKey: string,
  from: Date,
  to: Date,
): Map<string, Bucket> {
  const last = hourOf(new Date(to.getTime() - 1));
  const all = expectedBuckets(rows, new Date(last.getTime() + HOUR), hourOf(from));
  return new Map([...all].filter(([k]) => k.startsWith(`${device}|${metricKey}|`)));
}

/** What readHourlySeries returned, keyed like the model. */
export function seriesBuckets(
  device: string,
  metricKey: string,
  points: readonly { bucketTs: Date; sampleCount: number; sum: number; min: number; max: number }[],
): Map<string, Bucket> {
  return new Map(
    points.map((p) => [
      bucketKey(device, metricKey, p.bucketTs),
      { count: p.sampleCount, sum: p.sum, min: p.min, max: p.max },
    ]),
  );
}
