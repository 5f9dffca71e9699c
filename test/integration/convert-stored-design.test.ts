// The design prepare stores with a conversion is checked when a later phase reads it back: a row
// whose design does not match fails the phase with an error naming the row (exit 1), and nothing
// is changed; status, which reads no design, still reports the conversion; with the design
// restored the same phase goes on.
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

describe("a stored design that does not match", () => {
  it("fails the phase naming the conversion row; nothing changes; restored, the phase runs", async () => {
    const table = legacyTable("sensor_readings", "sd");
    await createLegacyTable(t.pool, table, 200, 100);
    const env = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("sensor_readings", "sd")] }),
    };
    const convert = (phase: string) =>
      runCli(["migrate", "convert", phase, `--table=${table.qualified}`], env);
    expect((await convert("prepare")).code).toBe(0);
    const key = "sd.sensor_readings";
    const saved = await t.pool.query("SELECT plan FROM telemetry_jobs.conversions WHERE table_name = $1", [
      key,
    ]);
    await t.pool.query(
      "UPDATE telemetry_jobs.conversions SET plan = plan - 'names' || '{\"keyType\": \"date\"}' WHERE table_name = $1",
      [key],
    );

    const swap = await convert("swap");
    expect(swap.code).toBe(1);
    const failed = swap.lines.filter((l) => l.severity === "ERROR").map((l) => l.message);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toContain("the telemetry_jobs.conversions row of sd.sensor_readings (phase prepared)");
    for (const field of ["names", "keyType"]) expect(failed[0]).toContain(`${field}: `);
    const shape = async () =>
      (
        await t.pool.query(
          `SELECT c.relkind::text AS kind, v.phase FROM pg_class c, telemetry_jobs.conversions v
            WHERE c.oid = 'sd.sensor_readings'::regclass AND v.table_name = $1`,
          [key],
        )
      ).rows;
    expect(await shape()).toEqual([{ kind: "r", phase: "prepared" }]);
    // Every phase that reads the design refuses it the same way.
    for (const phase of ["revert", "prepare"]) expect((await convert(phase)).code).toBe(1);
    expect(await shape()).toEqual([{ kind: "r", phase: "prepared" }]);
    // status reads no design: it tells where the conversion stands all the same.
    const status = await convert("status");
    expect(status.code).toBe(0);
    expect(status.lines.filter((l) => l.message.includes("sd.sensor_readings: prepared"))).toHaveLength(1);

    await t.pool.query("UPDATE telemetry_jobs.conversions SET plan = $2 WHERE table_name = $1", [
      key,
      saved.rows[0].plan,
    ]);
    expect((await convert("swap")).code).toBe(0);
    expect(await shape()).toEqual([{ kind: "p", phase: "swapped" }]);
  });
});
