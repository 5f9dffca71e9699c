// Archive mode moves expired partitions into one archive schema under their own names. Two managed
// tables of the same name in two schemas have children of the same names: the second one's child
// used to be detached, then its SET SCHEMA failed, and from then on every run for that table failed
// before removing anything else. A clash must be found before anything is detached, reported, and
// must not stop the table's other work.
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

const NOW = "2026-04-01T00:00:00Z"; // keep 1 month -> cutoff 2026-03-01

async function monthlyTable(schema: string) {
  await t.pool.query(`CREATE SCHEMA ${schema}`);
  await t.pool.query(
    `CREATE TABLE ${schema}.readings (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
  for (const [m, from, to] of [
    ["202601", "2026-01-01Z", "2026-02-01Z"],
    ["202602", "2026-02-01Z", "2026-03-01Z"],
    ["202603", "2026-03-01Z", "2026-04-01Z"],
  ]) {
    await t.pool.query(
      `CREATE TABLE ${schema}.readings_p${m} PARTITION OF ${schema}.readings FOR VALUES FROM ('${from}') TO ('${to}')`,
    );
  }
  await t.pool.query(
    `INSERT INTO ${schema}.readings SELECT g, '2026-01-01Z'::timestamptz + g * interval '1 day' FROM generate_series(0, 89) g`,
  );
}

const policy = (schema: string) => ({
  table: `${schema}.readings`,
  timeColumn: "ts",
  retention: { keep: "1 month", mode: "archive", archiveSchema: "cold" },
});

async function names(schema: string): Promise<string[]> {
  const r = await t.pool.query(
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1",
    [schema],
  );
  return r.rows.map((x) => x.relname);
}

describe("archive mode, two tables of the same name in two schemas", () => {
  it("the second table's clashing children stay attached, the clash is reported, and its other work goes on", async () => {
    await monthlyTable("site_a");
    await monthlyTable("site_b");
    const first = await runRetention(t.db, makeConfig(t.url, [policy("site_a")], { now: NOW }));
    expect(first.exitCode).toBe(0);
    expect(await names("cold")).toEqual(["readings_p202601", "readings_p202602"]);

    // site_b: its January child clashes; February is renamed away by hand first, so it does not.
    await t.pool.query("ALTER TABLE site_b.readings_p202602 RENAME TO readings_feb");
    await t.pool.query("ALTER INDEX site_b.readings_p202602_pkey RENAME TO readings_feb_pkey");
    const second = await runRetention(t.db, makeConfig(t.url, [policy("site_b")], { now: NOW }));
    expect(second.exitCode, JSON.stringify(second.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    const warned = second.logs.filter((l) => l.severity === "WARNING").map((l) => l.message);
    expect(warned.join("\n")).toMatch(
      /the archive already has .*cold\.readings_p202601, cold\.readings_p202601_pkey/,
    );
    // Nothing was detached for the clash: January is still a partition, its rows readable.
    expect((await partitionsOf(t.url, "site_b.readings")).map((p) => p.name)).toEqual([
      "readings_p202601",
      "readings_p202603",
    ]);
    const rows = await t.pool.query("SELECT count(*)::int AS n FROM site_b.readings");
    expect(rows.rows[0].n).toBe(31 + 31);
    expect(await names("cold")).toEqual(["readings_feb", "readings_p202601", "readings_p202602"]);
    expect(await names("site_b")).toEqual(["readings_p202601", "readings_p202603"]);

    // Every later run still works, and still reports the clash.
    const third = await runRetention(t.db, makeConfig(t.url, [policy("site_b")], { now: NOW }));
    expect(third.exitCode).toBe(0);
    expect(
      third.logs.some((l) => l.severity === "WARNING" && /the archive already has/.test(l.message)),
    ).toBe(true);
  });

  it("a killed run's detached leftover whose archive name is taken is reported, not retried into a failure", async () => {
    await monthlyTable("site_c");
    await t.pool.query("CREATE SCHEMA IF NOT EXISTS cold");
    await t.pool.query("CREATE TABLE IF NOT EXISTS cold.readings_p202601 (id int, ts timestamptz)");
    // What a run killed between the detach and the move leaves: a detached table with our marker.
    await t.pool.query("ALTER TABLE site_c.readings DETACH PARTITION site_c.readings_p202601");
    await t.pool.query(
      "COMMENT ON TABLE site_c.readings_p202601 IS 'telemetry-jobs retention: removing from site_c.readings, mode archive'",
    );
    await t.pool.query("ALTER TABLE site_c.readings_p202602 RENAME TO readings_feb_c");
    await t.pool.query("ALTER INDEX site_c.readings_p202602_pkey RENAME TO readings_feb_c_pkey");
    const run = await runRetention(t.db, makeConfig(t.url, [policy("site_c")], { now: NOW }));
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(run.logs.some((l) => l.severity === "WARNING" && /the archive already has/.test(l.message))).toBe(
      true,
    );
    expect(await names("site_c")).toEqual(["readings_p202601", "readings_p202603"]);
    expect(await names("cold")).toContain("readings_feb_c");
  });

  it("a type in the archive schema named like the partition (SET SCHEMA moves its row type too) is a clash found first", async () => {
    await monthlyTable("site_d");
    await t.pool.query("CREATE SCHEMA IF NOT EXISTS cold_d");
    await t.pool.query("CREATE TYPE cold_d.readings_p202601 AS ENUM ('x')");
    const withOwnSchema = {
      ...policy("site_d"),
      retention: { keep: "1 month", mode: "archive", archiveSchema: "cold_d" },
    };
    for (let i = 0; i < 2; i++) {
      const run = await runRetention(t.db, makeConfig(t.url, [withOwnSchema], { now: NOW }));
      expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
      expect(
        run.logs.some(
          (l) =>
            l.severity === "WARNING" &&
            /the archive already has .*cold_d\.readings_p202601\b/.test(l.message),
        ),
      ).toBe(true);
    }
    // January stays attached; February was archived.
    expect((await partitionsOf(t.url, "site_d.readings")).map((p) => p.name)).toEqual([
      "readings_p202601",
      "readings_p202603",
    ]);
    expect(await names("cold_d")).toEqual(["readings_p202602"]);
  });
});
