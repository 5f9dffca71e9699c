// A conversion prepared by an earlier release goes on with this one. Its stored design is version 1
// and may lack what later releases added to it: parentIndexes[].constraintDef (the parent's keys
// were then rebuilt from their columns alone) and identity.indexed (the swap then always read
// max(id) to continue the identity past ids inserted with explicit values). status reads no design,
// and swap and revert run such a design as the release that wrote it meant.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";
import { createLegacyTable, legacyTable, policyFor } from "../support/legacy-tables.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

/** The design as releases before constraintDef and identity.indexed stored it. */
function oldShape(plan: Record<string, unknown>): Record<string, unknown> {
  const parentIndexes = (plan.parentIndexes as Record<string, unknown>[]).map((i) => {
    const { constraintDef: _, ...rest } = i;
    return rest;
  });
  const { indexed: _, ...identity } = plan.identity as Record<string, unknown>;
  return { ...plan, version: 1, parentIndexes, identity };
}

describe("a design stored by an earlier release", () => {
  it("status reports it, swap and revert run it", async () => {
    const table = legacyTable("sensor_readings", "od");
    await createLegacyTable(t.pool, table, 200, 100);
    // A unique constraint with the time column: the parent gets it as a constraint of its own.
    await t.pool.query(
      "ALTER TABLE od.sensor_readings ADD CONSTRAINT sensor_readings_unit_time_key UNIQUE (unit_id, recorded_at, device_id)",
    );
    const env = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("sensor_readings", "od")] }),
    };
    const convert = (phase: string) =>
      runCli(["migrate", "convert", phase, `--table=${table.qualified}`], env);
    expect((await convert("prepare")).code).toBe(0);
    const key = "od.sensor_readings";
    const saved = await t.pool.query("SELECT plan FROM telemetry_jobs.conversions WHERE table_name = $1", [
      key,
    ]);
    const plan = saved.rows[0].plan as Record<string, unknown>;
    expect((plan.parentIndexes as { constraint: string | null }[]).map((i) => i.constraint)).toContain("u");
    await t.pool.query("UPDATE telemetry_jobs.conversions SET plan = $2 WHERE table_name = $1", [
      key,
      JSON.stringify(oldShape(plan)),
    ]);

    const status = await convert("status");
    expect(status.code).toBe(0);
    expect(
      status.lines.filter((l) => l.message.includes("conversion of od.sensor_readings: prepared")),
    ).toHaveLength(1);

    // An id inserted with an explicit value, above the identity's sequence: the release that wrote
    // this design continued the partitioned table's identity past it.
    await t.pool.query(
      `INSERT INTO od.sensor_readings (id, unit_id, device_id, recorded_at, value) OVERRIDING SYSTEM VALUE
       VALUES (1000000, 1, 'dev-1', now() - interval '2 days', 1)`,
    );
    const kind = async () =>
      (
        await t.pool.query(
          `SELECT c.relkind::text AS kind, v.phase FROM pg_class c, telemetry_jobs.conversions v
            WHERE c.oid = 'od.sensor_readings'::regclass AND v.table_name = $1`,
          [key],
        )
      ).rows;
    expect((await convert("swap")).code).toBe(0);
    expect(await kind()).toEqual([{ kind: "p", phase: "swapped" }]);
    const constraints = await t.pool.query(
      `SELECT conname FROM pg_constraint WHERE conrelid = 'od.sensor_readings'::regclass AND contype = 'u'`,
    );
    expect(constraints.rows).toEqual([{ conname: "sensor_readings_unit_time_key" }]);
    const inserted = await t.pool.query(
      `INSERT INTO od.sensor_readings (unit_id, device_id, recorded_at, value)
       VALUES (1, 'dev-1', now(), 2) RETURNING id::float8 AS id`,
    );
    expect(inserted.rows[0].id).toBeGreaterThan(1000000);

    expect((await convert("revert")).code).toBe(0);
    expect(await kind()).toEqual([{ kind: "r", phase: "reverted" }]);
    const count = await t.pool.query("SELECT count(*)::int AS n FROM od.sensor_readings");
    expect(count.rows).toEqual([{ n: 202 }]);
  });
});
