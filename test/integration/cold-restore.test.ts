// telemetry-jobs restore against real PostgreSQL: a partition of every supported column type,
// exported with exportPartition and dropped, comes back attached with exactly its rows (count and
// a row-wise md5 computed in SQL, independently of the cold tier's own checksum), NULLs and edge
// values included; --into restores a plain table; an occupied range and a taken name are refused
// (exit 2, nothing written); a tampered file stops the restore (exit 1, nothing attached); a
// writer inserting into the current month meanwhile never fails.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportPartition, type PartitionToExport } from "../../shared/cold/export.ts";
import { type RestoreRequest, runRestore } from "../../shared/cold/restore.ts";
import { EXIT } from "../../shared/config/errors.ts";
import { PolicyFileSchema } from "../../shared/config/policy.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { captureLogger } from "../support/jobs.ts";

const COLUMNS = `ts timestamptz NOT NULL, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real,
  f8 double precision, n numeric(12,3), n38 numeric(38,10), nu numeric, t text, v varchar(40),
  u uuid, j jsonb, js json, tz timestamptz, tw timestamp, x xid8`;

// Edge rows: every column NULL but the key; extremes of each type; unicode; a big jsonb.
const EDGE_ROWS = `
  INSERT INTO public.cold_r (ts) VALUES ('2026-01-01 00:00:00+00');
  INSERT INTO public.cold_r VALUES
   ('2026-01-31 23:59:59.999999+00', true, 32767, 2147483647, 9223372036854775807, 'NaN', 'Infinity',
    999999999.999, 9999999999999999999999999999.9999999999, 'NaN', '', 'ünïcødé ✓ 😀', 
    '00000000-0000-0000-0000-000000000000', '{"a": [1, 2.50, "x\\u00e9y"], "b": null}', '{"k" :  1}',
    'infinity', 'infinity', '9223372036854775807'::xid8),
   ('2026-01-15 12:00:00.000001+00', false, -32768, -2147483648, -9223372036854775808, '-Infinity', '-0',
    -999999999.999, -9999999999999999999999999999.9999999999,
    123456789012345678901234567890.123456789012345678901234567890, E'tab\\tnew\\nline "q" \\\\', 'ẞ',
    'ffffffff-ffff-ffff-ffff-ffffffffffff', '[]', '[ ]', '-infinity', '-infinity', '0'),
   ('2026-01-16 00:00:00+00', null, 0, 0, 0, 1.17549435e-38, 2.2250738585072014e-308, 0.001,
    0.0000000001, -0.000000000000000000001, repeat('long ', 2000), null, null,
    (SELECT jsonb_object_agg('k' || g, repeat('v', 50)) FROM generate_series(1, 5000) g), null,
    '4713-01-01 00:00:00+00 BC', '294000-12-31 23:59:59.999999', null),
   ('2026-01-17 00:00:00+00', true, 1, 1, 1, 3.4028235e38, 1.7976931348623157e308, 1.5, 1.5, 1e-300,
    'x', 'y', gen_random_uuid(), '{"n": 12345678901234567890.123456789}', '"s"',
    '1900-01-01 00:00:00.000001+00', '1969-12-31 23:59:59.999999', '42');`;

const GENERATED_ROWS = `
  INSERT INTO public.cold_r
  SELECT '2026-01-02'::timestamptz + g * interval '3 minutes 7.123457 seconds', g % 2 = 0, (g % 100)::int2,
         g, g::bigint * 1000003, g / 7.0, g / 3.0, g * 1.125, g * 1.0000000001, g / 9.0, 'text ' || g,
         'v' || g, md5(g::text)::uuid, jsonb_build_object('g', g, 'h', g / 3.0),
         json_build_object('g', g), '2026-01-01'::timestamptz - g * interval '1 day 1 microsecond',
         '2000-01-01'::timestamp + g * interval '1 second', g::text::xid8
    FROM generate_series(1, 6000) AS g;`;

const JAN: PartitionToExport = {
  table: { schema: "public", name: "cold_r" },
  partition: { schema: "public", name: "cold_r_p202601" },
  keyColumn: "ts",
  timeColumn: "ts",
  from: new Date("2026-01-01T00:00:00Z"),
  to: new Date("2026-02-01T00:00:00Z"),
};

const POLICY = PolicyFileSchema.parse({
  tables: [
    {
      table: "public.cold_r",
      timeColumn: "ts",
      interval: "monthly",
      lockTimeoutMs: 2000,
      retention: { keep: "90 days" },
    },
  ],
}).tables[0]!;

/** Count and an md5 over every row's text, in SQL, independent of the cold tier's checksum. */
async function fingerprint(td: TestDatabase, relation: string): Promise<{ rows: number; md5: string }> {
  const r = await td.pool.query(
    `SELECT count(*)::int AS rows, md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) AS md5
       FROM (SELECT * FROM ONLY ${relation}) AS r`,
  );
  return r.rows[0];
}

async function relations(td: TestDatabase): Promise<string[]> {
  const r = await td.pool.query(
    `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'inspect') ORDER BY 1`,
  );
  return r.rows.map((row) => row.name);
}

async function boundOf(td: TestDatabase, child: string): Promise<string | null> {
  const r = await td.pool.query(
    `SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_class c WHERE c.oid = $1::regclass AND c.relispartition`,
    [child],
  );
  return r.rows[0]?.bound ?? null;
}

describe("cold restore", () => {
  let td: TestDatabase;
  let work: string;
  let root: string;
  let original: { rows: number; md5: string };

  beforeAll(async () => {
    td = await createTestDatabase();
    await td.pool.query(`
      CREATE TABLE public.cold_r (${COLUMNS}) PARTITION BY RANGE (ts);
      CREATE TABLE public.cold_r_p202601 PARTITION OF public.cold_r
        FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00');
      CREATE TABLE public.cold_r_p202602 PARTITION OF public.cold_r
        FOR VALUES FROM ('2026-02-01 00:00:00+00') TO ('2026-03-01 00:00:00+00');
      CREATE TABLE public.cold_r_default PARTITION OF public.cold_r DEFAULT;
      ${EDGE_ROWS}
      ${GENERATED_ROWS}`);
    original = await fingerprint(td, "public.cold_r_p202601");
    work = mkdtempSync(path.join(tmpdir(), "cold-restore-"));
    root = path.join(work, "root");
    mkdirSync(root); // the export never creates its root
    await exportPartition(td.pool, JAN, {
      root,
      productVersion: "test",
      rowsPerFile: 2500,
      rowGroup: { rows: 700 },
    });
    // What retention's export mode does after a verified export.
    await td.pool.query(`ALTER TABLE public.cold_r DETACH PARTITION public.cold_r_p202601;
      DROP TABLE public.cold_r_p202601; CREATE SCHEMA inspect;`);
  });

  afterAll(async () => {
    await td?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function restore(overrides: Partial<RestoreRequest>) {
    const { log, records } = captureLogger("restore");
    const request: RestoreRequest = {
      policy: POLICY,
      root,
      select: { partition: "cold_r_p202601" },
      dryRun: false,
      now: new Date("2026-06-01T00:00:00Z"),
      ...overrides,
    };
    const code = await runRestore(td.db, request, log, new AbortController().signal);
    return { code, records, messages: records.map((r) => `${r.severity} ${r.message}`) };
  }

  it("the export holds every edge row", () => {
    expect(original.rows).toBe(6005);
  });

  it("--dry-run verifies and says what it would do, writing nothing", async () => {
    const before = await relations(td);
    const run = await restore({ dryRun: true });
    expect(run.code).toBe(EXIT.ok);
    expect(run.messages.join("\n")).toContain("dry run, nothing written: restore: load 6005 rows");
    expect(await relations(td)).toEqual(before);
  });

  it("--into restores a plain table with identical rows, and refuses when it exists", async () => {
    const run = await restore({ into: "inspect" });
    expect(run.code, run.messages.join("\n")).toBe(EXIT.ok);
    expect(await fingerprint(td, "inspect.cold_r_p202601")).toEqual(original);
    expect(await boundOf(td, "inspect.cold_r_p202601")).toBeNull();
    const before = await relations(td);
    const again = await restore({ into: "inspect" });
    expect(again.code).toBe(EXIT.usage);
    expect(again.messages.join("\n")).toMatch(/inspect\.cold_r_p202601 already exists/);
    expect(await relations(td)).toEqual(before);
  });

  it("a tampered file stops the restore: exit 1, nothing attached, no staging table", async () => {
    const bad = path.join(work, "tampered");
    cpSync(root, bad, { recursive: true });
    const dir = path.join(bad, "public.cold_r", "ts_start=2026-01-01T00:00:00Z");
    const file = path.join(dir, "part-00001.parquet");
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    writeFileSync(file, bytes);
    const before = await relations(td);
    const run = await restore({ root: bad });
    expect(run.code).toBe(EXIT.failed);
    expect(run.messages.join("\n")).toMatch(/ERROR restore stopped: the export .* does not verify/);
    expect(await relations(td)).toEqual(before);
  });

  it("rows the database loads differently from the manifest stop the restore: exit 1, staging dropped", async () => {
    // Files that verify but rows that arrive changed: a trigger that an event trigger puts on
    // every new staging table alters one column of each row as it is inserted.
    await td.pool.query(`
      CREATE FUNCTION public.alter_row() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN NEW.t := NEW.t || '!'; RETURN NEW; END $$;
      CREATE FUNCTION public.on_create() RETURNS event_trigger LANGUAGE plpgsql AS $$
        DECLARE r record;
        BEGIN
          FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
            IF r.object_identity LIKE '%tj_restore_%' THEN
              EXECUTE format('CREATE TRIGGER alter_row BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.alter_row()', r.object_identity);
            END IF;
          END LOOP;
        END $$;
      CREATE EVENT TRIGGER restore_alter ON ddl_command_end EXECUTE FUNCTION public.on_create();`);
    try {
      const before = await relations(td);
      const run = await restore({});
      expect(run.code).toBe(EXIT.failed);
      expect(run.messages.join("\n")).toMatch(
        /ERROR restore stopped: the loaded rows differ from the manifest \(loaded 6005 rows \(checksum -?\d+.*Nothing was attached/,
      );
      expect(await relations(td)).toEqual(before);
    } finally {
      await td.pool.query(
        `DROP EVENT TRIGGER restore_alter; DROP FUNCTION public.on_create(); DROP FUNCTION public.alter_row();`,
      );
    }
  });

  it("restores the partition attached, by --from, with identical rows; the hold command is printed", async () => {
    // Every table the restore creates, by oid: the partition must be the loaded table itself.
    await td.pool.query(`
      CREATE TABLE public.created (oid oid, identity text);
      CREATE FUNCTION public.note_created() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO public.created SELECT objid, object_identity FROM pg_event_trigger_ddl_commands()
           WHERE command_tag = 'CREATE TABLE';
        END $$;
      CREATE EVENT TRIGGER note_created ON ddl_command_end EXECUTE FUNCTION public.note_created();`);
    let run: Awaited<ReturnType<typeof restore>>;
    let created: { identity: string; partition: boolean }[];
    try {
      run = await restore({ select: { from: new Date("2026-01-01T00:00:00Z") } });
      created = (
        await td.pool.query(
          `SELECT identity, oid = 'public.cold_r_p202601'::regclass AS partition FROM public.created`,
        )
      ).rows;
    } finally {
      await td.pool.query(`DROP EVENT TRIGGER note_created; DROP FUNCTION public.note_created();
        DROP TABLE public.created;`);
    }
    expect(run.code, run.messages.join("\n")).toBe(EXIT.ok);
    // One table made and loaded under the staging name, attached in place: no second copy.
    expect(created).toEqual([{ identity: expect.stringMatching(/^public\.tj_restore_/), partition: true }]);
    const made = await td.pool.query(
      `SELECT obj_description('public.cold_r_p202601'::regclass, 'pg_class') AS comment,
              (SELECT convalidated FROM pg_constraint WHERE conrelid = 'public.cold_r_p202601'::regclass
                  AND conname = 'telemetry_jobs_bound') AS check_valid`,
    );
    expect(made.rows[0]).toEqual({
      comment: expect.stringMatching(
        /^telemetry-jobs restore: public\.cold_r partition cold_r_p202601 \[2026-01-01T00:00:00\.000Z, 2026-02-01T00:00:00\.000Z\) from /,
      ),
      check_valid: true,
    });
    expect(await boundOf(td, "public.cold_r_p202601")).toBe(
      "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')",
    );
    expect(await fingerprint(td, "public.cold_r_p202601")).toEqual(original);
    expect(run.messages.join("\n")).toContain(
      "telemetry-jobs hold public.cold_r_p202601 --until 2026-07-01 --reason 'restored from the cold tier'",
    );
    const left = await relations(td);
    expect(left.filter((name) => name.includes("tj_restore_"))).toEqual([]);
  });

  it("refuses an occupied range (exit 2), writing nothing", async () => {
    const before = await relations(td);
    const run = await restore({});
    expect(run.code).toBe(EXIT.usage);
    expect(run.messages.join("\n")).toMatch(
      /covered by the live partition public\.cold_r_p202601 .*which holds rows/,
    );
    expect(await relations(td)).toEqual(before);
    expect(await fingerprint(td, "public.cold_r_p202601")).toEqual(original);
  });
});

describe("cold restore beside a writer", () => {
  let td: TestDatabase;
  let work: string;

  beforeAll(async () => {
    td = await createTestDatabase();
    await td.pool.query(`
      CREATE TABLE public.cold_r (${COLUMNS}) PARTITION BY RANGE (ts);
      CREATE TABLE public.cold_r_p202601 PARTITION OF public.cold_r
        FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00');
      CREATE TABLE public.cold_r_p202606 PARTITION OF public.cold_r
        FOR VALUES FROM ('2026-06-01 00:00:00+00') TO ('2026-07-01 00:00:00+00');
      CREATE TABLE public.cold_r_default PARTITION OF public.cold_r DEFAULT;
      ${GENERATED_ROWS}`);
    work = mkdtempSync(path.join(tmpdir(), "cold-restore-w-"));
    await exportPartition(td.pool, JAN, { root: work, productVersion: "test", rowGroup: { rows: 300 } });
    await td.pool.query(`ALTER TABLE public.cold_r DETACH PARTITION public.cold_r_p202601;
      DROP TABLE public.cold_r_p202601;`);
  });

  afterAll(async () => {
    await td?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("a writer inserting into the current month during the restore never fails; DEFAULT's rows of the range join the partition", async () => {
    // Late rows of the exported month, routed to DEFAULT after the partition was dropped.
    await td.pool.query(
      `INSERT INTO public.cold_r (ts, t) VALUES ('2026-01-20 00:00:00+00', 'late'), ('2026-01-21 00:00:00+00', 'late')`,
    );
    let stop = false;
    let inserted = 0;
    const failures: string[] = [];
    const writer = (async () => {
      while (!stop) {
        try {
          await td.pool.query(`INSERT INTO public.cold_r (ts, t) VALUES ('2026-06-15 12:00:00+00', 'live')`);
          inserted++;
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    })();
    const { log, records } = captureLogger("restore");
    const code = await runRestore(
      td.db,
      {
        policy: POLICY,
        root: work,
        select: { partition: "cold_r_p202601" },
        dryRun: false,
        now: new Date("2026-06-15T12:00:00Z"),
      },
      log,
      new AbortController().signal,
    );
    // A few more inserts after the attach, so the writer also runs against the new partition list.
    const after = inserted;
    while (inserted < after + 20 && failures.length === 0) await new Promise((r) => setTimeout(r, 5));
    stop = true;
    await writer;
    expect(code, records.map((r) => r.message).join("\n")).toBe(EXIT.ok);
    expect(failures).toEqual([]);
    expect(after).toBeGreaterThan(0);
    const r = await td.pool.query(
      `SELECT (SELECT count(*)::int FROM ONLY public.cold_r_p202601) AS restored,
              (SELECT count(*)::int FROM ONLY public.cold_r_p202606) AS live`,
    );
    expect(r.rows[0]).toEqual({ restored: 6002, live: inserted });
    const late = await td.pool.query(
      `SELECT (SELECT count(*)::int FROM ONLY public.cold_r_default) AS in_default,
              (SELECT count(*)::int FROM ONLY public.cold_r_p202601 WHERE t = 'late') AS moved`,
    );
    expect(late.rows[0]).toEqual({ in_default: 0, moved: 2 });
    expect(records.map((l) => l.message).join("\n")).toContain(
      "with the 2 rows of that range now in DEFAULT",
    );
  });
});
