// readExpiredRows against a real table: counted exactly by a dry run, where a relation has no index
// on its time column, and below EXACT_BELOW; estimated above it, each of the two ranges (rows to
// delete, before the rollup's row-delete limit; rows not final, from the limit to the cutoff) on its
// own, so the rows to delete are never shown as an estimate when only the others are one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXACT_BELOW, readExpiredRows } from "../../shared/retention/expired-rows.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

let t: TestDatabase;
const CUTOFF = new Date("2026-02-01T00:00:00Z");
// 30,000 rows a second apart before the cutoff (the limit 5,000 rows before it: 25,000 rows before
// the limit, 5,000 from it) and 10,000 after.
const LIMIT = new Date(CUTOFF.getTime() - 5_000 * 1000);
const FAR_LIMIT = new Date(CUTOFF.getTime() - 20_000 * 1000); // 10,000 before it, 20,000 from it

beforeAll(async () => {
  t = await createTestDatabase();
  for (const [table, indexed] of [
    ["indexed", true],
    ["unindexed", false],
  ] as const)
    await t.pool.query(`
      CREATE TABLE public.${table} (id bigserial PRIMARY KEY, ts timestamp with time zone, v float8);
      ${indexed ? `CREATE INDEX ON public.${table} (ts);` : ""}
      INSERT INTO public.${table} (ts, v)
        SELECT timestamptz '${CUTOFF.toISOString()}' + g * interval '1 second', g FROM generate_series(-30000, 9999) g;
      INSERT INTO public.${table} (ts, v) SELECT NULL, g FROM generate_series(1, 100) g;
      ANALYZE public.${table};`);
});
afterAll(async () => {
  await t.drop();
});

const read = (
  table: string,
  limit: Date | null | undefined,
  counting: "exact" | "estimate",
  cutoff = CUTOFF,
) => readExpiredRows(t.db, { schema: "public", name: table }, { column: "ts", cutoff, limit, counting });
const near = (n: number, truth: number) => {
  expect(n).toBeGreaterThanOrEqual(Math.max(EXACT_BELOW, 0.5 * truth));
  expect(n).toBeLessThanOrEqual(2 * truth);
};

describe("readExpiredRows", () => {
  it("a dry run, and any run on a relation without a time index, counts exactly", async () => {
    const exact = { expired: 30_000, notFinal: 5_000, estimated: { deletable: false, notFinal: false } };
    expect(await read("indexed", LIMIT, "exact")).toEqual(exact);
    expect(await read("unindexed", LIMIT, "estimate")).toEqual(exact);
  });

  it("a run estimates only a range that holds EXACT_BELOW rows or more", async () => {
    // No limit: all 30,000 expired rows are to be deleted, an estimate.
    const all = await read("indexed", undefined, "estimate");
    expect(all.notFinal).toBe(0);
    expect(all.estimated).toEqual({ deletable: true, notFinal: false });
    near(all.expired, 30_000);
    // 25,000 to delete (estimated), 5,000 not final (counted).
    const some = await read("indexed", LIMIT, "estimate");
    expect(some.estimated).toEqual({ deletable: true, notFinal: false });
    expect(some.notFinal).toBe(5_000);
    near(some.expired - some.notFinal, 25_000);
    // 10,000 to delete (at the bound: estimated), 20,000 not final (estimated).
    const far = await read("indexed", FAR_LIMIT, "estimate");
    expect(far.estimated).toEqual({ deletable: true, notFinal: true });
    near(far.notFinal, 20_000);
    near(far.expired - far.notFinal, 10_000);
  });

  it("a limit at the cutoff keeps nothing; a null limit keeps every expired row", async () => {
    const caughtUp = await read("indexed", CUTOFF, "estimate");
    expect(caughtUp.notFinal).toBe(0);
    expect(caughtUp.estimated.notFinal).toBe(false);
    const stalled = await read("indexed", null, "estimate");
    expect(stalled.expired).toBe(stalled.notFinal);
    expect(stalled.estimated).toEqual({ deletable: false, notFinal: true });
    near(stalled.notFinal, 30_000);
  });

  it("few expired rows are counted exactly by a run too; none is none", async () => {
    const few = new Date(CUTOFF.getTime() - 29_990 * 1000); // 10 rows before it
    expect(await read("indexed", undefined, "estimate", few)).toEqual({
      expired: 10,
      notFinal: 0,
      estimated: { deletable: false, notFinal: false },
    });
    const none = new Date("2020-01-01T00:00:00Z");
    expect(await read("indexed", undefined, "estimate", none)).toEqual({
      expired: 0,
      notFinal: 0,
      estimated: { deletable: false, notFinal: false },
    });
  });
});
