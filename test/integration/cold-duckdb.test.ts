// An independent reader, DuckDB (its own Parquet implementation, in C++), reads an exported
// partition through the Hive layout and sees exactly the partition's rows: the column types the
// schema map promises, count, min/max time, sums of the numeric columns, and every value of every
// row as PostgreSQL prints it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportPartition, type PartitionToExport } from "../../shared/cold/export.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

const PARTITION: PartitionToExport = {
  table: { schema: "public", name: "cold_duck" },
  partition: { schema: "public", name: "cold_duck_2026_04" },
  keyColumn: "ts",
  timeColumn: "ts",
  from: new Date("2026-04-01T00:00:00Z"),
  to: new Date("2026-05-01T00:00:00Z"),
};

async function duckdbRows(sql: string): Promise<unknown[][]> {
  const instance = await DuckDBInstance.create(":memory:");
  const connection = await instance.connect();
  try {
    return (await connection.runAndReadAll(sql)).getRowsJS() as unknown[][];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

describe("cold export read by DuckDB", () => {
  let td: TestDatabase;
  let root: string;
  let glob: string;

  beforeAll(async () => {
    td = await createTestDatabase();
    await td.pool.query(`
      CREATE TABLE public.cold_duck (
        id integer, ts timestamptz NOT NULL, device uuid, ok boolean, small smallint, big bigint,
        f4 real, f8 double precision, amount numeric(30,10), free numeric, note text, doc jsonb
      ) PARTITION BY RANGE (ts);
      CREATE TABLE public.cold_duck_2026_04 PARTITION OF public.cold_duck
        FOR VALUES FROM ('2026-04-01 00:00:00+00') TO ('2026-05-01 00:00:00+00');
      INSERT INTO public.cold_duck VALUES
        (0, '2026-04-01 00:00:00.000001+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (1, '2026-04-30 23:59:59.999999+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, -32768,
            -9223372036854775807, 'Infinity', 'NaN', '-12345678901234567890.1234567890',
            '123456789012345678901234567890.000000000000000000001', 'Grüße, 世界 🌍', '{"emoji": "🌍", "n": 1.5}');
      INSERT INTO public.cold_duck
      SELECT g, '2026-04-02'::timestamptz + g * interval '61 seconds', gen_random_uuid(), g % 2 = 0, g % 300,
             g::bigint * 7919, g / 8.0, g / 3.0, g / 7.0, g * 1.5, 'row ' || g, jsonb_build_object('g', g)
        FROM generate_series(2, 3001) AS g;`);
    root = mkdtempSync(path.join(tmpdir(), "cold-duckdb-"));
    await exportPartition(td.pool, PARTITION, { root, productVersion: "test", rowsPerFile: 1000 });
    glob = path.join(root, "public.cold_duck", "*", "*.parquet");
  });

  afterAll(async () => {
    await td?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("reads the promised column types, and the Hive key beside the rows' own ts", async () => {
    const described = await duckdbRows(
      `DESCRIBE SELECT * FROM read_parquet('${glob}', hive_partitioning = true)`,
    );
    expect(described.map((r) => [r[0], r[1]])).toEqual([
      ["id", "INTEGER"],
      ["ts", "TIMESTAMP WITH TIME ZONE"],
      ["device", "VARCHAR"],
      ["ok", "BOOLEAN"],
      ["small", "SMALLINT"],
      ["big", "BIGINT"],
      ["f4", "FLOAT"],
      ["f8", "DOUBLE"],
      ["amount", "DECIMAL(30,10)"],
      ["free", "VARCHAR"],
      ["note", "VARCHAR"],
      ["doc", "VARCHAR"],
      ["ts_start", "TIMESTAMP"],
    ]);
    const [row] = await duckdbRows(
      `SELECT count(DISTINCT ts_start), min(ts_start)::VARCHAR FROM read_parquet('${glob}', hive_partitioning = true)`,
    );
    expect(row).toEqual([1n, "2026-04-01 00:00:00"]);
  });

  it("sees the partition's count, time range and numeric sums exactly", async () => {
    const pg = await td.pool.query(
      `SELECT count(*)::text AS n, ((extract(epoch from min(ts)) * 1000000)::int8)::text AS min,
              ((extract(epoch from max(ts)) * 1000000)::int8)::text AS max,
              sum(amount)::text AS amount, sum(big)::text AS big, sum(small)::text AS small
         FROM ONLY public.cold_duck_2026_04`,
    );
    const [duck] = await duckdbRows(
      `SELECT count(*)::VARCHAR, epoch_us(min(ts))::VARCHAR, epoch_us(max(ts))::VARCHAR,
              sum(amount)::VARCHAR, sum(big)::VARCHAR, sum(small)::VARCHAR
         FROM read_parquet('${glob}')`,
    );
    const p = pg.rows[0];
    expect(duck).toEqual([p.n, p.min, p.max, p.amount, p.big, p.small]);
    expect(p.n).toBe("3002");
  });

  it("sees every value of every row as PostgreSQL prints it", async () => {
    const pg = await td.pool.query(
      `SELECT id, ((extract(epoch from ts) * 1000000)::int8)::text AS ts, device::text, ok::text, small::text,
              big::text, f4::text, f8::text, amount::text, free::text, note, doc::text
         FROM ONLY public.cold_duck_2026_04 ORDER BY id`,
    );
    const duck = await duckdbRows(
      `SELECT id, epoch_us(ts)::VARCHAR, device, ok::VARCHAR, small::VARCHAR, big::VARCHAR, f4, f8,
              amount::VARCHAR, free, note, doc
         FROM read_parquet('${glob}') ORDER BY id`,
    );
    expect(duck).toHaveLength(pg.rows.length);
    pg.rows.forEach((r, i) => {
      const d = duck[i]!;
      const float = (text: string | null, single: boolean) =>
        text === null ? null : single ? Math.fround(Number(text)) : Number(text);
      expect([d[0], d[1], d[2], d[3], d[4], d[5]]).toEqual([r.id, r.ts, r.device, r.ok, r.small, r.big]);
      expect(Object.is(d[6], float(r.f4, true)) && Object.is(d[7], float(r.f8, false))).toBe(true);
      expect([d[8], d[9], d[10], d[11]]).toEqual([r.amount, r.free, r.note, r.doc]);
    });
  });
});
