// A row-delete pass may end before the table's last block once it has deleted as many rows as the
// run counted when it planned. Rows with old timestamps written in between (devices with no clock
// set, dated 1970) land in space freed by an earlier pass, are deleted first and use up that
// count: the pass must still not end while rows it counted are left, nor say it finished when
// they are.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { applyPlainRowDelete } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z";
const CUTOFF = "2025-03-01T00:00:00Z"; // keep 1 year

async function expiredLeft(name: string) {
  const r = await t.pool.query(
    `SELECT count(*) FILTER (WHERE ts < '1971-01-01')::int AS clockless,
            count(*) FILTER (WHERE ts >= '1971-01-01' AND ts < $1)::int AS counted,
            count(*) FILTER (WHERE ts >= $1)::int AS kept
       FROM public.${name}`,
    [CUTOFF],
  );
  return r.rows[0] as { clockless: number; counted: number; kept: number };
}

/** One block-range delete pass over public.`name` (no index on ts), as the plan `planned` says. */
async function deletePass(name: string, planned: { rows: number; rowsEstimated?: true }) {
  const policy = {
    table: `public.${name}`,
    timeColumn: "ts",
    partitioned: false,
    retention: { keep: "1 year", batchSize: 1_000, batchPauseMs: 0 },
  };
  return await applyPlainRowDelete(t.db, t.url, policy, {
    relation: { schema: "public", name },
    now: NOW,
    before: CUTOFF,
    batchTargetMs: 1,
    ...planned,
  });
}

describe("a delete pass that ends at the counted rows", () => {
  it("rows dated 1970 written into freed space after planning: every counted row still goes, and the pass says so", async () => {
    const name = "c_1";
    // What such writes leave, made directly: the 7,500 clock-less rows in the first blocks (the
    // space an earlier pass freed), then (after a full block of current rows, so that no block
    // holds both) the 15,000 old rows the run counted, then the rest of the 30,000 current ones. Made by VACUUM and the free space map instead, the layout depends on what else
    // the server is doing (under CI's load the new rows once went to the end of the table).
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, v float8, note text);
      INSERT INTO public.${name} (ts, v, note)
        SELECT '1970-01-01'::timestamptz + g * interval '1 s', g, repeat('x', 60) FROM generate_series(1, 7500) g;
      INSERT INTO public.${name} (ts, v, note)
        SELECT '2026-02-01'::timestamptz + g * interval '1 minute', g, repeat('x', 60) FROM generate_series(1, 100) g;
      INSERT INTO public.${name} (ts, v, note)
        SELECT '2020-01-01'::timestamptz + g * interval '1 minute', g, repeat('x', 60) FROM generate_series(15001, 30000) g;
      INSERT INTO public.${name} (ts, v, note)
        SELECT '2026-02-01'::timestamptz + g * interval '1 minute', g, repeat('x', 60) FROM generate_series(101, 30000) g;`);
    await t.pool.query(`VACUUM ANALYZE public.${name}`);
    // The run planned before the clock-less rows were written: it counted 15,000 expired rows.
    const counted = (await expiredLeft(name)).counted;
    expect(counted).toBe(15_000);
    const placed = await t.pool.query(
      `SELECT max((ctid::text::point)[0])::int AS clockless_last,
              (SELECT min((ctid::text::point)[0])::int FROM public.${name} WHERE ts >= '2020-01-01' AND ts < $1) AS counted_first
         FROM public.${name} WHERE ts < '1971-01-01'`,
      [CUTOFF],
    );
    expect(placed.rows[0].clockless_last).toBeLessThan(placed.rows[0].counted_first);

    const { outcome } = await deletePass(name, { rows: counted });
    expect(await expiredLeft(name)).toEqual({ clockless: 0, counted: 0, kept: 30_000 });
    expect(outcome.rows).toBe(22_500);
    expect(outcome.incomplete).toBeUndefined();
  });

  it("a plan with only an estimate (the relation's time index dropped since planning): the pass goes to its end", async () => {
    const name = "c_2";
    // 15,000 expired rows in the first blocks, then 30,000 current ones; no index on the time
    // column, so the pass goes by block range.
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, v float8, note text);
      INSERT INTO public.${name} (ts, v, note)
        SELECT '2020-01-01'::timestamptz + g * interval '1 minute', g, repeat('x', 60) FROM generate_series(1, 15000) g;
      INSERT INTO public.${name} (ts, v, note)
        SELECT '2026-02-01'::timestamptz + g * interval '1 minute', g, repeat('x', 60) FROM generate_series(1, 30000) g;`);
    await t.pool.query(`VACUUM ANALYZE public.${name}`);
    // An estimate far too low: taken as a count, the pass would look for more rows after its first
    // batch (and, an estimate too high, never end early, which is what it does).
    const { outcome, records } = await deletePass(name, { rows: 1, rowsEstimated: true });
    expect(await expiredLeft(name)).toEqual({ clockless: 0, counted: 0, kept: 30_000 });
    expect(outcome.rows).toBe(15_000);
    expect(records.map((r) => r.message)).not.toContain(
      "expired rows remain past the counted ones; deleting on to the end",
    );
  });
});
