// A run killed between retention's detach and its finish leaves the expired children detached and
// marked; the next run finishes them (finish_removal). A detached table's catalog has no bound any
// more, so what that run audits and labels comes from the mark: the range and the planner's row
// estimate. A mark written without them (as earlier versions wrote it) leaves the range unknown
// and the rows to the table's own estimate (pg_class.reltuples), never a made-up 0.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removalMarker } from "../../shared/retention/removal-mark.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
const MONTHS = ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"];
const monthRange = (m: string) => {
  const from = new Date(`${m}-01T00:00:00Z`);
  return { from, to: new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1)) };
};

async function cliSessions(): Promise<number> {
  const r = await t.pool.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'telemetry-jobs/retention'",
  );
  return r.rows[0].n;
}

describe("finishing a killed run's removals", () => {
  it("audits and labels each leftover with its range and rows, as its mark says", async () => {
    const name = "lo_1";
    await t.pool.query(
      `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
    );
    for (const m of MONTHS) {
      const { from, to } = monthRange(m);
      await t.pool.query(
        `CREATE TABLE public.${name}_p${m.replace("-", "")} PARTITION OF public.${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
      );
    }
    await t.pool.query(
      `INSERT INTO public.${name} SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours' FROM generate_series(0, 99) g;
       ANALYZE public.${name}`,
    );
    const counts = await t.pool.query(
      `SELECT c.relname::text AS part, count(*)::int AS n FROM public.${name} x JOIN pg_class c ON c.oid = x.tableoid GROUP BY 1`,
    );
    const rowsOf = (child: string) => counts.rows.find((r) => r.part === child)!.n as number;
    const policy = {
      table: `public.${name}`,
      timeColumn: "ts",
      retention: { keep: "1 month", mode: "detach" },
    };

    const cli = startCli(["retention", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "retention-after-detach",
    });
    await cli.waitFor("paused at fault point", 60_000);
    cli.child.kill("SIGKILL");
    expect((await cli.done).signal).toBe("SIGKILL");
    for (let i = 0; i < 200 && (await cliSessions()) > 0; i++) await new Promise((r) => setTimeout(r, 50));

    // Two leftovers carry a mark with the range and the planner's estimate (one of them a
    // deliberately different estimate, to tell the mark's from the table's); the third keeps the
    // mark the killed run wrote.
    const [nov, dec, jan] = ["2025-11", "2025-12", "2026-01"];
    const child = (m: string) => `${name}_p${m.replace("-", "")}`;
    const mark = (m: string, rowsEstimate: number) =>
      t.pool.query(
        `COMMENT ON TABLE public.${child(m)} IS '${removalMarker(`public.${name}`, "detach", { ...monthRange(m), rowsEstimate })}'`,
      );
    await mark(nov, rowsOf(child(nov)));
    await mark(dec, 999);
    const janMark = await t.pool.query(
      `SELECT obj_description('public.${child(jan)}'::regclass, 'pg_class') AS c`,
    );
    expect(janMark.rows[0].c).toMatch(
      new RegExp(`^telemetry-jobs retention: removing from public\\.${name}, mode detach`),
    );

    const next = await runRetention(t.db, makeConfig(t.url, [policy], { now: NOW }));
    expect(next.exitCode).toBe(0);
    expect(next.summary.actions).toEqual({ finish_removal: 3 });
    const audited = await t.pool.query(
      `SELECT partition_name, range_from, range_to, rows::int AS rows FROM telemetry_jobs.job_actions
        WHERE table_name = $1 AND kind = 'finish_removal' ORDER BY partition_name`,
      [`public.${name}`],
    );
    // The killed run's own mark of January: with its range once remove.ts writes one, else none.
    const janRange = /range \[/.test(janMark.rows[0].c)
      ? { range_from: monthRange(jan).from, range_to: monthRange(jan).to }
      : { range_from: null, range_to: null };
    const row = (m: string, rows: number) => ({
      partition_name: `public.${child(m)}`,
      range_from: monthRange(m).from,
      range_to: monthRange(m).to,
      rows,
    });
    expect(audited.rows).toEqual([
      row(nov, rowsOf(child(nov))),
      row(dec, 999),
      // Its mark's estimate when it has one; else the table's own, exact after ANALYZE.
      { ...row(jan, rowsOf(child(jan))), ...janRange },
    ]);
    const stamp = new Date(NOW).toISOString();
    for (const m of [nov, dec]) {
      const label = await t.pool.query(
        `SELECT obj_description('public.${child(m)}'::regclass, 'pg_class') AS c`,
      );
      expect(label.rows[0].c).toBe(
        `telemetry-jobs retention: detached from public.${name} at ${stamp} (rows before ${monthRange(m).to.toISOString()})`,
      );
    }
  }, 120_000);
});
