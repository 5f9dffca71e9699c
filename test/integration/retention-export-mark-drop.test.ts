// A mode "export" run killed between marking a partition (its range and export root on the time
// column) and detaching it leaves the partition attached and marked. If the policy is then changed
// to mode drop, that partition must still not be dropped before its export is read back and
// confirmed: mode drop's one transaction (detach, drop, audit) is not for it. Here the export root
// holds no files for it, so the confirmation fails and the partition keeps its rows.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { exportRangeMark } from "../../shared/retention/export-finish.ts";
import { removalMarker } from "../../shared/retention/removal-mark.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
let root: string;
beforeAll(async () => {
  t = await createTestDatabase();
  root = mkdtempSync(path.join(tmpdir(), "tj-mark-drop-"));
});
afterAll(async () => {
  await t.drop();
  rmSync(root, { recursive: true, force: true });
});

it("mode drop leaves an attached partition with an export mark until its export is confirmed", async () => {
  await t.pool.query(`
    CREATE TABLE public.m (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.m_p202511 PARTITION OF public.m FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z');
    CREATE TABLE public.m_p202512 PARTITION OF public.m FOR VALUES FROM ('2025-12-01Z') TO ('2026-01-01Z');
    CREATE TABLE public.m_p202603 PARTITION OF public.m FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    INSERT INTO public.m SELECT g, '2025-11-01Z'::timestamptz + g * interval '12 hours' FROM generate_series(0, 99) g;
    INSERT INTO public.m VALUES (1000, '2026-03-05Z');`);
  const range = { from: new Date("2025-11-01T00:00:00Z"), to: new Date("2025-12-01T00:00:00Z") };
  const marked = { schema: "public", name: "m_p202511" };
  await exportRangeMark("ts", marked, range, root).execute(t.db);
  await t.pool.query(
    `COMMENT ON TABLE public.m_p202511 IS '${removalMarker("public.m", "drop", { ...range, rowsEstimate: 60 })}'`,
  );

  const policy = { table: "public.m", timeColumn: "ts", retention: { keep: "1 month", mode: "drop" } };
  const run = await runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-03-01T00:00:00Z" }));
  const shown = JSON.stringify(run.logs.filter((l) => l.severity === "ERROR").map((l) => l.message));
  expect(run.exitCode, shown).not.toBe(0);
  // The marked partition keeps its 60 rows (detached and marked, for the next run to confirm).
  const left = await t.pool.query("SELECT count(*)::int AS n FROM public.m_p202511");
  expect(left.rows[0].n).toBe(60);
  const audited = await t.pool.query(
    "SELECT partition_name FROM telemetry_jobs.job_actions WHERE table_name = 'public.m' AND outcome = 'ok' ORDER BY 1",
  );
  expect(audited.rows.map((r) => r.partition_name)).not.toContain("public.m_p202511");
});
