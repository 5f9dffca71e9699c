// A child whose upper bound is exactly the retention cutoff is expired, for retention and for
// partition-manager alike: once retention has detached it, a late row for its range must not make
// partition-manager re-create it (the detached table still holds that name).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01, the end of January

describe("the month that ends exactly at the retention cutoff", () => {
  it("detached by retention, then a late row for it in DEFAULT: partition-manager does not re-create it (exit 0)", async () => {
    await t.pool.query(
      "CREATE TABLE public.edge (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    for (const [name, from, to] of [
      ["edge_p202601", "2026-01-01", "2026-02-01"],
      ["edge_p202602", "2026-02-01", "2026-03-01"],
      ["edge_p202603", "2026-03-01", "2026-04-01"],
    ])
      await t.pool.query(
        `CREATE TABLE public.${name} PARTITION OF public.edge FOR VALUES FROM ('${from}T00:00:00Z') TO ('${to}T00:00:00Z')`,
      );
    await t.pool.query("CREATE TABLE public.edge_default PARTITION OF public.edge DEFAULT");
    await t.pool.query(
      "INSERT INTO public.edge SELECT g, '2026-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(0, 743) g",
    );
    await t.pool.query("INSERT INTO public.edge VALUES (1000, '2026-02-10T00:00:00Z')");
    const config = makeConfig(
      t.url,
      [{ table: "public.edge", timeColumn: "ts", retention: { keep: "1 month", mode: "detach" } }],
      { now: NOW },
    );

    const retention = await runRetention(t.db, config);
    expect(retention.exitCode, JSON.stringify(retention.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(retention.summary.actions).toEqual({ remove_partition: 1 });
    expect((await partitionsOf(t.url, "public.edge")).map((p) => p.name)).not.toContain("edge_p202601");
    expect((await t.pool.query("SELECT count(*)::int AS n FROM public.edge_p202601")).rows[0].n).toBe(744);

    // A device with a stale clock writes into January: the row lands in DEFAULT.
    await t.pool.query("INSERT INTO public.edge VALUES (2000, '2026-01-31T23:00:00Z')");
    const pm = await runPartitionManager(t.db, config);
    const errors = pm.logs.filter((l) => l.severity === "ERROR").map((l) => `${l.message}: ${l.error ?? ""}`);
    expect(pm.exitCode, errors.join("\n")).toBe(0);
    expect(pm.summary.actions.create_partition ?? 0).toBe(3); // April, May, June (premake 3)
    const expired = pm.logs.find((l) => /older than the retention cutoff/.test(l.message));
    expect(expired?.message).toMatch(
      /^1 rows in the DEFAULT partition are older than the retention cutoff 2026-02-01/,
    );
    // The detached January is still a standalone table, untouched; the late row waits in DEFAULT.
    const names = (await partitionsOf(t.url, "public.edge")).map((p) => p.name);
    expect(names).not.toContain("edge_p202601");
    expect(names).toContain("edge_p202606");
    expect((await t.pool.query("SELECT count(*)::int AS n FROM public.edge_p202601")).rows[0].n).toBe(744);
    expect((await t.pool.query("SELECT id FROM ONLY public.edge_default")).rows.map((r) => r.id)).toEqual([
      2000,
    ]);
  });
});
