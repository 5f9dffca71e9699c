// Premaking partitions beside a large DEFAULT partition. ATTACH proves a new range absent from
// DEFAULT by scanning all of it under ACCESS EXCLUSIVE on DEFAULT, unless a valid CHECK on DEFAULT
// implies it: partition-manager validates one such guard for all the far-future ranges of a run
// (SHARE UPDATE EXCLUSIVE: nobody waits) and drops it afterwards, so the attaches read DEFAULT not
// at all. Counted here with PostgreSQL's own tuple counters: a run reads DEFAULT once more than a
// run with nothing to do (the validation), however many partitions it attaches; and a run killed
// while the guard is in place is finished by the next one, which leaves no guard behind.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionOptions } from "../../shared/db/connect.ts";
import type { DB } from "../../shared/db/schema.ts";
import { DEFAULT_GUARD_CONSTRAINT } from "../../shared/partitions/naming.ts";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

// The real clock: the executor also checks how far ahead a range is against the server's clock.
const NOW = new Date();
const DEFAULT_ROWS = 300_000;
const monthStart = (offset: number) =>
  new Date(Date.UTC(NOW.getUTCFullYear(), NOW.getUTCMonth() + offset, 1));
const monthName = (table: string, offset: number) => {
  const d = monthStart(offset);
  return `${table}_p${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
};

/** A table with this month and the next, and DEFAULT_ROWS rows dated years ahead in DEFAULT. */
async function tableWithLargeDefault(name: string, rows = DEFAULT_ROWS) {
  await t.pool.query(
    `CREATE TABLE public.${name} (id bigint NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts)`,
  );
  await t.pool.query(`CREATE INDEX ON public.${name} (ts)`);
  const policy = { table: `public.${name}`, timeColumn: "ts", premake: 1 };
  expect((await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }))).exitCode).toBe(0);
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, $1::timestamptz + interval '4 years' + g * interval '1 second', g
       FROM generate_series(1, ${rows}) g`,
    [NOW],
  );
  return policy;
}

async function guardOf(table: string): Promise<{ convalidated: boolean }[]> {
  const r = await t.pool.query(
    `SELECT convalidated FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2`,
    [`public.${table}_default`, DEFAULT_GUARD_CONSTRAINT],
  );
  return r.rows;
}

/**
 * Rows read from DEFAULT by sequential scans during one partition-manager run, from
 * pg_stat_user_tables. The run has its own sessions, closed at its end: a backend flushes its
 * counters when it exits, so once they are gone (and the counter has settled) the figure is whole.
 */
async function defaultRowsReadBy(table: string, run: (db: Kysely<DB>) => Promise<number>): Promise<number> {
  const read = async () => {
    const r = await t.pool.query(
      "SELECT pg_stat_clear_snapshot(), (SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = $1::regclass)::float8 AS n",
      [`public.${table}_default`],
    );
    return Number(r.rows[0].n);
  };
  const before = await read();
  const job = "default-guard-stats";
  const pool = new pg.Pool({ connectionString: t.url, max: 2, ...sessionOptions(job) });
  pool.on("error", () => {});
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  try {
    expect(await run(db)).toBe(0);
  } finally {
    await db.destroy();
  }
  for (let i = 0; i < 200; i++) {
    const left = await t.pool.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
      [`telemetry-jobs/${job}`],
    );
    if (left.rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  // A backend leaves pg_stat_activity a moment before its last counters land: wait until settled.
  let last = await read();
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await read();
    if (now === last && i >= 2) break;
    last = now;
  }
  return last - before;
}

describe("premaking beside a large DEFAULT partition", () => {
  it("reads DEFAULT once for the guard and never for the attaches", async () => {
    const policy = await tableWithLargeDefault("dg");
    const premake = { ...policy, premake: 4 }; // three more months, each more than a day ahead
    const made = await defaultRowsReadBy("dg", async (db) => {
      const run = await runPartitionManager(db, makeConfig(t.url, [premake], { now: NOW }));
      expect(run.summary.actions).toEqual({ guard_default: 1, create_partition: 3, drop_default_guard: 1 });
      return run.exitCode;
    });
    // The same run again has nothing to do: what every run reads (the catalog's look at DEFAULT).
    const idle = await defaultRowsReadBy("dg", async (db) => {
      const run = await runPartitionManager(db, makeConfig(t.url, [premake], { now: NOW }));
      expect(run.summary.actions).toEqual({});
      return run.exitCode;
    });
    expect(idle).toBeGreaterThan(0);
    // One validation of the guard; three attaches that each scanned DEFAULT would add 3 x DEFAULT_ROWS.
    expect(made - idle).toBe(DEFAULT_ROWS);
    expect((await partitionsOf(t.url, "public.dg")).map((p) => p.name)).toEqual([
      "dg_default",
      ...[0, 1, 2, 3, 4].map((i) => monthName("dg", i)),
    ]);
    expect(await guardOf("dg")).toEqual([]);
    const inDefault = await t.pool.query("SELECT count(*)::int AS n FROM ONLY public.dg_default");
    expect(inDefault.rows[0].n).toBe(DEFAULT_ROWS);
  });

  it("after a SIGKILL while the guard is in place, the next run attaches and removes it", async () => {
    const policy = await tableWithLargeDefault("dk");
    const premake = { ...policy, premake: 3 };
    const cli = startCli(["partition-manager"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [premake] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "after-create-table",
    });
    await cli.waitFor("paused at fault point", 60_000);
    // The guard is valid: attaching the first standalone table needs no scan of DEFAULT, as
    // PostgreSQL says itself (and rolled back: the job's own attach is still to come).
    expect(await guardOf("dk")).toEqual([{ convalidated: true }]);
    const proof = await t.pool.connect();
    const notices: string[] = [];
    proof.on("notice", (n) => notices.push(n.message ?? ""));
    try {
      await proof.query("BEGIN");
      await proof.query("SET LOCAL client_min_messages = debug1");
      await proof.query(
        `ALTER TABLE public.dk ATTACH PARTITION public.${monthName("dk", 2)} FOR VALUES FROM ('${monthStart(2).toISOString()}') TO ('${monthStart(3).toISOString()}')`,
      );
    } finally {
      await proof.query("ROLLBACK");
      proof.release();
    }
    expect(
      notices.some((m) => /default partition "dk_default" is implied by existing constraints/.test(m)),
    ).toBe(true);
    // The window the guard opens: a row dated in a guarded range is refused instead of landing in
    // DEFAULT (only a device clock more than a day ahead writes there); other rows go on.
    await expect(
      t.pool.query("INSERT INTO public.dk VALUES (-1, $1, 0)", [
        new Date(monthStart(3).getTime() + 3_600_000),
      ]),
    ).rejects.toMatchObject({ code: "23514" });
    await t.pool.query("INSERT INTO public.dk VALUES (-2, $1, 0)", [NOW]);

    cli.child.kill("SIGKILL");
    expect((await cli.done).signal).toBe("SIGKILL");
    for (let i = 0; i < 100; i++) {
      const held = await t.pool.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      );
      if (held.rows[0].n === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await guardOf("dk")).toEqual([{ convalidated: true }]);

    const run = await runPartitionManager(t.db, makeConfig(t.url, [premake], { now: NOW }));
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect((await partitionsOf(t.url, "public.dk")).map((p) => p.name)).toEqual([
      "dk_default",
      ...[0, 1, 2, 3].map((i) => monthName("dk", i)),
    ]);
    expect(await guardOf("dk")).toEqual([]);
    await t.pool.query("INSERT INTO public.dk VALUES (-3, $1, 0)", [
      new Date(monthStart(3).getTime() + 3_600_000),
    ]);
    const landed = await t.pool.query("SELECT tableoid::regclass::text AS part FROM public.dk WHERE id = -3");
    expect(landed.rows).toEqual([{ part: monthName("dk", 3) }]);
  }, 120_000);

  it("after a SIGKILL during the guard's validation, the next run attaches and removes it", async () => {
    // A DEFAULT big enough for the validation to be seen running.
    const policy = await tableWithLargeDefault("dv", 2_000_000);
    const premake = { ...policy, premake: 3 };
    const cli = startCli(["partition-manager"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [premake] }),
    });
    let validating = false;
    for (let i = 0; i < 20_000 && !validating; i++) {
      const r = await t.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE '%VALIDATE CONSTRAINT%' AND pid <> pg_backend_pid()",
      );
      validating = r.rows[0].n > 0;
    }
    cli.child.kill("SIGKILL");
    expect((await cli.done).signal).toBe("SIGKILL");
    expect(validating, "the validation was never seen running").toBe(true);
    // The killed session goes on until PostgreSQL notices the closed socket: wait for it to end.
    for (let i = 0; i < 200; i++) {
      const r = await t.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'telemetry-jobs/partition-manager'",
      );
      if (r.rows[0].n === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await guardOf("dv")).length).toBe(1);

    const run = await runPartitionManager(t.db, makeConfig(t.url, [premake], { now: NOW }));
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect((await partitionsOf(t.url, "public.dv")).map((p) => p.name)).toEqual([
      "dv_default",
      ...[0, 1, 2, 3].map((i) => monthName("dv", i)),
    ]);
    expect(await guardOf("dv")).toEqual([]);
    const inDefault = await t.pool.query("SELECT count(*)::int AS n FROM ONLY public.dv_default");
    expect(inDefault.rows[0].n).toBe(2_000_000);
  }, 120_000);

  it("drops a leftover guard that no longer proves anything, even when it plans no new one", async () => {
    await t.pool.query(
      "CREATE TABLE public.dl (id bigint NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    const policy = { table: "public.dl", timeColumn: "ts", premake: 1 };
    expect((await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }))).exitCode).toBe(0);
    // As a run killed between adding and validating it would leave it: NOT VALID, refusing a range.
    await t.pool.query(
      `ALTER TABLE public.dl_default ADD CONSTRAINT ${DEFAULT_GUARD_CONSTRAINT}
         CHECK (ts IS NULL OR ts < '${monthStart(6).toISOString()}' OR ts >= '${monthStart(7).toISOString()}') NOT VALID`,
    );
    const run = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }));
    expect(run.exitCode).toBe(0);
    expect(run.summary.actions).toEqual({ drop_default_guard: 1 });
    expect(await guardOf("dl")).toEqual([]);
    await t.pool.query("INSERT INTO public.dl VALUES (1, $1)", [
      new Date(monthStart(6).getTime() + 3_600_000),
    ]);
  });
});
