// Cold-tier export against a real PostgreSQL: every supported column type round-trips exactly
// (read back here with hyparquet, value by value against the database's own text), the manifest
// describes the partition, verification passes, and the writer never holds more than one row group.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bigintFromTwosComplement } from "../../shared/cold/checksum.ts";
import { exportPartition, type PartitionToExport } from "../../shared/cold/export.ts";
import { verifyExport } from "../../shared/cold/verify.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

const TABLE = { schema: "public", name: "cold_src" };
const CHILD = { schema: "public", name: "cold_src_2026_01" };
const PARTITION: PartitionToExport = {
  table: TABLE,
  partition: CHILD,
  keyColumn: "time",
  timeColumn: "time",
  from: new Date("2026-01-01T00:00:00Z"),
  to: new Date("2026-02-01T00:00:00Z"),
};

// Edge values per type, inserted by a session whose TimeZone is not UTC (the literals with an
// offset mean the same instant whatever it is; the export must not depend on either zone).
const EDGE_ROWS = `
INSERT INTO public.cold_src VALUES
 (1, '2026-01-01 00:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (2, '2026-01-15 12:34:56.789012+05:30', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, -32768, -9223372036854775808,
     'NaN', 'NaN', '-12345678901234567890.1234567890', '123456789012345678901234567890.000000000000000000001',
     '-99999999999999999999999999999999999999', 'Grüße, 世界 🌍 "quoted" \\ back', '{"emoji": "🌍", "n": 1.000000000000000000001, "deep": {"a": [1, 2, {"b": null}]}}',
     '2026-01-15 12:34:56.789012'),
 (3, '2026-01-31 23:59:59.999999+00', '00000000-0000-0000-0000-000000000000', false, 32767, 9223372036854775807,
     'Infinity', '-Infinity', '0.0000000001', 'NaN', '0', '', '[]', '0001-01-01 00:00:00'),
 (4, '2026-01-20 03:04:05.000001-03:30', 'ffffffff-ffff-ffff-ffff-ffffffffffff', true, 0, 0,
     '-0', '-0', '-0.0000000000', '-0.000', '1', repeat('x', 5000), '"just a string"', 'infinity'),
 (5, '2026-01-02 00:00:00+00', '12345678-1234-5678-1234-567812345678', false, 1, 1,
     '3.4028235e38', '1.7976931348623157e308', '99999999999999999999.9999999999', '1e-30', '12345', 'plain', '{"big": 123456789012345678901234567890}', '2262-04-11 23:47:16.854775'),
 (6, '2026-01-03 00:00:00+00', NULL, NULL, NULL, NULL,
     '1.401298e-45', '5e-324', NULL, '-1e30', NULL, NULL, 'null', '-infinity')`;

async function createSource(td: TestDatabase): Promise<void> {
  await td.pool.query(`
    CREATE TABLE public.cold_src (
      id integer, time timestamptz NOT NULL, device uuid, ok boolean, small smallint, big bigint,
      f4 real, f8 double precision, n_fixed numeric(30,10), n_free numeric, n_38 numeric(38,0),
      note text, doc jsonb, local_ts timestamp
    ) PARTITION BY RANGE (time);
    CREATE TABLE public.cold_src_2026_01 PARTITION OF public.cold_src
      FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00');`);
  const client = new pg.Client({ connectionString: td.url, options: "-c TimeZone=Asia/Kathmandu" });
  await client.connect();
  try {
    await client.query(EDGE_ROWS);
  } finally {
    await client.end();
  }
}

/** Each row as the database prints it, timestamps as epoch microseconds, keyed by id. */
async function databaseRows(td: TestDatabase): Promise<Map<number, Record<string, string | null>>> {
  const micros = (c: string) =>
    `(CASE WHEN ${c} = 'infinity' THEN '9223372036854775807' WHEN ${c} = '-infinity' THEN '-9223372036854775807'
           ELSE ((extract(epoch from ${c}) * 1000000)::int8)::text END) AS ${c}`;
  const result = await td.pool.query(
    `SELECT id, ${micros("time")}, device::text, ok::text, small::text, big::text, f4::text, f8::text,
            n_fixed::text, n_free::text, n_38::text, note, doc::text, ${micros("local_ts")}
       FROM ONLY public.cold_src_2026_01`,
  );
  return new Map(result.rows.map((r) => [Number(r.id), r]));
}

/** The files' rows read back here, independently of verify.ts: raw decimals, bigint timestamps. */
async function fileRows(dir: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for (const name of readdirSync(dir)
    .filter((n) => n.endsWith(".parquet"))
    .sort()) {
    const file = await asyncBufferFromFile(path.join(dir, name));
    const metadata = await parquetMetadataAsync(file);
    const raw = metadata.schema.map((e) =>
      e.converted_type === "DECIMAL" ? { ...e, converted_type: undefined, logical_type: undefined } : e,
    );
    rows.push(
      ...(await parquetReadObjects({
        file,
        metadata: { ...metadata, schema: raw },
        compressors: { ZSTD: (input: Uint8Array) => new Uint8Array(zstdDecompressSync(input)) },
        parsers: { timestampFromMicroseconds: (v: bigint) => v },
      })),
    );
  }
  return rows;
}

function decimalText(bytes: Uint8Array, scale: number): string {
  const v = bigintFromTwosComplement(bytes);
  const digits = (v < 0n ? -v : v).toString().padStart(scale + 1, "0");
  const body = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return v < 0n ? `-${body}` : body;
}

function sameFloat(actual: unknown, text: string | null, single: boolean): boolean {
  if (text === null) return actual === null || actual === undefined;
  const expected = single ? Math.fround(Number(text)) : Number(text);
  return Object.is(actual, expected);
}

describe("cold export", () => {
  let td: TestDatabase;
  let root: string;
  let session: pg.Pool;

  beforeAll(async () => {
    td = await createTestDatabase();
    await createSource(td);
    root = mkdtempSync(path.join(tmpdir(), "cold-export-"));
    // The export's own pool runs in a non-UTC zone with lossy float output set for the role.
    session = new pg.Pool({
      connectionString: td.url,
      options: "-c TimeZone=America/St_Johns -c extra_float_digits=-15",
    });
  });

  afterAll(async () => {
    await session?.end();
    await td?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("round-trips every supported type exactly, NULLs included, and verifies", async () => {
    const result = await exportPartition(session, PARTITION, { root, productVersion: "test" });
    expect(path.relative(root, result.dir)).toBe(
      path.join("public.cold_src", "time_start=2026-01-01T00:00:00Z"),
    );
    const expected = await databaseRows(td);
    const actual = await fileRows(result.dir);
    expect(actual).toHaveLength(expected.size);
    for (const row of actual) {
      const db = expected.get(row.id as number)!;
      const nullable = <T>(v: T) => (v === undefined ? null : v);
      expect(nullable(row.time)?.toString()).toBe(db.time);
      expect(nullable(row.device)).toBe(db.device);
      expect(nullable(row.ok)?.toString() ?? null).toBe(db.ok);
      expect(nullable(row.small)?.toString() ?? null).toBe(db.small);
      expect(nullable(row.big)?.toString() ?? null).toBe(db.big);
      expect(sameFloat(nullable(row.f4), db.f4 ?? null, true)).toBe(true);
      expect(sameFloat(nullable(row.f8), db.f8 ?? null, false)).toBe(true);
      expect(row.n_fixed ? decimalText(row.n_fixed as Uint8Array, 10) : null).toBe(db.n_fixed);
      expect(nullable(row.n_free)).toBe(db.n_free);
      expect(row.n_38 ? decimalText(row.n_38 as Uint8Array, 0) : null).toBe(db.n_38);
      expect(nullable(row.note)).toBe(db.note);
      expect(nullable(row.doc)).toBe(db.doc);
      expect(nullable(row.local_ts)?.toString() ?? null).toBe(db.local_ts);
    }
    // Spot checks against literals, so a shared mistake in both readings cannot hide.
    const byId = new Map(actual.map((r) => [r.id, r]));
    expect(byId.get(2)!.time).toBe(1768460696789012n);
    expect(decimalText(byId.get(2)!.n_fixed as Uint8Array, 10)).toBe("-12345678901234567890.1234567890");
    expect(byId.get(2)!.n_free).toBe("123456789012345678901234567890.000000000000000000001");
    expect(byId.get(2)!.note).toBe('Grüße, 世界 🌍 "quoted" \\ back');
    expect(byId.get(4)!.local_ts).toBe(9223372036854775807n);
    expect(byId.get(6)!.local_ts).toBe(-9223372036854775807n);

    const m = result.manifest;
    expect(m.rows).toBe("6");
    expect(m.time.min?.iso).toBe("2026-01-01T00:00:00Z");
    expect(m.time.max?.iso).toBe("2026-01-31T23:59:59.999999Z");
    expect(m.partition.from.iso).toBe("2026-01-01T00:00:00Z");
    expect(m.partition.to.iso).toBe("2026-02-01T00:00:00Z");
    expect(m.columns.map((c) => c.kind)).toEqual([
      "int32",
      "timestamptz",
      "uuid",
      "boolean",
      "int16",
      "int64",
      "float32",
      "float64",
      "decimal",
      "numeric_text",
      "decimal",
      "text",
      "json",
      "timestamp",
    ]);
    expect(await verifyExport(result.dir, td.pool)).toMatchObject({ ok: true, readBack: { rows: 6n } });
  });

  it("never holds more than one row group, and splits files as asked", async () => {
    await td.pool.query(`
      INSERT INTO public.cold_src (id, time, device, big, f8, n_fixed, note, doc)
      SELECT g, '2026-01-05'::timestamptz + g * interval '1 second', gen_random_uuid(), g::bigint * 1000003,
             g / 7.0, g / 3.0, 'row ' || g, jsonb_build_object('g', g)
        FROM generate_series(100, 2599) AS g`);
    const events: string[] = [];
    const result = await exportPartition(session, PARTITION, {
      root,
      productVersion: "test",
      rowGroup: { rows: 100 },
      rowsPerFile: 1000,
      fetchRows: 333,
      onEvent: (e) => {
        if (e.kind === "row_group") events.push(`${e.file}:${e.rows}`);
      },
    });
    expect(result.maxBufferedRows).toBe(100);
    expect(result.manifest.rows).toBe("2506");
    expect(result.manifest.files.map((f) => [f.name, f.rows])).toEqual([
      ["part-00000.parquet", 1000],
      ["part-00001.parquet", 1000],
      ["part-00002.parquet", 506],
    ]);
    expect(events).toHaveLength(26);
    for (const f of result.manifest.files) {
      const metadata = await parquetMetadataAsync(await asyncBufferFromFile(path.join(result.dir, f.name)));
      expect(metadata.row_groups.every((g) => g.num_rows <= 100n)).toBe(true);
    }
    expect(await verifyExport(result.dir, td.pool)).toMatchObject({ ok: true, readBack: { rows: 2506n } });
  });

  it("exports an empty partition as a manifest with no files, and verifies it", async () => {
    await td.pool.query(`CREATE TABLE public.cold_src_2026_02 PARTITION OF public.cold_src
                           FOR VALUES FROM ('2026-02-01 00:00:00+00') TO ('2026-03-01 00:00:00+00')`);
    const empty = {
      ...PARTITION,
      partition: { schema: "public", name: "cold_src_2026_02" },
      from: new Date("2026-02-01T00:00:00Z"),
      to: new Date("2026-03-01T00:00:00Z"),
    };
    const result = await exportPartition(session, empty, { root, productVersion: "test" });
    expect(result.manifest).toMatchObject({ rows: "0", files: [], time: { min: null, max: null } });
    expect(readdirSync(result.dir)).toEqual(["_manifest.json"]);
    expect(await verifyExport(result.dir, td.pool)).toMatchObject({ ok: true, readBack: { rows: 0n } });
  });

  it("refuses a table with a column named like the Hive partition key, naming it", async () => {
    await td.pool.query(`
      CREATE TABLE public.cold_clash (ts timestamptz NOT NULL, ts_start text) PARTITION BY RANGE (ts);
      CREATE TABLE public.cold_clash_2026_01 PARTITION OF public.cold_clash
        FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00');`);
    const clash = {
      ...PARTITION,
      table: { schema: "public", name: "cold_clash" },
      partition: { schema: "public", name: "cold_clash_2026_01" },
      keyColumn: "ts",
      timeColumn: "ts",
    };
    await expect(exportPartition(session, clash, { root, productVersion: "test" })).rejects.toThrow(
      /column "ts_start" has the name of the cold tier's Hive partition key/,
    );
  });

  it("never creates its root: a missing one (a typo, a bucket not mounted) or a file is refused", async () => {
    const missing = path.join(root, "not-mounted");
    await expect(
      exportPartition(session, PARTITION, { root: missing, productVersion: "test" }),
    ).rejects.toThrow(`${missing} does not exist`);
    expect(existsSync(missing)).toBe(false);
    const file = path.join(root, "a-file");
    writeFileSync(file, "");
    await expect(exportPartition(session, PARTITION, { root: file, productVersion: "test" })).rejects.toThrow(
      `${file} is not a directory`,
    );
    expect(readFileSync(file, "utf8")).toBe("");
  });

  it("exports the starter telemetry table, ingest_xid (xid8) included", async () => {
    await td.pool.query(`
      CREATE TABLE public.telemetry_points_2025_12 PARTITION OF public.telemetry_points
        FOR VALUES FROM ('2025-12-01 00:00:00+00') TO ('2026-01-01 00:00:00+00');
      INSERT INTO public.devices (id) VALUES ('dev-1'), ('dev-2');
      INSERT INTO public.telemetry_points (device_id, message_id, ts, metrics)
      SELECT 'dev-' || (1 + g % 2), 'm' || g, '2025-12-01'::timestamptz + g * interval '1 minute',
             jsonb_build_object('temp', 20 + g % 9, 'ok', g % 3 = 0)
        FROM generate_series(0, 999) AS g;`);
    const result = await exportPartition(
      session,
      {
        table: { schema: "public", name: "telemetry_points" },
        partition: { schema: "public", name: "telemetry_points_2025_12" },
        keyColumn: "ts",
        timeColumn: "ts",
        from: new Date("2025-12-01T00:00:00Z"),
        to: new Date("2026-01-01T00:00:00Z"),
      },
      { root, productVersion: "test" },
    );
    expect(result.manifest.columns.find((c) => c.name === "ingest_xid")?.kind).toBe("xid8");
    expect(result.manifest.time.max?.iso).toBe("2025-12-01T16:39:00Z");
    expect(await verifyExport(result.dir, td.pool)).toMatchObject({ ok: true, readBack: { rows: 1000n } });
  });
});
