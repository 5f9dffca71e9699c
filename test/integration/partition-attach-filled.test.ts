// The partition library's entry point for a table that already holds rows (attachFilledTable):
// the bound CHECK and the parent's foreign keys are added NOT VALID and validated on the table
// (so the ATTACH checks no row while it holds the parent), then the library's own attach
// (DEFAULT's rows of the range moved in, ATTACH under lock_timeout) renames it to the partition's
// name. A leftover of each step is finished by the next call; a row outside the range, or one
// without its referenced row, stops it before the parent is touched; a taken name refuses, except
// an empty partition of exactly the range when asked (replaceEmpty), which the table replaces.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PolicyFileSchema } from "../../shared/config/policy.ts";
import { attachFilledTable } from "../../shared/partitions/attach-filled.ts";
import { readCatalog } from "../../shared/partitions/catalog.ts";
import { likeParent } from "../../shared/partitions/standalone.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { captureLogger } from "../support/jobs.ts";

const POLICY = PolicyFileSchema.parse({
  tables: [
    { table: "public.af", timeColumn: "ts", interval: "monthly", lockTimeoutMs: 500, retryBudgetMs: 5000 },
  ],
}).tables[0]!;
const TABLE = { schema: "public", name: "af" };
const FILLED = { schema: "public", name: "af_filled" };
const JAN = { from: new Date("2026-01-01T00:00:00Z"), to: new Date("2026-02-01T00:00:00Z") };

describe("attachFilledTable", () => {
  let td: TestDatabase;

  async function attach(options: { replaceEmpty?: boolean } = {}) {
    const { log, records } = captureLogger("test");
    const catalog = await readCatalog(td.db, TABLE, "ts", "monthly");
    const outcome = attachFilledTable(
      { db: td.db, policy: POLICY, catalog, log, now: new Date("2026-06-15T00:00:00Z") },
      { table: FILLED, partition: "af_p202601", ...JAN, comment: "restored", ...options },
    );
    return { outcome: await outcome, records };
  }

  async function state() {
    const r = await td.pool.query(
      `SELECT (SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = to_regclass('public.af_p202601')) AS bound,
              to_regclass('public.af_filled') IS NOT NULL AS filled,
              (SELECT count(*)::int FROM public.af WHERE ts < '2026-02-01') AS jan,
              (SELECT count(*)::int FROM ONLY public.af_default) AS in_default,
              obj_description(to_regclass('public.af_p202601'), 'pg_class') AS comment,
              (SELECT convalidated FROM pg_constraint WHERE conname = 'telemetry_jobs_bound'
                  AND conrelid = coalesce(to_regclass('public.af_p202601'), to_regclass('public.af_filled'))) AS check_valid`,
    );
    return r.rows[0];
  }

  beforeAll(async () => {
    td = await createTestDatabase();
  });

  beforeEach(async () => {
    await td.pool.query(`DROP TABLE IF EXISTS public.af, public.af_filled, public.af_ref;
      CREATE TABLE public.af_ref (v int PRIMARY KEY);
      INSERT INTO public.af_ref SELECT g FROM generate_series(-1, 1000) g;
      CREATE TABLE public.af (id bigint GENERATED ALWAYS AS IDENTITY, ts timestamptz NOT NULL,
          v int CONSTRAINT af_v_fk REFERENCES public.af_ref (v))
        PARTITION BY RANGE (ts);
      CREATE INDEX ON public.af (ts);
      CREATE TABLE public.af_p202606 PARTITION OF public.af FOR VALUES FROM ('2026-06-01Z') TO ('2026-07-01Z');
      CREATE TABLE public.af_default PARTITION OF public.af DEFAULT;
      INSERT INTO public.af (ts, v) VALUES ('2026-01-20Z', -1);`);
    const like = likeParent(TABLE).compile(td.db).sql;
    await td.pool.query(`CREATE TABLE public.af_filled ${like};
      INSERT INTO public.af_filled (id, ts, v)
      SELECT g, '2026-01-01Z'::timestamptz + g * interval '1 minute', g FROM generate_series(1, 1000) g;`);
  });

  afterAll(async () => {
    await td?.drop();
  });

  it("attaches the rows in place under the partition's name, with DEFAULT's rows of the range", async () => {
    const { outcome } = await attach();
    expect(outcome).toEqual({ rows: 1, lockRetries: 0, alreadyDone: false });
    expect(await state()).toEqual({
      bound: "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')",
      filled: false,
      jan: 1001,
      in_default: 0,
      comment: "restored",
      check_valid: true,
    });
  });

  it("finishes after a NOT VALID CHECK or a valid one was left by a killed call", async () => {
    await td.pool.query(`ALTER TABLE public.af_filled ADD CONSTRAINT telemetry_jobs_bound
      CHECK (ts IS NOT NULL AND ts >= '2026-01-01Z' AND ts < '2026-02-01Z') NOT VALID`);
    expect((await state()).check_valid).toBe(false);
    await attach();
    expect(await state()).toMatchObject({ filled: false, jan: 1001, check_valid: true });
  });

  it("the parent's foreign key is validated on the table before the attach, which adopts it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "attach-filled-"));
    const resume = path.join(dir, "resume");
    process.env.TELEMETRY_JOBS_FAULT_PAUSE = "after-create-table:validated";
    process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE = resume;
    const valid = (rel: string) =>
      td.pool.query(
        `SELECT conname::text AS name, convalidated AS valid, conparentid <> 0 AS inherited FROM pg_constraint
          WHERE conrelid = $1::regclass AND contype IN ('c', 'f') ORDER BY 1`,
        [rel],
      );
    try {
      const { log, records } = captureLogger("test");
      const catalog = await readCatalog(td.db, TABLE, "ts", "monthly");
      const running = attachFilledTable(
        { db: td.db, policy: POLICY, catalog, log, now: new Date("2026-06-15T00:00:00Z") },
        { table: FILLED, partition: "af_p202601", ...JAN, comment: null },
      );
      while (!records.some((r) => r.message === "paused at fault point"))
        await new Promise((r) => setTimeout(r, 5));
      // Both validated while the table is still standalone: the ATTACH has nothing left to check.
      expect((await valid("public.af_filled")).rows).toEqual([
        { name: "af_v_fk", valid: true, inherited: false },
        { name: "telemetry_jobs_bound", valid: true, inherited: false },
      ]);
      writeFileSync(resume, "");
      await running;
    } finally {
      delete process.env.TELEMETRY_JOBS_FAULT_PAUSE;
      delete process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE;
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await valid("public.af_p202601")).rows).toEqual([
      { name: "af_v_fk", valid: true, inherited: true },
      { name: "telemetry_jobs_bound", valid: true, inherited: false },
    ]);
  });

  it("a row without its referenced row stops it before the parent is touched", async () => {
    await td.pool.query(`INSERT INTO public.af_filled (id, ts, v) VALUES (0, '2026-01-02Z', 5000)`);
    await expect(attach()).rejects.toThrow(/af_v_fk/);
    expect(await state()).toMatchObject({ bound: null, filled: true, jan: 1, in_default: 1 });
  });

  it("a row outside the range stops it before the parent is touched", async () => {
    await td.pool.query(`INSERT INTO public.af_filled (id, ts, v) VALUES (0, '2026-02-01Z', 0)`);
    await expect(attach()).rejects.toThrow(/telemetry_jobs_bound.*violated/);
    expect(await state()).toMatchObject({
      bound: null,
      filled: true,
      jan: 1,
      in_default: 1,
      check_valid: false,
    });
  });

  it("takes the place of an empty partition of exactly the range only when asked, never of one with rows", async () => {
    // What partition-manager's gap filling makes between two partitions: an empty one.
    await td.pool.query(`DELETE FROM public.af WHERE ts < '2026-02-01Z';
      CREATE TABLE public.af_p202601 PARTITION OF public.af FOR VALUES FROM ('2026-01-01Z') TO ('2026-02-01Z')`);
    await expect(attach()).rejects.toThrow(/public\.af_p202601 already exists/);
    await td.pool.query("INSERT INTO public.af (ts, v) VALUES ('2026-01-21Z', 1)");
    await expect(attach({ replaceEmpty: true })).rejects.toThrow(/holds rows now; it was not replaced/);
    await td.pool.query("DELETE FROM public.af WHERE ts < '2026-02-01Z'");
    await attach({ replaceEmpty: true });
    expect(await state()).toMatchObject({
      bound: "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')",
      filled: false,
      jan: 1000,
      comment: "restored",
      check_valid: true,
    });
  });

  it("refuses when the partition's name is taken, leaving both tables", async () => {
    await td.pool.query("CREATE TABLE public.af_p202601 (x int)");
    await expect(attach()).rejects.toThrow(/public\.af_p202601 already exists/);
    const r = await td.pool.query("SELECT to_regclass('public.af_filled') IS NOT NULL AS filled");
    expect(r.rows[0].filled).toBe(true);
    await td.pool.query("DROP TABLE public.af_p202601");
  });
});
