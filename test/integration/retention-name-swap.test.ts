// Between the plan and the parent's lock, an operator may give an expired child's name to another
// table: a standalone table put under it, or two partitions' names swapped. Retention removes by
// name, so once it holds the locks it checks that each name is still a partition of the table with
// the planned range; otherwise it removes nothing and fails. A reader holding the parent makes the
// run wait for it, which is when the names change. A table without a DEFAULT partition whose parent
// stays busy is removed child by child (mark, DETACH CONCURRENTLY, drop): the same check is made
// when the child is marked, and the drop takes only a table that carries this run's mark.
import type pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z";

/** s(id, ts): an expired month of 10 rows, the current month of 1 row, a DEFAULT partition. */
async function table(name: string, withDefault = true): Promise<void> {
  await t.pool.query(`
    CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.${name}_p202511 PARTITION OF public.${name} FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z');
    CREATE TABLE public.${name}_p202603 PARTITION OF public.${name} FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    ${withDefault ? `CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT;` : ""}
    INSERT INTO public.${name} SELECT g, '2025-11-01Z'::timestamptz + g * interval '12 hours' FROM generate_series(0, 9) g;
    INSERT INTO public.${name} VALUES (1000, '2026-03-05Z');`);
}

/** Runs retention on `name` while a reader holds its parent; `rename` runs once the run waits. */
async function runWhileRenaming(name: string, rename: string) {
  const holder: pg.PoolClient = await t.pool.connect();
  await holder.query(`BEGIN; LOCK TABLE ONLY public.${name} IN ACCESS SHARE MODE`);
  const policy = {
    table: `public.${name}`,
    timeColumn: "ts",
    lockTimeoutMs: 8000,
    retryBudgetMs: 30000,
    retention: { keep: "1 month", mode: "drop" },
  };
  try {
    const running = runRetention(t.db, makeConfig(t.url, [policy], { now: NOW }));
    let waiting = false;
    for (let i = 0; i < 500 && !waiting; i++) {
      const r = await t.pool.query(
        `SELECT count(*)::int AS n FROM pg_locks l
          WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.relation = $1::regclass AND l.mode = 'AccessExclusiveLock' AND NOT l.granted`,
        [`public.${name}`],
      );
      waiting = r.rows[0].n > 0;
      if (!waiting) await new Promise((r) => setTimeout(r, 10));
    }
    expect(waiting).toBe(true);
    await t.pool.query(rename);
    await holder.query("COMMIT");
    return await running;
  } finally {
    holder.release();
  }
}

async function count(sql: string): Promise<number> {
  return (await t.pool.query(sql)).rows[0].n;
}

it("a standalone table put under an expired child's name is not dropped", async () => {
  await table("s");
  const run = await runWhileRenaming(
    "s",
    `ALTER TABLE public.s_p202511 RENAME TO s_p202511_kept;
     CREATE TABLE public.s_p202511 (note text);
     INSERT INTO public.s_p202511 VALUES ('kept');`,
  );
  expect(run.status).toBe("failed");
  expect(await count("SELECT count(*)::int AS n FROM public.s_p202511")).toBe(1);
  expect(await count("SELECT count(*)::int AS n FROM public.s_p202511_kept")).toBe(10);
  const error = run.logs.find(
    (l) => l.severity === "ERROR" && /no longer the partition/.test(String(l.error ?? l.message)),
  );
  expect(error).toBeDefined();
  expect(run.logs.filter((l) => /^done: /.test(l.message))).toEqual([]);
});

it("two partitions' names swapped: the current month is not dropped for the expired one", async () => {
  await table("w");
  const run = await runWhileRenaming(
    "w",
    `ALTER TABLE public.w_p202511 RENAME TO w_tmp;
     ALTER TABLE public.w_p202603 RENAME TO w_p202511;
     ALTER TABLE public.w_tmp RENAME TO w_p202603;`,
  );
  expect(run.status).toBe("failed");
  expect(await count("SELECT count(*)::int AS n FROM public.w WHERE ts >= '2026-03-01Z'")).toBe(1);
  expect(await count("SELECT count(*)::int AS n FROM public.w WHERE ts < '2026-01-01Z'")).toBe(10);
  // The next run plans from the names as they are now and removes the expired month only.
  const next = await runRetention(
    t.db,
    makeConfig(t.url, [{ table: "public.w", timeColumn: "ts", retention: { keep: "1 month" } }], {
      now: NOW,
    }),
  );
  expect(next.exitCode).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM public.w WHERE ts >= '2026-03-01Z'")).toBe(1);
  expect(await count("SELECT count(*)::int AS n FROM public.w WHERE ts < '2026-01-01Z'")).toBe(0);
});

it("no DEFAULT, the parent busy: names swapped before the mark, the current month is kept", async () => {
  await table("c", false);
  // The holder keeps the parent busy past the together attempt's short wait, so the run removes the
  // child by itself, and holds the expired child so that its mark waits: the names change then.
  const holder: pg.PoolClient = await t.pool.connect();
  await holder.query(`BEGIN; LOCK TABLE ONLY public.c IN ACCESS SHARE MODE;
    LOCK TABLE public.c_p202511 IN SHARE UPDATE EXCLUSIVE MODE`);
  const policy = { table: "public.c", timeColumn: "ts", lockTimeoutMs: 8000, retryBudgetMs: 30000 };
  try {
    const running = runRetention(
      t.db,
      makeConfig(t.url, [{ ...policy, retention: { keep: "1 month", mode: "drop" } }], { now: NOW }),
    );
    let waiting = false;
    for (let i = 0; i < 500 && !waiting; i++) {
      const r = await t.pool.query(
        `SELECT count(*)::int AS n FROM pg_locks l
          WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.relation = 'public.c_p202511'::regclass AND l.mode = 'ShareUpdateExclusiveLock'
            AND NOT l.granted`,
      );
      waiting = r.rows[0].n > 0;
      if (!waiting) await new Promise((r) => setTimeout(r, 10));
    }
    expect(waiting).toBe(true);
    await holder.query(`ALTER TABLE public.c_p202511 RENAME TO c_tmp;
      ALTER TABLE public.c_p202603 RENAME TO c_p202511;
      ALTER TABLE public.c_tmp RENAME TO c_p202603;
      COMMIT`);
    const run = await running;
    expect(run.status).toBe("failed");
    expect(run.logs.some((l) => /no longer the partition/.test(String(l.error ?? l.message)))).toBe(true);
  } finally {
    holder.release();
  }
  expect(await count("SELECT count(*)::int AS n FROM public.c WHERE ts >= '2026-03-01Z'")).toBe(1);
  expect(await count("SELECT count(*)::int AS n FROM public.c WHERE ts < '2026-01-01Z'")).toBe(10);
  const next = await runRetention(
    t.db,
    makeConfig(t.url, [{ ...policy, retention: { keep: "1 month" } }], { now: NOW }),
  );
  expect(next.exitCode).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM public.c WHERE ts >= '2026-03-01Z'")).toBe(1);
  expect(await count("SELECT count(*)::int AS n FROM public.c WHERE ts < '2026-01-01Z'")).toBe(0);
});

it("no DEFAULT: names swapped while DETACH CONCURRENTLY waits for the parent, nothing is detached", async () => {
  await table("d", false);
  // SHARE UPDATE EXCLUSIVE on the parent: the together attempt gives up, and the child's DETACH
  // ... CONCURRENTLY waits here, after its name was checked and before it is looked up.
  const holder: pg.PoolClient = await t.pool.connect();
  await holder.query("BEGIN; LOCK TABLE ONLY public.d IN SHARE UPDATE EXCLUSIVE MODE");
  const policy = { table: "public.d", timeColumn: "ts", lockTimeoutMs: 1000, retryBudgetMs: 30000 };
  try {
    const running = runRetention(
      t.db,
      makeConfig(t.url, [{ ...policy, retention: { keep: "1 month", mode: "drop" } }], { now: NOW }),
    );
    let waiting = false;
    for (let i = 0; i < 500 && !waiting; i++) {
      const r = await t.pool.query(
        `SELECT count(*)::int AS n FROM pg_locks l
          WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.relation = 'public.d'::regclass AND l.mode = 'ShareUpdateExclusiveLock' AND NOT l.granted`,
      );
      waiting = r.rows[0].n > 0;
      if (!waiting) await new Promise((r) => setTimeout(r, 10));
    }
    expect(waiting).toBe(true);
    await holder.query(`ALTER TABLE public.d_p202511 RENAME TO d_tmp;
      ALTER TABLE public.d_p202603 RENAME TO d_p202511;
      ALTER TABLE public.d_tmp RENAME TO d_p202603;
      COMMIT`);
    const run = await running;
    expect(run.status).toBe("failed");
  } finally {
    holder.release();
  }
  // Both months still attached: the current one takes its inserts.
  await t.pool.query("INSERT INTO public.d VALUES (1001, '2026-03-06Z')");
  expect(await count("SELECT count(*)::int AS n FROM public.d WHERE ts >= '2026-03-01Z'")).toBe(2);
  expect(await count("SELECT count(*)::int AS n FROM public.d WHERE ts < '2026-01-01Z'")).toBe(10);
});
