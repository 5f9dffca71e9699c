// Row deletes in time order, for a relation whose btree index leads with the time column: which
// relations get them, and that they delete exactly the rows older than the cutoff whatever the
// times are (duplicates beyond a batch, microseconds either side of the cutoff, infinities, BC
// years, NULLs), in either kind of timestamp column, and whatever the database's DateStyle and
// time zone. The oracle is one statement: the rows not older than the cutoff, or NULL.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DB } from "../../shared/db/schema.ts";
import { applyRetentionAction } from "../../shared/retention/apply.ts";
import { batchEdgeSql, timeOrderIndex } from "../../shared/retention/delete-in-time-order.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { applyPlainRowDelete, captureLogger, makeConfig, runCli, startCli } from "../support/jobs.ts";

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

const policy = (name: string, retention: Record<string, unknown> = {}) => ({
  table: `public.${name}`,
  timeColumn: "ts",
  partitioned: false,
  retention: { keep: "28 days", batchSize: 3, batchPauseMs: 0, ...retention },
});

/** Runs the row deletes of `name` as retention's executor does, with the given first batch size. */
async function deleteExpired(name: string, batchSize: number) {
  return await applyPlainRowDelete(t.db, t.url, policy(name, { batchSize }), {
    relation: { schema: "public", name },
    now: NOW,
    before: CUTOFF,
    rows: 1,
  });
}

/** The ids a correct run keeps: rows not older than the cutoff, and rows with no time. */
async function oracle(name: string): Promise<string[]> {
  const r = await t.pool.query(
    `SELECT id::text FROM public.${name} WHERE NOT (ts < $1) OR ts IS NULL ORDER BY id`,
    [new Date(CUTOFF)],
  );
  return r.rows.map((x) => x.id);
}

async function ids(name: string): Promise<string[]> {
  const r = await t.pool.query(`SELECT id::text FROM public.${name} ORDER BY id`);
  return r.rows.map((x) => x.id);
}

describe("which relations are deleted from in time order", () => {
  const inTimeOrder = /^batched delete in time order by index /;
  const byBlockRange = /^batched delete by block range /;
  const cases: [string, string, RegExp][] = [
    ["an index on the time column", "CREATE INDEX ON public.%s (ts)", inTimeOrder],
    ["a descending index led by the time column", "CREATE INDEX ON public.%s (ts DESC, id)", inTimeOrder],
    ["an index with NULLs first", "CREATE INDEX ON public.%s (ts NULLS FIRST)", inTimeOrder],
    ["a descending index with NULLs last", "CREATE INDEX ON public.%s (ts DESC NULLS LAST)", inTimeOrder],
    // v is column 2, as ts is in the decoy table: the index's column is looked up in its own table.
    ["an index led by another column", "CREATE INDEX ON public.%s (v, ts)", byBlockRange],
    ["a partial index on the time column", "CREATE INDEX ON public.%s (ts) WHERE v > 0", byBlockRange],
    ["an expression index", "CREATE INDEX ON public.%s ((v + 1), ts)", byBlockRange],
    ["a BRIN index on the time column", "CREATE INDEX ON public.%s USING brin (ts)", byBlockRange],
    // A unique index on times that repeat: CREATE INDEX CONCURRENTLY fails and leaves it invalid.
    ["an invalid index", "CREATE UNIQUE INDEX CONCURRENTLY %s_ts ON public.%s (ts)", byBlockRange],
    ["no index", "SELECT 1", byBlockRange],
  ];
  beforeAll(async () => {
    await t.pool.query("CREATE TABLE public.decoy (id bigint, ts timestamptz)");
  });
  it.each(cases)("%s", async (_what, index, path) => {
    const name = `w_${++seq}`;
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigint PRIMARY KEY, v int, ts timestamptz);
      INSERT INTO public.${name} SELECT g, g % 3, '2026-01-01'::timestamptz + (g / 2) * interval '1 hour' FROM generate_series(1, 1500) g;`);
    await t.pool.query(index.replaceAll("%s", name)).catch((error: Error) => {
      if (!/could not create unique index/.test(error.message)) throw error;
    });
    const keep = await oracle(name);
    const { outcome } = await deleteExpired(name, 50);
    expect(outcome.path).toMatch(path);
    expect(outcome.rows).toBe(1500 - keep.length);
    expect(await ids(name)).toEqual(keep);
  });

  it("the read that ends a batch is served by the index alone, in whichever order the index keeps", async () => {
    for (const order of ["", "NULLS FIRST", "DESC", "DESC NULLS LAST"]) {
      const name = `o_${++seq}`;
      await t.pool.query(`
        CREATE TABLE public.${name} (id bigint PRIMARY KEY, ts timestamptz);
        INSERT INTO public.${name} SELECT g, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 20000) g;
        CREATE INDEX ON public.${name} (ts ${order});`);
      await t.pool.query(`VACUUM ANALYZE public.${name}`);
      const config = makeConfig(t.url, [policy(name)], { now: NOW });
      const ctx = {
        db: t.db,
        policy: config.policies[0]!,
        log: captureLogger("retention").log,
        signal: new AbortController().signal,
        now: new Date(NOW),
      };
      const relation = { schema: "public", name };
      const index = await timeOrderIndex(ctx.db, relation, ctx.policy.timeColumn);
      expect(index).toBeDefined();
      const action = {
        kind: "delete_rows" as const,
        relation,
        reason: "plain_table" as const,
        before: new Date(CUTOFF),
        rows: 0,
      };
      const edge = batchEdgeSql(action, "ts", { low: "2026-01-02 00:00:00+00", size: 1000, index: index! });
      const plan = await sql<{ "QUERY PLAN": string }>`EXPLAIN ${edge}`.execute(t.db);
      const text = plan.rows.map((r) => r["QUERY PLAN"]).join("\n");
      expect(text, order).toMatch(/Index Only Scan/);
      expect(text, order).not.toMatch(/Sort/);
    }
  });
});

// Times as PostgreSQL reads them: around the cutoff to the microsecond, the far past and future.
const SPECIAL = [
  "-infinity",
  "infinity",
  "0044-03-15 12:00:00.000001 BC",
  "1970-01-01 00:00:00",
  "2026-01-31 23:59:59.999999+00",
  "2026-02-01 00:00:00+00",
  "2026-02-01 00:00:00.000001+00",
];
const aTime = fc.oneof(
  fc.constantFrom(...SPECIAL),
  // A few microseconds either side of the cutoff, and of another time: bounds a microsecond apart.
  fc.integer({ min: -5, max: 5 }).map((us) => `2026-02-01 00:00:00+00 +${us}us`),
  fc.integer({ min: 0, max: 5 }).map((us) => `2026-01-28 06:00:00.000998+00 +${us}us`),
  // Any microsecond from 2026-01-25 to 2026-02-08, written as microseconds after the first.
  fc.integer({ min: 0, max: 14 * 86_400 * 1_000_000 - 1 }).map((us) => `2026-01-25 00:00:00+00 +${us}us`),
  fc.constant(null),
);
// A crowd: one time, many rows (more than several batches). A timestamp column ignores the +00.
const aCrowd = fc.tuple(aTime, fc.integer({ min: 1, max: 25 }));

describe("exactly the rows older than the cutoff, in time order", () => {
  for (const type of ["timestamptz", "timestamp"]) {
    it(`matches the oracle for any times in a ${type} column`, async () => {
      const name = `p_${type}`;
      await t.pool.query(`CREATE TABLE public.${name} (id bigserial PRIMARY KEY, ts ${type}, v int);
        CREATE INDEX ON public.${name} (ts)`);
      await fc.assert(
        fc.asyncProperty(
          fc.array(aCrowd, { maxLength: 12 }),
          fc.integer({ min: 1, max: 6 }),
          async (crowds, size) => {
            await t.pool.query(`TRUNCATE public.${name}`);
            const times = crowds.flatMap(([time, n]) => Array.from({ length: n }, () => time));
            // A time written as "<start> +<n>us" is that many microseconds after the start.
            await t.pool.query(
              `INSERT INTO public.${name} (ts, v)
             SELECT CASE WHEN x LIKE '% +%us' THEN split_part(x, ' +', 1)::${type}
                      + split_part(split_part(x, ' +', 2), 'us', 1)::bigint * interval '1 microsecond'
                    ELSE x::${type} END, 1
               FROM unnest($1::text[]) x`,
              [times],
            );
            const keep = await oracle(name);
            const { outcome } = await deleteExpired(name, size);
            expect(outcome.path).toMatch(/in time order/);
            expect(await ids(name)).toEqual(keep);
            expect(outcome.rows).toBe(times.length - keep.length);
          },
        ),
        { numRuns: 60 },
      );
    });
  }
});

describe("whatever the session's DateStyle and time zone", () => {
  it("sessions with DateStyle 'SQL, DMY' and TimeZone Asia/Kolkata delete exactly the expired rows", async () => {
    const name = `z_${++seq}`;
    // A day of rows around the cutoff, a second and a microsecond apart. The batches' bounds pass
    // from one batch to the next as text the database writes and reads back. The job's own
    // sessions are ISO and UTC (shared/db/connect.ts); these take the database's defaults, which
    // are neither (day first; IST, which also names Israel's zone). Without the batch's own
    // DateStyle ISO, PostgreSQL 14 and 15 read IST back as Israel's: this failed there.
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigint PRIMARY KEY, ts timestamptz NOT NULL);
      INSERT INTO public.${name}
        SELECT g, '2026-01-31 12:00:00+00'::timestamptz + g * interval '1 second 1 microsecond'
          FROM generate_series(1, 86400) g;
      CREATE INDEX ON public.${name} (ts);`);
    const keep = await oracle(name);
    const database = new URL(t.url).pathname.slice(1);
    await t.pool.query(`ALTER DATABASE "${database}" SET DateStyle = 'SQL, DMY'`);
    await t.pool.query(`ALTER DATABASE "${database}" SET TimeZone = 'Asia/Kolkata'`);
    const plain = new Kysely<DB>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: t.url, max: 2 }) }),
    });
    try {
      const shown = await sql<{ t: string }>`SELECT '2026-02-01 00:00:00+00'::timestamptz::text AS t`.execute(
        plain,
      );
      expect(shown.rows[0]!.t).toBe("01/02/2026 05:30:00 IST"); // the settings are in force
      const config = makeConfig(t.url, [policy(name, { batchSize: 1_000 })], { now: NOW });
      const outcome = await applyRetentionAction(
        {
          db: plain,
          policy: config.policies[0]!,
          log: captureLogger("retention").log,
          signal: new AbortController().signal,
          now: new Date(NOW),
        },
        {
          kind: "delete_rows",
          relation: { schema: "public", name },
          reason: "plain_table",
          before: new Date(CUTOFF),
          rows: 1,
        },
      );
      expect(outcome.path).toMatch(/in time order/);
      expect(outcome.batches).toBeGreaterThan(5);
    } finally {
      await plain.destroy();
      await t.pool.query(`ALTER DATABASE "${database}" RESET DateStyle`);
      await t.pool.query(`ALTER DATABASE "${database}" RESET TimeZone`);
    }
    expect(await ids(name)).toEqual(keep);
  });
});

describe("a row a concurrent update moves out of the batch", () => {
  it("a crowd's row moved to now while its batch waits for it is kept", async () => {
    const name = `u_${++seq}`;
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigint PRIMARY KEY, v int, ts timestamptz);
      INSERT INTO public.${name} SELECT g, 0, '1970-01-01 00:00:00+00' FROM generate_series(1, 50) g;
      CREATE INDEX ON public.${name} (ts);`);
    // The first batch (10 rows of the crowd, the first by ctid) waits for id 1, which another
    // transaction moves to now; when it commits, PostgreSQL re-checks the batch's condition on the
    // new version, which is not expired.
    const mover = new pg.Client({ connectionString: t.url });
    await mover.connect();
    try {
      await mover.query("BEGIN");
      await mover.query(`UPDATE public.${name} SET ts = '2026-02-28 00:00:00+00' WHERE id = 1`);
      const run = deleteExpired(name, 10);
      const database = new URL(t.url).pathname.slice(1);
      let waited = false;
      for (let i = 0; i < 400 && !waited; i++) {
        const waiting = await t.pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM ONLY%'`,
          [database],
        );
        waited = waiting.rows[0].n > 0;
        if (!waited) await new Promise((r) => setTimeout(r, 25));
      }
      expect(waited).toBe(true);
      await mover.query("COMMIT");
      const { outcome } = await run;
      expect(outcome.rows).toBe(49);
    } finally {
      await mover.end();
    }
    expect(await ids(name)).toEqual(["1"]);
  });
});

describe("bounded batches and a vanished index", () => {
  it("5,000 rows sharing one time, with a first batch of 100 rows: many bounded batches, not one", async () => {
    const name = `c_${++seq}`;
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigint PRIMARY KEY, v int, ts timestamptz);
      INSERT INTO public.${name} SELECT g, 0, '1970-01-01 00:00:00+00' FROM generate_series(1, 5000) g;
      INSERT INTO public.${name} SELECT 5000 + g, 0, '2026-01-20 00:00:00+00'::timestamptz + g * interval '1 hour' FROM generate_series(1, 500) g;
      CREATE INDEX ON public.${name} (ts);`);
    const keep = await oracle(name);
    const { outcome } = await deleteExpired(name, 100);
    expect(outcome.path).toMatch(/in time order/);
    // Batches grow by half at most: 100, 150, 225, ... need 9 for the 5,000; one batch took them all before.
    expect(outcome.batches).toBeGreaterThanOrEqual(9);
    expect(await ids(name)).toEqual(keep);
  });

  it("an index rebuilt by REINDEX CONCURRENTLY during the deletes (a new oid): they go on with it to the end", async () => {
    const name = `r_${++seq}`;
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigint PRIMARY KEY, v int, ts timestamptz);
      INSERT INTO public.${name} SELECT g, 0, '2026-01-01 00:00:00+00'::timestamptz + g * interval '10 seconds' FROM generate_series(1, 400000) g;
      CREATE INDEX ${name}_ts ON public.${name} (ts);`);
    const keep = await oracle(name);
    const resume = join(tmpdir(), `time-order-reindex-${process.pid}`);
    if (existsSync(resume)) rmSync(resume);
    const cli = startCli(["retention", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name, { batchSize: 100 })] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "after-delete-batch",
      TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
    });
    await cli.waitFor("paused at fault point");
    const oid = async () =>
      (await t.pool.query(`SELECT $1::regclass::oid::int8 AS o`, [`public.${name}_ts`])).rows[0].o;
    const before = await oid();
    await t.pool.query(`REINDEX INDEX CONCURRENTLY public.${name}_ts`);
    expect(await oid()).not.toBe(before);
    writeFileSync(resume, "");
    const { code } = await cli.done;
    rmSync(resume);
    expect(code).toBe(0);
    expect(cli.lines.some((l) => l.message.startsWith("the index row deletes read was replaced"))).toBe(true);
    expect(cli.lines.some((l) => /was dropped/.test(l.message))).toBe(false);
    expect(await ids(name)).toEqual(keep);
  });

  it("an index dropped during the deletes stops them with a warning; the next run finishes by block range", async () => {
    const name = `g_${++seq}`;
    await t.pool.query(`
      CREATE TABLE public.${name} (id bigint PRIMARY KEY, v int, ts timestamptz);
      INSERT INTO public.${name} SELECT g, 0, '2026-01-01 00:00:00+00'::timestamptz + g * interval '10 seconds' FROM generate_series(1, 400000) g;
      CREATE INDEX ${name}_ts ON public.${name} (ts);`);
    const keep = await oracle(name);
    const env = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name, { batchSize: 100 })] }),
    };
    const resume = join(tmpdir(), `time-order-index-${process.pid}`);
    if (existsSync(resume)) rmSync(resume);
    const cli = startCli(["retention", "--now", NOW], {
      ...env,
      TELEMETRY_JOBS_FAULT_PAUSE: "after-delete-batch", // ten batches committed, then paused
      TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
    });
    await cli.waitFor("paused at fault point");
    await t.pool.query(`DROP INDEX public.${name}_ts`);
    writeFileSync(resume, "");
    const { code } = await cli.done;
    rmSync(resume);
    expect(code).toBe(0);
    expect(cli.lines.some((l) => /the index on the time column of .* was dropped/.test(l.message))).toBe(
      true,
    );
    expect((await ids(name)).length).toBeGreaterThan(keep.length); // it stopped with rows left
    const next = await runCli(["retention", "--now", NOW], env);
    expect(next.code).toBe(0);
    expect(next.lines.find((l) => l.message.startsWith("done: delete "))?.path).toMatch(/by block range/);
    expect(await ids(name)).toEqual(keep);
  });
});
