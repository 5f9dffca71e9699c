// Row deletes sized by time: each batch aims at a duration, and the number of blocks per batch
// adapts to how long the last one took. Counts only: how many batches, how many rows; never times.
// The tables here have no index on ts, so they are deleted from by block range, except where a
// test adds one.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { applyPlainRowDelete, runCli, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z";
const CUTOFF = "2026-02-01T00:00:00Z"; // keep 28 days
let seq = 0;

/** b_N(id, ts): `rows` rows from 2026-01-01, one a minute (the first 44,640 before the cutoff). */
async function plainTable(rows: number): Promise<string> {
  const name = `b_${++seq}`;
  await t.pool.query(`
    CREATE TABLE public.${name} (id bigint PRIMARY KEY, ts timestamptz NOT NULL, v float8);
    INSERT INTO public.${name} SELECT g, '2026-01-01'::timestamptz + g * interval '1 minute', g FROM generate_series(1, ${rows}) g;
    `);
  await t.pool.query(`VACUUM ANALYZE public.${name}`);
  return name;
}

async function stats(name: string) {
  const r = await t.pool.query(
    `SELECT count(*) FILTER (WHERE ts < $1)::int AS expired, count(*) FILTER (WHERE ts >= $1)::int AS kept,
            pg_relation_size($2::regclass) / current_setting('block_size')::int AS blocks
       FROM public.${name}`,
    [CUTOFF, `public.${name}`],
  );
  return r.rows[0] as { expired: number; kept: number; blocks: string };
}

async function deleteExpired(name: string, batchSize: number, batchTargetMs: number, rows: number) {
  const policy = {
    table: `public.${name}`,
    timeColumn: "ts",
    partitioned: false,
    retention: { keep: "28 days", batchSize, batchPauseMs: 0 },
  };
  return await applyPlainRowDelete(t.db, t.url, policy, {
    relation: { schema: "public", name },
    now: NOW,
    before: CUTOFF,
    rows,
    batchTargetMs,
  });
}

describe("row-delete batches sized by time", () => {
  it("a tiny target: every batch after the first is one block, up to the block of the last expired row", async () => {
    const name = await plainTable(60_000);
    const before = await stats(name);
    const geometry = await t.pool.query(
      `SELECT (SELECT max((ctid::text::point)[0])::int FROM public.${name} WHERE ts < $1) AS last,
              floor(20000 / (reltuples / relpages))::int AS first
         FROM pg_class WHERE oid = $2::regclass`,
      [CUTOFF, `public.${name}`],
    );
    const { last, first } = geometry.rows[0] as { last: number; first: number };
    expect(last).toBeLessThan(Number(before.blocks) - 10); // the newest rows fill the last blocks
    const { outcome } = await deleteExpired(name, 20_000, 0.001, before.expired);
    expect(outcome.rows).toBe(before.expired);
    expect(await stats(name)).toMatchObject({ expired: 0, kept: before.kept });
    // The first batch is ~20,000 rows; then one block each until the counted rows are all gone:
    // the blocks after the last expired row are not read.
    expect(outcome.batches).toBe(1 + (last + 1 - first));
  });

  it("a long target: the batches grow, far fewer than fixed batches of batchSize rows would be", async () => {
    const name = await plainTable(60_000);
    const before = await stats(name);
    const blocks = Number(before.blocks);
    const { outcome } = await deleteExpired(name, 1_000, 600_000, before.expired);
    expect(outcome.rows).toBe(before.expired);
    expect(await stats(name)).toMatchObject({ expired: 0, kept: before.kept });
    const fixedBatches = Math.ceil(blocks / Math.floor(1_000 / (60_000 / blocks)));
    expect(outcome.batches).toBeGreaterThan(1);
    expect(outcome.batches).toBeLessThan(fixedBatches / 3);
  });

  // Block ranges, a batch a block; then in time order (an index on ts), batches of a few ms.
  it.each([
    ["by block range", false, 0.001],
    ["in time order", true, 5],
  ])(
    "%s: a concurrent writer inserting and updating across the cutoff never fails; only rows older than the cutoff go",
    async (_how, indexed, targetMs) => {
      const name = await plainTable(60_000);
      if (indexed) await t.pool.query(`CREATE INDEX ON public.${name} (ts)`);
      const before = await stats(name);
      const writer = new pg.Client({ connectionString: t.url, options: "-c TimeZone=UTC" });
      await writer.connect();
      const errors: string[] = [];
      const movedToNew: number[] = [];
      let inserted = 0;
      let stop = false;
      const writing = (async () => {
        for (let i = 1; !stop; i++) {
          try {
            await writer.query(`INSERT INTO public.${name} VALUES ($1, $2, 0)`, [1_000_000 + i, NOW]);
            inserted++;
            // An expired row made current: it must survive, wherever its new version lands.
            const id = 1 + ((i * 7919) % 40_000);
            const moved = await writer.query(
              `UPDATE public.${name} SET ts = $2 WHERE id = $1 AND ts < $3 RETURNING id`,
              [id, NOW, CUTOFF],
            );
            if (moved.rowCount === 1) movedToNew.push(id);
          } catch (error) {
            errors.push((error as Error).message);
          }
        }
      })();
      let outcome: Awaited<ReturnType<typeof deleteExpired>>["outcome"];
      try {
        ({ outcome } = await deleteExpired(name, 500, targetMs, before.expired));
      } finally {
        stop = true;
        await writing;
        await writer.end();
      }
      expect(errors).toEqual([]);
      expect(inserted).toBeGreaterThan(0);
      const after = await stats(name);
      expect(after.kept).toBe(before.kept + inserted + movedToNew.length);
      const survivors = await t.pool.query(
        `SELECT count(*)::int AS n FROM public.${name} WHERE id = ANY($1)`,
        [movedToNew],
      );
      expect(survivors.rows[0].n).toBe(new Set(movedToNew).size);
      expect(after.expired).toBe(0);
      expect(outcome.rows).toBe(before.expired - movedToNew.length);
      expect(outcome.path).toMatch(indexed ? /in time order/ : /by block range/);
    },
  );

  it("by block range: a SIGKILL in the middle loses no row newer than the cutoff, and the next run finishes", async () => {
    const name = await plainTable(200_000);
    const before = await stats(name);
    const policy = {
      table: `public.${name}`,
      timeColumn: "ts",
      partitioned: false,
      retention: { keep: "28 days", batchSize: 200, batchPauseMs: 0 },
    };
    const env = { DATABASE_URL: t.url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }) };
    const cli = startCli(["retention", "--now", NOW], {
      ...env,
      TELEMETRY_JOBS_FAULT_PAUSE: "after-delete-batch", // ten batches committed, then frozen
    });
    await cli.waitFor("paused at fault point");
    cli.child.kill("SIGKILL");
    await cli.done;
    const afterKill = await stats(name);
    expect(afterKill.expired).toBeLessThan(before.expired);
    expect(afterKill.expired).toBeGreaterThan(0);
    expect(afterKill.kept).toBe(before.kept);
    const { code, lines } = await runCli(["retention", "--now", NOW], env);
    expect(code).toBe(0);
    expect(lines.find((l) => l.message.startsWith("done: delete "))?.path).toMatch(/by block range/);
    expect(await stats(name)).toMatchObject({ expired: 0, kept: before.kept });
  });
});
