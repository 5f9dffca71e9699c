// A partition marked for removal whose detach is then refused (a hold placed between the mark and the
// detach's check) stays attached, and must not keep the mark: detached by hand later (to keep it out
// of retention's reach), a marked table is what a killed run leaves unfinished, and the next run
// would drop it. The run takes its mark off when its detach fails and the partition stays attached.
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
const policy = { table: "public.r", timeColumn: "ts", retention: { keep: "1 month", mode: "drop" } };
const comment = async () =>
  (await t.pool.query("SELECT obj_description('public.r_p202511'::regclass, 'pg_class') AS c")).rows[0].c;
const rows = async () => (await t.pool.query("SELECT count(*)::int AS n FROM public.r_p202511")).rows[0].n;

it("a detach refused after the mark leaves the partition attached and unmarked; detached by hand, it is kept", async () => {
  await t.pool.query(`
    CREATE TABLE public.r (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.r_p202511 PARTITION OF public.r FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z');
    CREATE TABLE public.r_p202603 PARTITION OF public.r FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    INSERT INTO public.r SELECT g, '2025-11-01Z'::timestamptz + g * interval '12 hours' FROM generate_series(0, 59) g;
    INSERT INTO public.r VALUES (1000, '2026-03-05Z');`);
  // A reader in a transaction keeps the parent busy: the removals are not done together in one
  // transaction, but child by child (mark, then DETACH CONCURRENTLY).
  const reader = new pg.Client({ connectionString: t.url });
  await reader.connect();
  const resume = path.join(tmpdir(), `tj-mark-refused-${process.pid}`);
  rmSync(resume, { force: true });
  process.env.TELEMETRY_JOBS_FAULT_PAUSE = "retention-after-mark";
  process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE = resume;
  let run: Awaited<ReturnType<typeof runRetention>>;
  try {
    await reader.query("BEGIN");
    await reader.query("SELECT count(*) FROM public.r");
    const running = runRetention(t.db, makeConfig(t.url, [policy], { now: NOW }));
    for (
      let i = 0;
      i < 400 && !String((await comment()) ?? "").startsWith("telemetry-jobs retention: removing");
      i++
    )
      await new Promise((r) => setTimeout(r, 25));
    expect(await comment()).toMatch(/^telemetry-jobs retention: removing from public\.r, mode drop/);
    await reader.query("COMMIT");
    // The operator holds the partition while the run is between its mark and its detach.
    await placeHold(t.db, {
      partition: { schema: "public", name: "r_p202511" },
      until: new Date("2027-01-01T00:00:00Z"),
      reason: "audit",
    });
    writeFileSync(resume, "");
    run = await running;
  } finally {
    delete process.env.TELEMETRY_JOBS_FAULT_PAUSE;
    delete process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE;
    rmSync(resume, { force: true });
    await reader.end();
  }
  expect(run.exitCode).not.toBe(0);
  expect(await rows()).toBe(60);
  expect(await comment()).toBeNull();

  // Later the operator takes the partition out of the table to keep it, and releases the hold.
  await t.pool.query("ALTER TABLE public.r DETACH PARTITION public.r_p202511");
  expect(await releaseHold(t.db, "public.r_p202511")).toBe(true);
  const next = await runRetention(t.db, makeConfig(t.url, [policy], { now: NOW }));
  expect(next.exitCode, JSON.stringify(next.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  expect(await rows()).toBe(60);
}, 120_000);
