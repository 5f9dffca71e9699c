// A partition marked for removal whose detach is then refused must not keep the mark: a marked table
// no longer attached is what a killed run leaves unfinished, and the next run drops it. Refused
// because a hold was placed between the mark and the detach's check, the partition stays attached,
// and may be detached by hand later (to keep it out of retention's reach); refused because it was
// detached by hand meanwhile (and perhaps renamed), it is that already. Either way the run sent no
// DETACH, and takes its mark off the table it marked, found by oid.
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { placeHold, releaseHold } from "../../shared/retention/holds.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z";
const policy = (table: string) => ({
  table: `public.${table}`,
  timeColumn: "ts",
  retention: { keep: "1 month", mode: "drop" },
});
const comment = async (table: string) =>
  (await t.pool.query(`SELECT obj_description('public.${table}_p202511'::regclass, 'pg_class') AS c`)).rows[0]
    .c;
const rows = async (table: string) =>
  (await t.pool.query(`SELECT count(*)::int AS n FROM public.${table}_p202511`)).rows[0].n;

/** Runs retention paused after its mark; `meanwhile` runs there; the run's result. */
async function runPausedAfterMark(table: string, meanwhile: () => Promise<void>) {
  // A reader in a transaction keeps the parent busy: the removals are not done together in one
  // transaction, but child by child (mark, then DETACH CONCURRENTLY).
  const reader = new pg.Client({ connectionString: t.url });
  await reader.connect();
  const resume = path.join(tmpdir(), `tj-mark-refused-${process.pid}-${table}`);
  rmSync(resume, { force: true });
  process.env.TELEMETRY_JOBS_FAULT_PAUSE = "retention-after-mark";
  process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE = resume;
  try {
    await reader.query("BEGIN");
    await reader.query(`SELECT count(*) FROM public.${table}`);
    const running = runRetention(t.db, makeConfig(t.url, [policy(table)], { now: NOW }));
    for (
      let i = 0;
      i < 400 && !String((await comment(table)) ?? "").startsWith("telemetry-jobs retention: removing");
      i++
    )
      await new Promise((r) => setTimeout(r, 25));
    expect(await comment(table)).toMatch(
      new RegExp(`^telemetry-jobs retention: removing from public\\.${table}, mode drop`),
    );
    await reader.query("COMMIT");
    await meanwhile();
    writeFileSync(resume, "");
    return await running;
  } finally {
    delete process.env.TELEMETRY_JOBS_FAULT_PAUSE;
    delete process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE;
    rmSync(resume, { force: true });
    await reader.end();
  }
}

async function makeTable(table: string): Promise<void> {
  await t.pool.query(`
    CREATE TABLE public.${table} (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.${table}_p202511 PARTITION OF public.${table} FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z');
    CREATE TABLE public.${table}_p202603 PARTITION OF public.${table} FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    INSERT INTO public.${table} SELECT g, '2025-11-01Z'::timestamptz + g * interval '12 hours' FROM generate_series(0, 59) g;
    INSERT INTO public.${table} VALUES (1000, '2026-03-05Z');`);
}

it("a hold placed after the mark: the partition stays attached, unmarked; detached by hand later, it is kept", async () => {
  await makeTable("r");
  const run = await runPausedAfterMark("r", async () => {
    await placeHold(t.db, {
      partition: { schema: "public", name: "r_p202511" },
      until: new Date("2027-01-01T00:00:00Z"),
      reason: "audit",
    });
  });
  expect(run.exitCode).not.toBe(0);
  expect(await rows("r")).toBe(60);
  expect(await comment("r")).toBeNull();

  // Later the operator takes the partition out of the table to keep it, and releases the hold.
  await t.pool.query("ALTER TABLE public.r DETACH PARTITION public.r_p202511");
  expect(await releaseHold(t.db, "public.r_p202511")).toBe(true);
  const next = await runRetention(t.db, makeConfig(t.url, [policy("r")], { now: NOW }));
  expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  expect(await rows("r")).toBe(60);
}, 120_000);

it("the partition detached by hand after the mark: the run leaves it, unmarked, and so does the next", async () => {
  await makeTable("s");
  const run = await runPausedAfterMark("s", async () => {
    await t.pool.query("ALTER TABLE public.s DETACH PARTITION public.s_p202511");
  });
  expect(run.exitCode).not.toBe(0);
  expect(await comment("s")).toBeNull();
  const next = await runRetention(t.db, makeConfig(t.url, [policy("s")], { now: NOW }));
  expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  expect(await rows("s")).toBe(60);
}, 120_000);

it("detached by hand and renamed after the mark: the run's mark comes off the table it marked", async () => {
  await makeTable("u");
  const run = await runPausedAfterMark("u", async () => {
    await t.pool.query(`
      ALTER TABLE public.u DETACH PARTITION public.u_p202511;
      ALTER TABLE public.u_p202511 RENAME TO u_kept;`);
  });
  expect(run.exitCode).not.toBe(0);
  const kept = await t.pool.query("SELECT obj_description('public.u_kept'::regclass, 'pg_class') AS c");
  expect(kept.rows[0].c).toBeNull();
  const next = await runRetention(t.db, makeConfig(t.url, [policy("u")], { now: NOW }));
  expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  expect((await t.pool.query("SELECT count(*)::int AS n FROM public.u_kept")).rows[0].n).toBe(60);
}, 120_000);
