// A run killed before it finished its job_runs row (SIGKILL, out of memory, a lost host) used to stay
// `running` forever. Every run now holds a lock of its own while it lasts; the next run of the same
// job takes the lock of each earlier `running` run it can, which proves no process runs it any more,
// and marks that run `abandoned` (migration 0011 allows the status), with a WARN record. A run that
// is still going (another table's, another shard's) holds its lock and is left alone.
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMigrator, throwIfFailed } from "../../shared/migrate/migrator.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type CliRun, makeConfig, runRetention, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
let seq = 0;

/** a_N(id, ts): monthly children 2025-11 .. 2026-03 (three expire), 100 rows over them. */
async function table(): Promise<string> {
  const name = `a_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
  for (const m of ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]) {
    const from = new Date(`${m}-01T00:00:00Z`);
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    await t.pool.query(
      `CREATE TABLE public.${name}_p${m.replace("-", "")} PARTITION OF public.${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
    );
  }
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours' FROM generate_series(0, 99) g`,
  );
  return name;
}

const policy = (name: string) => ({
  table: `public.${name}`,
  timeColumn: "ts",
  // Mode detach finishes in a second transaction: a run paused between the two holds no transaction.
  retention: { keep: "1 month", mode: "detach" },
});

async function runs(ids: readonly string[]) {
  const r = await t.pool.query(
    "SELECT id::text AS id, status, finished_at IS NOT NULL AS finished FROM telemetry_jobs.job_runs WHERE id = ANY($1::int8[]) ORDER BY id",
    [ids],
  );
  return r.rows;
}

/** Sessions of the CLI's retention runs in this file's database. */
async function cliSessions(): Promise<number> {
  const r = await t.pool.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'telemetry-jobs/retention'",
  );
  return r.rows[0].n;
}

/** Starts retention on `name` in a process of its own, paused between its detach and its drop. */
async function pausedRun(name: string): Promise<{ cli: CliRun; runId: string }> {
  const cli = startCli(["retention", "--now", NOW], {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name)] }),
    TELEMETRY_JOBS_FAULT_PAUSE: "retention-after-detach",
  });
  const started = await cli.waitFor("run started", 60_000);
  await cli.waitFor("paused at fault point", 60_000);
  return { cli, runId: String(started.runId) };
}

describe("abandoned runs", () => {
  it("the next run marks a killed run abandoned, and leaves a live one running", async () => {
    const [x, y] = [await table(), await table()];
    const { cli, runId: killed } = await pausedRun(x);

    // Alive (paused) on x: a run of the same job on y leaves it as it is.
    const other = await runRetention(t.db, makeConfig(t.url, [policy(y)], { now: NOW }));
    expect(other.exitCode).toBe(0);
    expect(other.logs.filter((l) => l.event === "runs_abandoned")).toEqual([]);
    expect(await runs([killed])).toEqual([{ id: killed, status: "running", finished: false }]);

    cli.child.kill("SIGKILL");
    expect((await cli.done).signal).toBe("SIGKILL");
    for (let i = 0; i < 200 && (await cliSessions()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await cliSessions()).toBe(0);

    const next = await runRetention(t.db, makeConfig(t.url, [policy(x)], { now: NOW }));
    expect(next.exitCode).toBe(0);
    expect(next.summary.actions).toEqual({ finish_removal: 3 });
    const warned = next.logs.filter((l) => l.event === "runs_abandoned");
    expect(warned).toHaveLength(1);
    expect(warned[0]!.severity).toBe("WARNING");
    expect(warned[0]!.abandonedRuns.map((r: { id: string }) => r.id)).toEqual([killed]);
    expect(warned[0]!.message).toContain(`ended without finishing (killed or lost): ${killed} (started`);
    const nextId = String(next.logs.find((l) => l.message === "run started")!.runId);
    expect(await runs([killed, nextId])).toEqual([
      { id: killed, status: "abandoned", finished: true },
      { id: nextId, status: "ok", finished: true },
    ]);

    // Marked once: the run after that has nothing to say about it.
    const again = await runRetention(t.db, makeConfig(t.url, [policy(x)], { now: NOW }));
    expect(again.logs.filter((l) => l.event === "runs_abandoned")).toEqual([]);
  });

  it("a run releases its own lock when it ends: the pooled session keeps none", async () => {
    const name = await table();
    const run = await runRetention(t.db, makeConfig(t.url, [policy(name)], { now: NOW }));
    expect(run.exitCode).toBe(0);
    const held = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database =
        (SELECT oid FROM pg_database WHERE datname = current_database())`.execute(t.db);
    expect(held.rows[0]!.n).toBe(0);
  });

  it("migration 0011 allows the status; down turns abandoned runs into failed ones", async () => {
    const pool = new pg.Pool({ connectionString: t.url, max: 1 });
    pool.on("error", () => {});
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    try {
      const insert = () =>
        sql<{ id: string }>`INSERT INTO telemetry_jobs.job_runs (job, logical_now, status)
          VALUES ('migration-test', now(), 'abandoned') RETURNING id::text AS id`.execute(db);
      const { id } = (await insert()).rows[0]!;
      const migrator = createMigrator(db, "product");
      throwIfFailed(await migrator.migrateDown());
      const status = await sql<{ status: string }>`
        SELECT status FROM telemetry_jobs.job_runs WHERE id = ${id}::int8`.execute(db);
      expect(status.rows).toEqual([{ status: "failed" }]);
      await expect(insert()).rejects.toThrow(/job_runs_status_check/);
      throwIfFailed(await migrator.migrateUp());
      expect((await insert()).rows).toHaveLength(1);
    } finally {
      await db.destroy();
    }
  });
});
