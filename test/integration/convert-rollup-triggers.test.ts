// `migrate convert` on a table rollup-hourly already tracks: once `prepare` adds ingest_xid, the
// next rollup-hourly run installs its UPDATE and DELETE change triggers (telemetry_jobs_rollup_*)
// on the old plain table. The swap must not refuse the table for them (from the CHECK until the
// swap, rows dated at or after the boundary are rejected), and no UPDATE or DELETE may go
// unrecorded: the swap moves the triggers to the partitioned parent in its own transaction, and
// revert moves them back. Every other trigger still blocks.
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runCli, runRollup, startCli } from "../support/jobs.ts";
import { createLegacyTable, legacyTable, policyFor } from "../support/legacy-tables.ts";
import { bucketDiff, expectedBuckets, type RawRow, storedBuckets } from "../support/rollup-oracle.ts";

const SCHEMA = "ew";
const table = legacyTable("edgewatch", SCHEMA);
const TARGET = `${SCHEMA}.rollups_hourly`;
const policy = { ...policyFor("edgewatch", SCHEMA), rollup: { target: TARGET } };
const DROP = ["--drop-unique", "telemetry_points_device_message_key"];
let t: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestDatabase();
  await createLegacyTable(t.pool, table, 2000, 30);
  await t.pool.query(`
    CREATE TABLE ${TARGET} (
      device_id text NOT NULL,
      metric_key text NOT NULL,
      bucket_ts timestamptz NOT NULL,
      sample_count bigint NOT NULL,
      sum double precision NOT NULL,
      min double precision NOT NULL,
      max double precision NOT NULL,
      avg double precision NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (device_id, metric_key, bucket_ts))`);
  env = { DATABASE_URL: t.url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }) };
});
afterAll(async () => {
  await t?.drop();
});

const messages = (run: { lines: { severity: string; message: unknown }[] }) =>
  run.lines.map((l) => `${l.severity} ${String(l.message)}`).join("\n");

async function convert(phase: string, extra: string[] = []) {
  const run = await runCli(["migrate", "convert", phase, "--table", table.qualified, ...extra], env);
  return { ...run, text: messages(run) };
}

async function rollup() {
  const run = await runRollup(t.db, makeConfig(t.url, [policy], { now: new Date() }));
  const problems = run.logs.filter(
    (l) => l.severity !== "INFO" && l.severity !== "DEBUG" && l.severity !== "NOTICE",
  );
  expect(run.exitCode, problems.map((l) => l.message).join("\n")).toBe(0);
  return run;
}

/** Every non-internal trigger in the schema: relation, name, enabled state, function, definition. */
async function triggers(pool: pg.Pool = t.pool) {
  const r = await pool.query(
    `SELECT c.relname AS rel, c.relkind::text AS relkind, tg.tgname AS name, tg.tgenabled::text AS enabled,
            tg.tgfoid::regprocedure::text AS fn, pg_get_triggerdef(tg.oid) AS def
       FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
      WHERE c.relnamespace = $1::regnamespace AND NOT tg.tgisinternal
      ORDER BY 1, 3`,
    [SCHEMA],
  );
  return r.rows as { rel: string; relkind: string; name: string; enabled: string; fn: string; def: string }[];
}

/** Rollups equal a GROUP BY of the raw rows (the TypeScript model) for every final hour. */
async function expectRollupsExact() {
  const w = await t.pool.query(
    "SELECT min(final_before) AS final_before FROM telemetry_jobs.rollup_watermarks WHERE target = $1",
    [TARGET],
  );
  const finalBefore: Date = w.rows[0].final_before;
  expect(finalBefore).toBeInstanceOf(Date);
  const raw = await t.pool.query(`SELECT device_id, ts, metrics FROM ${table.qualified}`);
  const rows: RawRow[] = raw.rows.map((r) => ({ device: r.device_id, ts: r.ts, metrics: r.metrics }));
  expect(bucketDiff(expectedBuckets(rows, finalBefore), await storedBuckets(t.pool, TARGET))).toEqual([]);
}

/**
 * Updates (one value, and one row moved to another device and hour) and deletes rows of final
 * hours through the table's name; returns the (device, hour) pairs that must now be recorded.
 */
async function changeOldRows(tag: string): Promise<string[]> {
  const picked = await t.pool.query(
    `SELECT id, device_id, date_trunc('hour', ts) AS h FROM ${table.qualified}
      WHERE ts < now() - interval '3 days' ORDER BY ts DESC LIMIT 12`,
  );
  const ids: string[] = picked.rows.map((r) => r.id);
  const touched = new Set<string>(picked.rows.map((r) => `${r.device_id}|${r.h.toISOString()}`));
  await t.pool.query(
    `UPDATE ${table.qualified} SET metrics = metrics || jsonb_build_object('temp', 99.5, 'tag', $2::text) WHERE id = ANY($1)`,
    [ids.slice(0, 5), tag],
  );
  const moved = await t.pool.query(
    `UPDATE ${table.qualified} SET device_id = 'dev-200', ts = ts - interval '1 hour' WHERE id = $1
     RETURNING device_id, date_trunc('hour', ts) AS h`,
    [ids[5]],
  );
  for (const r of moved.rows) touched.add(`${r.device_id}|${r.h.toISOString()}`);
  await t.pool.query(`DELETE FROM ${table.qualified} WHERE id = ANY($1)`, [ids.slice(6)]);
  return [...touched].sort();
}

async function recorded(): Promise<Set<string>> {
  const r = await t.pool.query(
    `SELECT group_value, bucket_ts FROM telemetry_jobs.rollup_changes
      WHERE source_schema = $1 AND source_name = $2`,
    [SCHEMA, table.table],
  );
  return new Set(r.rows.map((x) => `${x.group_value}|${x.bucket_ts.toISOString()}`));
}

describe("migrate convert with rollup-hourly's change triggers on the table", () => {
  let before: Awaited<ReturnType<typeof triggers>> = [];

  it("rollup-hourly between prepare and swap: the swap moves its triggers to the partitioned parent, and no change goes unrecorded", async () => {
    const prep = await convert("prepare", DROP);
    expect(prep.code, prep.text).toBe(0);
    await rollup();
    before = await triggers();
    expect(before.map((x) => [x.rel, x.name, x.fn])).toEqual([
      ["telemetry_points", "telemetry_jobs_rollup_delete", "telemetry_jobs.record_rollup_changes()"],
      ["telemetry_points", "telemetry_jobs_rollup_update", "telemetry_jobs.record_rollup_changes()"],
    ]);

    const swap = await convert("swap");
    expect(swap.code, swap.text).toBe(0);
    // The table is named in messages as schema.name.
    expect(swap.text).toMatch(/NOTICE swapped in \d+ ms \(1 attempt\): ew\.telemetry_points is partitioned/);
    const after = await triggers();
    // On the partitioned parent (which now has the table's name), defined the same; none left on
    // the historical partition.
    expect(after.map((x) => x.relkind)).toEqual(["p", "p"]);
    expect(after.map(({ rel, name, enabled, fn, def }) => ({ rel, name, enabled, fn, def }))).toEqual(
      before.map(({ rel, name, enabled, fn, def }) => ({ rel, name, enabled, fn, def })),
    );

    const touched = await changeOldRows("after-swap");
    const seen = await recorded();
    expect(touched.filter((k) => !seen.has(k))).toEqual([]);
    await rollup();
    expect((await recorded()).size).toBe(0);
    await expectRollupsExact();
  }, 180_000);

  it("revert after the swap puts the triggers back on the plain table", async () => {
    const run = await convert("revert");
    expect(run.code, run.text).toBe(0);
    expect(run.text).toMatch(/NOTICE reverted in \d+ ms: ew\.telemetry_points is one plain table again/);
    const after = await triggers();
    expect(after.map((x) => x.relkind)).toEqual(["r", "r"]);
    expect(after.map(({ rel, name, enabled, fn, def }) => ({ rel, name, enabled, fn, def }))).toEqual(
      before.map(({ rel, name, enabled, fn, def }) => ({ rel, name, enabled, fn, def })),
    );
    const touched = await changeOldRows("after-revert");
    const seen = await recorded();
    expect(touched.filter((k) => !seen.has(k))).toEqual([]);
    await rollup();
    await expectRollupsExact();
  }, 180_000);

  it("a disabled change trigger stays disabled through prepare, swap and revert", async () => {
    await t.pool.query(`ALTER TABLE ${table.qualified} DISABLE TRIGGER telemetry_jobs_rollup_delete`);
    const pre = await convert("preflight", DROP);
    expect(pre.code, pre.text).toBe(0);
    const prep = await convert("prepare", DROP);
    expect(prep.code, prep.text).toBe(0);
    const swap = await convert("swap");
    expect(swap.code, swap.text).toBe(0);
    const enabled = async () => (await triggers()).map((x) => [x.relkind, x.name, x.enabled]);
    expect(await enabled()).toEqual([
      ["p", "telemetry_jobs_rollup_delete", "D"],
      ["p", "telemetry_jobs_rollup_update", "O"],
    ]);
    const back = await convert("revert");
    expect(back.code, back.text).toBe(0);
    expect(await enabled()).toEqual([
      ["r", "telemetry_jobs_rollup_delete", "D"],
      ["r", "telemetry_jobs_rollup_update", "O"],
    ]);
    await t.pool.query(`ALTER TABLE ${table.qualified} ENABLE TRIGGER telemetry_jobs_rollup_delete`);
  }, 180_000);

  it("revert before the swap leaves the triggers where they are", async () => {
    const prep = await convert("prepare", DROP);
    expect(prep.code, prep.text).toBe(0);
    const run = await convert("revert");
    expect(run.code, run.text).toBe(0);
    expect(await triggers()).toEqual(before);
  }, 180_000);

  it("any other trigger still blocks: our name on another function, or our function under another name", async () => {
    await t.pool.query(`
      CREATE FUNCTION ${SCHEMA}.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
      DROP TRIGGER telemetry_jobs_rollup_update ON ${table.qualified};
      CREATE TRIGGER telemetry_jobs_rollup_update AFTER UPDATE ON ${table.qualified}
        FOR EACH STATEMENT EXECUTE FUNCTION ${SCHEMA}.noop()`);
    const a = await convert("preflight", DROP);
    expect(a.code, a.text).toBe(2);
    const blocked = a.lines.map((l) => String(l.message)).filter((m) => m.startsWith("cannot convert:"));
    // Only the impostor: the genuine DELETE trigger next to it is still ours.
    expect(blocked).toEqual([
      expect.stringMatching(
        /^cannot convert: the table has triggers: .*: telemetry_jobs_rollup_update ON ew\.telemetry_points: CREATE TRIGGER telemetry_jobs_rollup_update AFTER UPDATE ON ew\.telemetry_points FOR EACH STATEMENT EXECUTE FUNCTION ew\.noop\(\)\. Fix/,
      ),
    ]);

    await t.pool.query(`
      DROP TRIGGER telemetry_jobs_rollup_update ON ${table.qualified};
      CREATE TRIGGER audit_updates AFTER UPDATE ON ${table.qualified}
        REFERENCING OLD TABLE AS rollup_old_rows NEW TABLE AS rollup_new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION telemetry_jobs.record_rollup_changes('ts', 'device_id')`);
    const b = await convert("preflight", DROP);
    expect(b.code, b.text).toBe(2);
    expect(b.text).toMatch(
      /cannot convert: the table has triggers: [^\n]*: audit_updates ON ew\.telemetry_points: /,
    );
  }, 180_000);

  it("rollup-hourly installing its triggers after the swap read the table: the swap rolls back, then moves them when run again", async () => {
    await t.pool.query(`
      DROP TRIGGER audit_updates ON ${table.qualified};
      DROP TRIGGER telemetry_jobs_rollup_delete ON ${table.qualified};
      DROP FUNCTION ${SCHEMA}.noop()`);
    expect(await triggers()).toEqual([]);
    const prep = await convert("prepare", DROP);
    expect(prep.code, prep.text).toBe(0);
    // The swap reads the table (no change triggers), then pauses before its transaction.
    const resume = join(tmpdir(), `convert-rollup-triggers-${process.pid}-${Date.now()}`);
    const swap = startCli(["migrate", "convert", "swap", "--table", table.qualified], {
      ...env,
      TELEMETRY_JOBS_FAULT_PAUSE: "convert-before-swap",
      TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
    });
    await swap.waitFor("paused at fault point");
    await rollup();
    expect((await triggers()).map((x) => [x.relkind, x.name])).toEqual([
      ["r", "telemetry_jobs_rollup_delete"],
      ["r", "telemetry_jobs_rollup_update"],
    ]);
    writeFileSync(resume, "");
    const { code } = await swap.done;
    const text = messages(swap);
    expect(code, text).toBe(1);
    expect(text).toContain(
      "swap: rollup-hourly's change triggers on ew.telemetry_points changed since they were read (expected: none); run the same command again; nothing of this step was changed",
    );
    expect((await triggers()).map((x) => [x.relkind, x.name])).toEqual([
      ["r", "telemetry_jobs_rollup_delete"],
      ["r", "telemetry_jobs_rollup_update"],
    ]);
    const again = await convert("swap");
    expect(again.code, again.text).toBe(0);
    expect((await triggers()).map((x) => [x.relkind, x.rel, x.name])).toEqual([
      ["p", "telemetry_points", "telemetry_jobs_rollup_delete"],
      ["p", "telemetry_points", "telemetry_jobs_rollup_update"],
    ]);
    const touched = await changeOldRows("after-second-swap");
    const seen = await recorded();
    expect(touched.filter((k) => !seen.has(k))).toEqual([]);
    await rollup();
    await expectRollupsExact();
  }, 180_000);
});
