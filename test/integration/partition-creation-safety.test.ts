// "done" must mean the child is attached to this table with the planned bound:
// - a default child name that PostgreSQL would truncate at 63 bytes is refused before connecting
//   (it made one truncated child, then reported "done" for months it never created);
// - a standalone table left by a killed creation is finished even after the parent gained a column
//   (ATTACH refused the leftover, which had the old columns, and every later run exited 1);
// - a table of the planned name attached elsewhere, or with another bound, is never taken as done.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runCli, runPartitionManager, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-11-21T00:00:00Z";

async function parentTable(name: string) {
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
}

describe("names PostgreSQL would truncate", () => {
  it("a 57-character table with the default naming is refused (exit 2) before touching the database", async () => {
    const name = `t${"x".repeat(56)}`;
    expect(name).toHaveLength(57);
    await parentTable(name);
    const run = await runCli(["partition-manager", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [{ table: `public.${name}`, timeColumn: "ts" }] }),
    });
    expect(run.code).toBe(2);
    const text = `${run.stderr}\n${run.lines.map((l) => l.message).join("\n")}`;
    expect(text).toMatch(/naming/);
    expect(text).toMatch(/63/);
    expect(await partitionsOf(t.url, `public.${name}`)).toEqual([]);
  });

  it("the same table with a short naming template gets every partition it was promised", async () => {
    const name = `u${"x".repeat(56)}`;
    await parentTable(name);
    const run = await runPartitionManager(
      t.db,
      makeConfig(t.url, [{ table: `public.${name}`, timeColumn: "ts", naming: "u_p{YYYY}{MM}" }], {
        now: NOW,
      }),
    );
    expect(run.exitCode).toBe(0);
    expect((await partitionsOf(t.url, `public.${name}`)).map((p) => p.name)).toEqual(
      ["u_p202611", "u_p202612", "u_p202701", "u_p202702", `${name.slice(0, 55)}_default`].sort(),
    );
  });

  it("a planned name held by a partition of another table is an error, not done", async () => {
    await parentTable("other_parent");
    await parentTable("mine");
    await t.pool.query(
      "CREATE TABLE public.mine_p202612 PARTITION OF public.other_parent FOR VALUES FROM ('2026-12-01Z') TO ('2027-01-01Z')",
    );
    const run = await runPartitionManager(
      t.db,
      makeConfig(t.url, [{ table: "public.mine", timeColumn: "ts", defaultPartition: false }], { now: NOW }),
    );
    expect(run.exitCode).toBe(1);
    const errors = run.logs.filter((l) => l.severity === "ERROR").map((l) => `${l.message} ${l.error ?? ""}`);
    expect(errors.join("\n")).toMatch(/mine_p202612.*other_parent/);
    // The current month was made first; the run stops for this table at the clash.
    expect((await partitionsOf(t.url, "public.mine")).map((p) => p.name)).toEqual(["mine_p202611"]);
  });
});

describe("a creation killed after its standalone table was made", () => {
  it("is finished by the next run even after the parent gained a column", async () => {
    await parentTable("grows");
    const policy = { table: "public.grows", timeColumn: "ts", premake: 0 };
    const cli = startCli(["partition-manager", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "after-create-table",
    });
    await cli.waitFor("paused at fault point");
    cli.child.kill("SIGKILL");
    expect((await cli.done).signal).toBe("SIGKILL");
    const leftover = await t.pool.query(
      "SELECT relispartition FROM pg_class WHERE relname = 'grows_p202611' AND relnamespace = 'public'::regnamespace",
    );
    expect(leftover.rows).toEqual([{ relispartition: false }]);

    // The killed process's server session lingers until PostgreSQL notices the closed socket, and
    // holds the job's advisory lock until then (the next run would skip, rightly): wait it out.
    for (let i = 0; i < 100; i++) {
      const held = await t.pool.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      );
      if (held.rows[0].n === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // The application's migration adds a column meanwhile (waiting out the killed session's locks).
    await t.pool.query("SET lock_timeout = '10s'");
    await t.pool.query("ALTER TABLE public.grows ADD COLUMN note text NOT NULL DEFAULT 'n/a'");
    await t.pool.query("RESET lock_timeout");

    const run = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }));
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect((await partitionsOf(t.url, "public.grows")).map((p) => p.name)).toEqual([
      "grows_default",
      "grows_p202611",
    ]);
    await t.pool.query("INSERT INTO public.grows (id, ts) VALUES (1, '2026-11-22Z')");
    const row = await t.pool.query("SELECT tableoid::regclass::text AS part, note FROM public.grows");
    expect(row.rows).toEqual([{ part: "grows_p202611", note: "n/a" }]);
  });
});
