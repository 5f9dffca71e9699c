// SIGKILL telemetry-jobs restore (a real process) at each point where it leaves something behind:
// mid-load (a partly filled staging table), after the partition library added the bound CHECK
// NOT VALID to the loaded table, after it validated it, and inside the attach transaction (the
// partition not yet there for readers); and, left by partition-manager, the empty table it leaves
// under the partition's name when it is killed and an empty partition of the range (its gap
// filling). Each time, the same command run again finishes the restore with exactly the exported
// rows. The kills are placed by locks the test holds or by the
// library's fault point, not by timing.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { exportPartition } from "../../shared/cold/export.ts";
import { stagingRelation } from "../../shared/cold/restore-load.ts";
import { quoteRelation } from "../../shared/db/quote.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type CliRun, runCli, startCli } from "../support/jobs.ts";

const ROWS = 15_000;
/** The policy names the export root (retention's export.to): the command finds the files there. */
const policy = (root: string) =>
  JSON.stringify({
    tables: [
      {
        table: "public.cold_k",
        timeColumn: "ts",
        interval: "monthly",
        lockTimeoutMs: 60_000,
        retention: { keep: "90 days", mode: "export", export: { to: root } },
      },
    ],
  });

describe("cold restore killed", () => {
  let td: TestDatabase;
  let work: string;
  let staging: string;
  let original: { rows: number; md5: string };
  let locker: pg.PoolClient;
  const args = () => ["restore", "--table", "public.cold_k", "--partition", "cold_k_p202601"];
  const env = () => ({ DATABASE_URL: td.url, TELEMETRY_JOBS_CONFIG_JSON: policy(work) });

  async function fingerprint(): Promise<{ rows: number; md5: string }> {
    const r = await td.pool.query(
      `SELECT count(*)::int AS rows, md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) AS md5
         FROM (SELECT * FROM ONLY public.cold_k_p202601) AS r`,
    );
    return r.rows[0];
  }

  async function state() {
    const r = await td.pool.query(
      `SELECT to_regclass($1) IS NOT NULL AS staging,
              (SELECT relispartition FROM pg_class WHERE oid = to_regclass('public.cold_k_p202601')) AS attached`,
      [staging],
    );
    return r.rows[0] as { staging: boolean; attached: boolean | null };
  }

  async function killed(run: CliRun) {
    run.child.kill("SIGKILL");
    expect((await run.done).signal).toBe("SIGKILL");
  }

  async function restoresAgain() {
    const again = await runCli(args(), env());
    expect(again.code, again.lines.map((l) => l.message).join("\n") + again.stderr).toBe(0);
    expect(await fingerprint()).toEqual(original);
    expect(await state()).toEqual({ staging: false, attached: true });
  }

  beforeAll(async () => {
    td = await createTestDatabase();
    await td.pool.query(`
      CREATE TABLE public.cold_k (ts timestamptz NOT NULL, device int, reading double precision, note text)
        PARTITION BY RANGE (ts);
      CREATE TABLE public.cold_k_p202601 PARTITION OF public.cold_k
        FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00');
      INSERT INTO public.cold_k
      SELECT '2026-01-01'::timestamptz + g * interval '2 minutes', g % 50, g / 7.0, 'n' || g
        FROM generate_series(1, ${ROWS}) AS g;`);
    original = await fingerprint();
    work = mkdtempSync(path.join(tmpdir(), "cold-restore-kill-"));
    const exported = await exportPartition(
      td.pool,
      {
        table: { schema: "public", name: "cold_k" },
        partition: { schema: "public", name: "cold_k_p202601" },
        keyColumn: "ts",
        timeColumn: "ts",
        from: new Date("2026-01-01T00:00:00Z"),
        to: new Date("2026-02-01T00:00:00Z"),
      },
      { root: work, productVersion: "test", rowGroup: { rows: 500 } },
    );
    staging = quoteRelation(stagingRelation("public", exported.manifest));
    locker = await td.pool.connect();
  });

  beforeEach(async () => {
    // What retention does after a verified export.
    await td.pool.query(`ALTER TABLE public.cold_k DETACH PARTITION public.cold_k_p202601;
      DROP TABLE public.cold_k_p202601;`);
  });

  afterAll(async () => {
    locker?.release();
    await td?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("mid-load: leaves only a partly filled staging table, which the next restore replaces", async () => {
    const run = startCli(args(), env());
    await run.waitFor("restore: loaded a row group");
    // SHARE conflicts with the load's inserts: the next one waits for us, and the kill finds it there.
    await locker.query("BEGIN");
    await locker.query(`LOCK TABLE ${staging} IN SHARE MODE`);
    const partial = (await locker.query(`SELECT count(*)::int AS n FROM ${staging}`)).rows[0].n;
    await killed(run);
    await locker.query("ROLLBACK");
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(ROWS);
    expect(await state()).toEqual({ staging: true, attached: null });
    await restoresAgain();
  });

  async function staged() {
    const r = await td.pool.query(
      `SELECT count(*)::int AS rows,
              (SELECT convalidated FROM pg_constraint
                WHERE conrelid = $1::regclass AND conname = 'telemetry_jobs_bound') AS check_valid
         FROM ${staging}`,
      [staging],
    );
    return r.rows[0] as { rows: number; check_valid: boolean | null };
  }

  it("after the library's NOT VALID CHECK on the loaded table: the next restore replaces it", async () => {
    const run = startCli(args(), { ...env(), TELEMETRY_JOBS_FAULT_PAUSE: "after-create-table:not-valid" });
    await run.waitFor("paused at fault point", 60_000);
    await killed(run);
    expect(await state()).toEqual({ staging: true, attached: null });
    expect(await staged()).toEqual({ rows: ROWS, check_valid: false });
    await restoresAgain();
  });

  it("after the CHECK was validated, before the attach: the next restore replaces it", async () => {
    const run = startCli(args(), { ...env(), TELEMETRY_JOBS_FAULT_PAUSE: "after-create-table:validated" });
    await run.waitFor("paused at fault point", 60_000);
    await killed(run);
    expect(await state()).toEqual({ staging: true, attached: null });
    expect(await staged()).toEqual({ rows: ROWS, check_valid: true });
    await restoresAgain();
  });

  it("inside the attach transaction: readers never see the partition; the next restore attaches it", async () => {
    // SHARE UPDATE EXCLUSIVE on the parent lets the load, the digest and the validation run, and
    // keeps the attach transaction (which takes the same lock first) waiting.
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE ONLY public.cold_k IN SHARE UPDATE EXCLUSIVE MODE");
    const run = startCli(args(), env());
    for (;;) {
      const w = await td.pool.query(
        `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = 'public.cold_k'::regclass`,
      );
      if (w.rows[0].n > 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const seen = await td.pool.query("SELECT count(*)::int AS n FROM public.cold_k");
    await killed(run);
    await locker.query("ROLLBACK");
    expect(seen.rows[0].n).toBe(0);
    expect(await state()).toEqual({ staging: true, attached: null });
    expect(await staged()).toEqual({ rows: ROWS, check_valid: true });
    await restoresAgain();
  });

  it("an empty table the partition library left under the partition's name is dropped first", async () => {
    // What partition-manager (or an earlier version's restore) leaves when killed between making a
    // partition-to-be and attaching it.
    await td.pool.query(`CREATE TABLE public.cold_k_p202601 (LIKE public.cold_k INCLUDING ALL);
      ALTER TABLE public.cold_k_p202601 ADD CONSTRAINT telemetry_jobs_bound
        CHECK (ts IS NOT NULL AND ts >= '2026-01-01Z' AND ts < '2026-02-01Z');`);
    expect(await state()).toEqual({ staging: false, attached: false });
    await restoresAgain();
  });

  it("an empty partition of the range (partition-manager's gap filling) is replaced by the restored one", async () => {
    await td.pool.query(`CREATE TABLE public.cold_k_p202601 PARTITION OF public.cold_k
      FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')`);
    const before = await td.pool.query("SELECT 'public.cold_k_p202601'::regclass::oid AS oid");
    await restoresAgain();
    const after = await td.pool.query("SELECT 'public.cold_k_p202601'::regclass::oid AS oid");
    expect(after.rows[0].oid).not.toBe(before.rows[0].oid);
  });

  it("a live partition of the range that is itself partitioned, with rows, is refused; its rows stay", async () => {
    // Its rows are in its own partitions: read FROM ONLY it looked empty, was "replaced", and its
    // DROP took its partitions and their rows with it.
    await td.pool.query(`CREATE TABLE public.cold_k_p202601 PARTITION OF public.cold_k
        FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00') PARTITION BY LIST (device);
      CREATE TABLE public.cold_k_p202601_any PARTITION OF public.cold_k_p202601 DEFAULT;
      INSERT INTO public.cold_k VALUES ('2026-01-05Z', 1, 1.5, 'live');`);
    const run = await runCli(args(), env());
    expect(run.code, run.lines.map((l) => l.message).join("\n") + run.stderr).toBe(2);
    expect(run.lines.map((l) => l.message).join("\n")).toMatch(/which holds rows/);
    const live = await td.pool.query(`SELECT count(*)::int AS n FROM public.cold_k WHERE note = 'live'`);
    expect(live.rows[0].n).toBe(1);
  });

  it("a further restore of the now occupied range is refused with exit 2", async () => {
    await restoresAgain();
    const run = await runCli(args(), env());
    expect(run.code).toBe(2);
    expect(run.lines.map((l) => l.message).join("\n")).toMatch(
      /restore refused: .*covered by the live partition/,
    );
    expect(await state()).toEqual({ staging: false, attached: true });
  });
});
