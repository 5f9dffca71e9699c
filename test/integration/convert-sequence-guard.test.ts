// The identity hand-over in swap and revert sets one table's identity sequence from another's. A
// sequence it cannot find (the table gone, the column gone or without its identity) fails the step
// with an error naming the column and both tables, and the step's transaction changes nothing:
// setval on a NULL oid would otherwise do nothing and let the step go on.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runStep, StepGuardError } from "../../shared/convert/apply.ts";
import { continueSequence } from "../../shared/convert/step-sequence.ts";
import { quoteRelation } from "../../shared/db/quote.ts";
import type { Relation } from "../../shared/db/relation.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { captureLogger, runCli } from "../support/jobs.ts";
import { createLegacyTable, legacyTable, policyFor } from "../support/legacy-tables.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

describe("continueSequence without a sequence to set", () => {
  const source: Relation = { schema: "sg", name: "points" };
  const target: Relation = { schema: "sg", name: "points_partitioned" };

  /** The hand-over run as a one-statement step, the way swap and revert run it. */
  async function handOver(to: Relation, from: Relation, column: string, indexed = true) {
    const ctx = {
      db: t.db,
      log: captureLogger("test").log,
      lockTimeoutMs: 1000,
      retryBudgetMs: 1000,
      table: from,
      progressEveryMs: 10_000,
    };
    return await runStep(ctx, {
      id: "swap",
      title: "hand the identity over",
      locks: "none",
      kind: "transaction",
      statements: [continueSequence(to, from, from, { column, indexed })],
    });
  }
  const nextOf = async (r: Relation) =>
    Number((await t.pool.query(`SELECT last_value::int8 AS v FROM ${quoteRelation(r)}`)).rows[0].v);

  it("finds both sequences and sets the target's", async () => {
    await t.pool.query("CREATE SCHEMA sg");
    for (const r of [source, target])
      await t.pool.query(`CREATE TABLE ${quoteRelation(r)} (id bigint GENERATED ALWAYS AS IDENTITY, v int)`);
    await t.pool.query(`INSERT INTO ${quoteRelation(source)} (v) SELECT generate_series(1, 7)`);
    const outcome = await handOver(target, source, "id");
    expect(outcome.rows).toEqual([1]);
    expect(await nextOf({ schema: "sg", name: "points_partitioned_id_seq" })).toBe(7);
  });

  it("a missing table, a missing column, a column without identity: the step fails, nothing set", async () => {
    const targetSeq = { schema: "sg", name: "points_partitioned_id_seq" };
    await t.pool.query(`SELECT setval('sg.points_partitioned_id_seq', 3)`);
    await t.pool.query(`ALTER TABLE ${quoteRelation(source)} ADD COLUMN plain bigint`);
    const absent = { schema: "sg", name: "absent" };
    const cases: [Relation, Relation, string, boolean][] = [
      [absent, source, "id", true],
      [target, absent, "id", false],
      [target, source, "absent", false],
      [target, source, "plain", true],
    ];
    for (const [to, from, column, indexed] of cases) {
      const failed = await handOver(to, from, column, indexed).catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(StepGuardError);
      const message = (failed as Error).message;
      expect(message).toContain(`swap: no identity sequence of column "${column}"`);
      expect(message).toContain(`${quoteRelation(to)} or ${quoteRelation(from)}`);
      expect(message).toContain("nothing of this step was changed");
      expect(await nextOf(targetSeq)).toBe(3);
    }
    // Reading max(id) from a table or column that is not there fails the statement itself.
    await expect(handOver(target, absent, "id", true)).rejects.toThrow('relation "sg.absent" does not exist');
    await expect(handOver(target, source, "absent", true)).rejects.toThrow('column "absent" does not exist');
    expect(await nextOf(targetSeq)).toBe(3);
  });
});

describe("swap when the prepared parent lost its identity", () => {
  it("fails with the column named; the table stays plain, the conversion prepared", async () => {
    const table = legacyTable("sensor_readings", "sq");
    await createLegacyTable(t.pool, table, 50, 30);
    const env = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("sensor_readings", "sq")] }),
    };
    const convert = (phase: string) =>
      runCli(["migrate", "convert", phase, `--table=${table.qualified}`], env);
    expect((await convert("prepare")).code).toBe(0);
    const parent = await t.pool.query(
      "SELECT plan->'names'->>'parent' AS name FROM telemetry_jobs.conversions WHERE table_name = 'sq.sensor_readings'",
    );
    await t.pool.query(
      `ALTER TABLE ${quoteRelation({ schema: "sq", name: parent.rows[0].name })} ALTER COLUMN id DROP IDENTITY`,
    );

    const swap = await convert("swap");
    expect(swap.code).toBe(1);
    const errors = swap.lines.filter((l) => l.severity === "ERROR").map((l) => l.message);
    expect(errors.join("\n")).toContain('swap: no identity sequence of column "id"');
    const state = await t.pool.query(
      `SELECT c.relkind::text AS kind, v.phase, a.attidentity::text AS identity
         FROM pg_class c
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'id',
              telemetry_jobs.conversions v
        WHERE c.oid = 'sq.sensor_readings'::regclass AND v.table_name = 'sq.sensor_readings'`,
    );
    expect(state.rows).toEqual([{ kind: "r", phase: "prepared", identity: "a" }]);
  });
});
