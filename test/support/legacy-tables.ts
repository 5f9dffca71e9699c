// Legacy, unpartitioned tables shaped like the ones `migrate convert` meets in the field, and the
// load that runs against them while they are converted: one writer inserting at a steady rate
// (timestamps from now and from the past) that records every row it wrote and how long each insert
// took, and one reader querying recent data. Used by the convert tests and bench/convert.ts.
import { performance } from "node:perf_hooks";
import pg from "pg";

export type LegacyShape = "edgewatch" | "sensor_readings";

export interface LegacyTable {
  shape: LegacyShape;
  schema: string;
  table: string;
  qualified: string;
  timeColumn: string;
  /** Every stored column, for checksums. */
  columns: string[];
  keyColumn: string;
}

export function legacyTable(shape: LegacyShape, schema: string): LegacyTable {
  return shape === "edgewatch"
    ? {
        shape,
        schema,
        table: "telemetry_points",
        qualified: `${schema}.telemetry_points`,
        timeColumn: "ts",
        columns: ["id", "device_id", "message_id", "ts", "metrics", "created_at"],
        keyColumn: "id",
      }
    : {
        shape,
        schema,
        table: "sensor_readings",
        qualified: `${schema}.sensor_readings`,
        timeColumn: "recorded_at",
        columns: ["id", "unit_id", "device_id", "recorded_at", "value"],
        keyColumn: "id",
      };
}

/** The policy the convert tests and bench use: monthly, premake 3, 12 months' retention (and rollups for EdgeWatch). */
export function policyFor(shape: LegacyShape, schema: string): Record<string, unknown> {
  const t = legacyTable(shape, schema);
  return {
    table: t.qualified,
    timeColumn: t.timeColumn,
    interval: "monthly",
    premake: 3,
    retention: { keep: "12 months" },
    ...(shape === "edgewatch" ? { rollup: {} } : {}),
  };
}

/**
 * Creates the table with `rows` rows spread over the last `days` days. EdgeWatch's legacy
 * telemetry_points: varchar(36) uuid key, FK to devices, unique (device_id, message_id), indexes
 * on (device_id, ts) and (ts). sensor_readings: bigint identity key, FKs to units and devices.
 */
export async function createLegacyTable(
  client: pg.ClientBase | pg.Pool,
  t: LegacyTable,
  rows: number,
  days = 365,
): Promise<void> {
  const s = t.schema;
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
  await client.query(`CREATE TABLE ${s}.devices (id text PRIMARY KEY, name text)`);
  await client.query(`INSERT INTO ${s}.devices (id) SELECT 'dev-' || g FROM generate_series(1, 200) g`);
  const step = (days * 86_400) / Math.max(rows, 1);
  if (t.shape === "edgewatch") {
    await client.query(`
      CREATE TABLE ${s}.telemetry_points (
        id varchar(36) PRIMARY KEY DEFAULT gen_random_uuid()::text,
        device_id text NOT NULL REFERENCES ${s}.devices (id),
        message_id text NOT NULL,
        ts timestamptz NOT NULL,
        metrics jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await client.query(`
      INSERT INTO ${s}.telemetry_points (device_id, message_id, ts, metrics)
      SELECT 'dev-' || (g % 200 + 1), 'm-' || g, now() - g * ${step} * interval '1 second',
             jsonb_build_object('temp', (g % 400) / 10.0, 'rh', g % 100, 'fw', 'v1')
        FROM generate_series(1, ${rows}) g`);
    await client.query(
      `ALTER TABLE ${s}.telemetry_points ADD CONSTRAINT telemetry_points_device_message_key UNIQUE (device_id, message_id)`,
    );
    await client.query(
      `CREATE INDEX telemetry_points_device_ts_idx ON ${s}.telemetry_points (device_id, ts)`,
    );
    await client.query(`CREATE INDEX telemetry_points_ts_idx ON ${s}.telemetry_points (ts)`);
  } else {
    await client.query(`CREATE TABLE ${s}.units (id int PRIMARY KEY, name text)`);
    await client.query(`INSERT INTO ${s}.units (id) SELECT generate_series(1, 20)`);
    await client.query(`
      CREATE TABLE ${s}.sensor_readings (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        unit_id int NOT NULL REFERENCES ${s}.units (id),
        device_id text NOT NULL REFERENCES ${s}.devices (id),
        recorded_at timestamptz NOT NULL,
        value double precision NOT NULL
      )`);
    await client.query(`
      INSERT INTO ${s}.sensor_readings (unit_id, device_id, recorded_at, value)
      SELECT g % 20 + 1, 'dev-' || (g % 200 + 1), now() - g * ${step} * interval '1 second', (g % 1000) / 7.0
        FROM generate_series(1, ${rows}) g`);
    await client.query(
      `CREATE INDEX sensor_readings_device_time_idx ON ${s}.sensor_readings (device_id, recorded_at)`,
    );
  }
  await client.query(`ANALYZE ${t.qualified}`);
}

/** Order-independent checksum of every row (sum of 64-bit hashes of the row's text), and the count. */
export async function tableChecksum(
  client: pg.ClientBase | pg.Pool,
  t: LegacyTable,
  where = "true",
): Promise<{ rows: number; checksum: string }> {
  const r = await client.query(
    `SELECT count(*)::int AS rows, coalesce(sum(hashtextextended(row(${t.columns.join(", ")})::text, 0)::numeric), 0)::text AS checksum
       FROM ${t.qualified} WHERE ${where}`,
  );
  return r.rows[0];
}

export interface WrittenRow {
  key: string;
  device: string;
  time: Date;
  value: number;
}

export interface WriterStats {
  written: WrittenRow[];
  errors: string[];
  latenciesMs: number[];
  startedAt: number;
  stoppedAt: number;
}

export interface Load {
  stop(): Promise<{ writer: WriterStats; reader: { queries: number; errors: string[]; worstMs: number } }>;
}

/**
 * One writer inserting about `rowsPerSecond` single-row INSERTs (half dated now, half up to 300
 * days back) and one reader querying one device's last day, until stop().
 */
export async function startLoad(url: string, t: LegacyTable, rowsPerSecond: number): Promise<Load> {
  const writer = new pg.Client({
    connectionString: url,
    options: "-c TimeZone=UTC",
    application_name: "test-writer",
  });
  const reader = new pg.Client({
    connectionString: url,
    options: "-c TimeZone=UTC",
    application_name: "test-reader",
  });
  writer.on("error", () => {});
  reader.on("error", () => {});
  await writer.connect();
  await reader.connect();
  let running = true;
  const stats: WriterStats = {
    written: [],
    errors: [],
    latenciesMs: [],
    startedAt: Date.now(),
    stoppedAt: 0,
  };
  const insert =
    t.shape === "edgewatch"
      ? `INSERT INTO ${t.qualified} (device_id, message_id, ts, metrics) VALUES ($1, $2, $3, jsonb_build_object('temp', $4::float8)) RETURNING id::text AS key`
      : `INSERT INTO ${t.qualified} (unit_id, device_id, recorded_at, value) VALUES (1, $1, $2, $3) RETURNING id::text AS key`;
  const writing = (async () => {
    for (let i = 0; running; i++) {
      const device = `dev-${(i % 200) + 1}`;
      const time =
        i % 2 === 0
          ? new Date()
          : new Date(Date.now() - ((i * 7919) % 300) * 86_400_000 - (i % 86_400) * 1000);
      const value = i % 1000;
      const params = t.shape === "edgewatch" ? [device, `w-${i}`, time, value] : [device, time, value];
      const started = performance.now();
      try {
        const r = await writer.query(insert, params);
        stats.latenciesMs.push(performance.now() - started);
        stats.written.push({ key: r.rows[0].key, device, time, value });
      } catch (error) {
        stats.latenciesMs.push(performance.now() - started);
        stats.errors.push((error as Error).message);
      }
      const due = stats.startedAt + ((i + 1) * 1000) / rowsPerSecond;
      const ahead = due - Date.now();
      if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
    }
    stats.stoppedAt = Date.now();
  })();
  const readerStats = { queries: 0, errors: [] as string[], worstMs: 0 };
  const reading = (async () => {
    for (let i = 0; running; i++) {
      const started = performance.now();
      try {
        await reader.query(
          `SELECT count(*), max(${t.timeColumn}) FROM ${t.qualified} WHERE device_id = $1 AND ${t.timeColumn} > now() - interval '1 day'`,
          [`dev-${(i % 200) + 1}`],
        );
        readerStats.queries++;
      } catch (error) {
        readerStats.errors.push((error as Error).message);
      }
      readerStats.worstMs = Math.max(readerStats.worstMs, performance.now() - started);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await Promise.all([writing, reading]);
      await writer.end();
      await reader.end();
      return { writer: stats, reader: readerStats };
    },
  };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
