// Row deletes of retention touch only the one leaf relation they were planned for. A held child
// is expired too (every row of it is older than the cutoff), so the `ts < cutoff` filter alone
// would not protect it: only addressing the DEFAULT partition itself, not the parent, does.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01

async function ids(relation: string): Promise<number[]> {
  const r = await t.pool.query(`SELECT id FROM ONLY public.${relation} ORDER BY id`);
  return r.rows.map((row) => row.id);
}

async function ctids(relation: string): Promise<string[]> {
  const r = await t.pool.query(`SELECT ctid::text AS c FROM ONLY public.${relation} ORDER BY ctid`);
  return r.rows.map((row) => row.c);
}

describe("retention row deletes in DEFAULT next to a held, expired child", () => {
  it("DEFAULT's expired rows go; the held child, with rows at the same ctids, keeps every row", async () => {
    await t.pool.query(
      "CREATE TABLE public.kept (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    await t.pool.query(
      "CREATE TABLE public.kept_p202512 PARTITION OF public.kept FOR VALUES FROM ('2025-12-01T00:00:00Z') TO ('2026-01-01T00:00:00Z')",
    );
    await t.pool.query(
      "CREATE TABLE public.kept_p202602 PARTITION OF public.kept FOR VALUES FROM ('2026-02-01T00:00:00Z') TO ('2026-03-01T00:00:00Z')",
    );
    await t.pool.query("CREATE TABLE public.kept_default PARTITION OF public.kept DEFAULT");
    // 200 rows in the held December child and 200 expired rows in DEFAULT (September), inserted
    // in the same order: their ctids match pairwise. Then newer rows in February and in DEFAULT.
    await t.pool.query(
      "INSERT INTO public.kept SELECT g, '2025-12-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 200) g",
    );
    await t.pool.query(
      "INSERT INTO public.kept SELECT 1000 + g, '2025-09-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 200) g",
    );
    await t.pool.query(
      "INSERT INTO public.kept VALUES (5000, '2026-02-10T00:00:00Z'), (5001, '2026-07-01T00:00:00Z')",
    );
    expect((await ctids("kept_default")).slice(0, 200)).toEqual(await ctids("kept_p202512"));
    await t.pool.query(
      `INSERT INTO telemetry_jobs.retention_holds (partition_name, hold_until, reason)
       VALUES ('public.kept_p202512', '2026-06-01', 'legal hold')`,
    );
    const held = await ids("kept_p202512");
    expect(held).toHaveLength(200);

    const run = await runRetention(
      t.db,
      makeConfig(t.url, [{ table: "public.kept", timeColumn: "ts", retention: { keep: "1 month" } }], {
        now: NOW,
      }),
    );
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(run.summary.actions).toEqual({ delete_rows: 1 });
    expect(run.logs.some((l) => l.finding === "held" && l.message.includes("legal hold"))).toBe(true);

    const heldAfter = await ids("kept_p202512");
    expect(heldAfter.length, "rows left in the held child kept_p202512").toBe(200);
    expect(heldAfter).toEqual(held);
    expect(await ids("kept_default")).toEqual([5001]);
    expect(await ids("kept_p202602")).toEqual([5000]);
    expect((await partitionsOf(t.url, "public.kept")).map((p) => p.name)).toEqual([
      "kept_default",
      "kept_p202512",
      "kept_p202602",
    ]);
  });
});
