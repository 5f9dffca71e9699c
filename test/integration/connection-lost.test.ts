// A connection the job holds (inside a transaction, the cold tier's export snapshot, the runner's
// lock session) that dies under it: the server ends its backend (pg_terminate_backend, a failover,
// a network drop). pg then emits 'error' on a client the pool has lent out, where the pool's own
// listener is not attached; without one of ours Node ends the whole process on an unhandled 'error'
// event. Instead the step using it must fail, the failure be logged and reported, the other tables
// of the run go on where the runner isolates them, and the run end with EXIT.failed. The runner's
// lock session is the exception to "the other tables go on": its locks die with it, so the run
// must start nothing more.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../shared/config/errors.ts";
import { connectDatabase, holdSession, KEEPALIVE_IDLE_MS, openPool } from "../../shared/db/connect.ts";
import { ADVISORY_NAMESPACE, RUN_ADVISORY_NAMESPACE } from "../../shared/run/advisory-lock.ts";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type CliRun, type LogRecord, startCli } from "../support/jobs.ts";

let t: TestDatabase;
let dir: string;
beforeAll(async () => {
  t = await createTestDatabase();
  dir = mkdtempSync(path.join(tmpdir(), "connection-lost-"));
});
afterAll(async () => {
  await t.drop();
  rmSync(dir, { recursive: true, force: true });
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
const MONTHS = ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"];
/** What Node writes when an 'error' event has no listener (and the process dies of it). */
const UNHANDLED = "Unhandled 'error' event";
/** Why PostgreSQL ended the backend: what the report of the lost connection must say. */
const TERMINATED = "terminating connection due to administrator command";
let seq = 0;

/** c_N(id, ts): monthly children 2025-11 .. 2026-03 (three expire at NOW), 100 rows over them. */
async function table(): Promise<string> {
  const name = `c_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)`,
  );
  for (const m of MONTHS) {
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

/** Partitions of public.`name`, by name. */
const partitionNames = async (name: string) =>
  (await partitionsOf(t.url, `public.${name}`)).map((p) => p.name);

/** partition-manager makes 2026-04 and 2026-05 for each table; retention exports three children. */
function policy(name: string, job: Job) {
  return job === "partition-manager"
    ? { table: `public.${name}`, timeColumn: "ts", interval: "monthly", premake: 2 }
    : {
        table: `public.${name}`,
        timeColumn: "ts",
        retention: { keep: "1 month", mode: "export", export: { to: dir } },
      };
}

type Job = "partition-manager" | "retention";

/** `job` over `tables`, paused at `pause` until the returned resume() is called. */
async function startPaused(job: Job, tables: string[], pause: string) {
  const resumeFile = path.join(dir, `resume-${++seq}`);
  const cli = startCli([job, "--now", NOW], {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: tables.map((n) => policy(n, job)) }),
    TELEMETRY_JOBS_FAULT_PAUSE: pause,
    TELEMETRY_JOBS_FAULT_RESUME_FILE: resumeFile,
  });
  await cli.waitFor("paused at fault point", 60_000);
  return {
    cli,
    resume: () => {
      if (!existsSync(resumeFile)) writeFileSync(resumeFile, "");
    },
  };
}

/** The backends of the CLI's `job` run in this file's database that match `where`. */
async function jobBackends(job: Job, where: string): Promise<number[]> {
  const r = await t.pool.query(
    `SELECT a.pid FROM pg_stat_activity a
      WHERE a.datname = current_database() AND a.application_name = $1 AND ${where}`,
    [`telemetry-jobs/${job}`],
  );
  return r.rows.map((row) => row.pid as number);
}

/** The job's ERROR records of a failed connection, with the server's reason. */
const connectionFailures = (cli: CliRun) =>
  cli.lines.filter(
    (l) =>
      l.severity === "ERROR" && l.message === "database connection failed" && l.error?.message === TERMINATED,
  );

/**
 * Ends the job's backend `pid` as an operator or a failover would, then waits until the job has
 * either reported the lost connection or died of it (the defect), so that the job goes on from its
 * pause with a client that has already failed, not one whose end is still on its way.
 */
async function terminate(cli: CliRun, pid: number): Promise<void> {
  const r = await t.pool.query("SELECT pg_terminate_backend($1) AS ok", [pid]);
  expect(r.rows[0].ok).toBe(true);
  let exited = false;
  void cli.done.then(() => {
    exited = true;
  });
  for (let i = 0; i < 600 && !exited && connectionFailures(cli).length === 0; i++)
    await new Promise((resolve) => setTimeout(resolve, 50));
}

/** What every run here must show: no crash, a clear report of the lost connection, EXIT.failed. */
async function expectFailedClearly(cli: CliRun): Promise<LogRecord[]> {
  const { code, signal } = await cli.done;
  const shown = `${cli.stderr}\n${cli.lines.map((l) => JSON.stringify(l)).join("\n")}`;
  expect(cli.stderr, shown).not.toContain(UNHANDLED);
  expect(signal).toBeNull();
  expect(code, shown).toBe(EXIT.failed);
  // The lost connection is an ERROR record with the server's reason, among the run's records, not
  // only the failure of the step that used it.
  expect(connectionFailures(cli), shown).toEqual([expect.objectContaining({ state: "while in use" })]);
  return cli.lines.filter((l) => l.severity === "ERROR");
}

/** This run's audit rows by table and outcome, e.g. {"public.c_1 ok": 1}. */
async function auditedBy(runId: string): Promise<Record<string, number>> {
  const r = await t.pool.query(
    `SELECT table_name || ' ' || outcome AS k, count(*)::int AS n FROM telemetry_jobs.job_actions
      WHERE run_id = $1 GROUP BY 1`,
    [runId],
  );
  return Object.fromEntries(r.rows.map((row) => [row.k, row.n]));
}

const summaryOf = (cli: CliRun) => cli.lines.find((l) => l.event === "run_summary");

describe("a connection the job holds is ended by the server", () => {
  it("inside a transaction: that table fails, the next table is done, the run exits EXIT.failed", async () => {
    const [a, b] = [await table(), await table()];
    const { cli, resume } = await startPaused("partition-manager", [a!, b!], "after-move-rows");
    // Paused inside the attach transaction of the first table's first new partition: its
    // connection is lent out of the pool.
    const open = await jobBackends("partition-manager", "a.state LIKE 'idle in transaction%'");
    expect(open).toHaveLength(1);
    await terminate(cli, open[0]!);
    resume();
    const errors = await expectFailedClearly(cli);
    expect(errors.some((l) => l.table === `public.${a}` && l.message === "table failed")).toBe(true);
    expect(summaryOf(cli)).toMatchObject({
      status: "failed",
      tables: { [`public.${a}`]: "failed", [`public.${b}`]: "ok" },
    });
    // The attach was rolled back with the session; the next table got its partitions.
    expect(await partitionNames(a!)).not.toContain(`${a}_p202604`);
    expect(await partitionNames(b!)).toEqual(expect.arrayContaining([`${b}_p202604`, `${b}_p202605`]));
  }, 120_000);

  it("the cold tier's export snapshot: that table fails, the next table is exported", async () => {
    const [a, b] = [await table(), await table()];
    const { cli, resume } = await startPaused("retention", [a!, b!], "retention-export-row-group");
    // Paused after a row group of the first partition's export, inside its snapshot, on a
    // connection of the cold tier's own pool.
    const open = await jobBackends("retention", "a.state LIKE 'idle in transaction%'");
    expect(open).toHaveLength(1);
    await terminate(cli, open[0]!);
    resume();
    const errors = await expectFailedClearly(cli);
    expect(errors.some((l) => l.table === `public.${a}` && l.message === "table failed")).toBe(true);
    expect(summaryOf(cli)).toMatchObject({
      status: "failed",
      tables: { [`public.${a}`]: "failed", [`public.${b}`]: "ok" },
    });
    // Nothing of the first table was removed without its export; the second lost its expired three.
    expect(await partitionNames(a!)).toHaveLength(MONTHS.length);
    expect(await partitionNames(b!)).toHaveLength(MONTHS.length - 3);
  }, 120_000);

  it("the runner's lock session: no further action or table is started, the run fails saying why", async () => {
    const [a, b] = [await table(), await table()];
    // Paused inside the first of the first table's two actions (create 2026-04, then 2026-05).
    const { cli, resume } = await startPaused("partition-manager", [a!, b!], "after-move-rows");
    const started = cli.lines.find((l) => l.message === "run started");
    // The one session that holds the run's advisory locks (its own, and the first table's).
    const holders = await jobBackends(
      "partition-manager",
      `a.pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND classid::int IN (${ADVISORY_NAMESPACE}, ${RUN_ADVISORY_NAMESPACE}))`,
    );
    expect(holders).toHaveLength(1);
    await terminate(cli, holders[0]!);
    resume();
    await cli.done;
    // The action in flight runs in a transaction of its own, on another connection: it completes
    // and is audited. The next one, which nothing excludes any more, is not started, nor the next
    // table.
    expect(await partitionNames(a!)).toContain(`${a}_p202604`);
    expect(await partitionNames(a!)).not.toContain(`${a}_p202605`);
    expect(await partitionNames(b!)).toHaveLength(MONTHS.length);
    expect(await auditedBy(started!.runId)).toEqual({ [`public.${a} ok`]: 1 });
    const errors = await expectFailedClearly(cli);
    // One record says what happened and what comes next; the tables left are failed, not
    // "interrupted" (SIGTERM's), and the next table is not tried on the dead session.
    const lost = errors.filter((l) => l.event === "lock_session_lost");
    expect(lost).toHaveLength(1);
    expect(lost[0]!.message).toMatch(/lost the database session holding its locks \(terminating connection/);
    expect(lost[0]!.message).toMatch(/work stopped before the next action/);
    expect(lost[0]!.message).toMatch(/the next run of partition-manager picks up/);
    expect(lost[0]).toMatchObject({ tablesStopped: [`public.${a}`], tablesNotStarted: [`public.${b}`] });
    expect(errors.filter((l) => l.message === "table failed")).toEqual([]);
    expect(summaryOf(cli)).toMatchObject({
      status: "failed",
      tables: { [`public.${a}`]: "failed", [`public.${b}`]: "failed" },
      actions: { create_partition: 1 },
    });
    expect(errors.at(-1)).toBe(summaryOf(cli));
    // Its job_runs row is finished, not left `running` for a later run to mark abandoned.
    const row = await t.pool.query("SELECT status, finished_at FROM telemetry_jobs.job_runs WHERE id = $1", [
      started!.runId,
    ]);
    expect(row.rows[0]).toMatchObject({ status: "failed", finished_at: expect.any(Date) });
  }, 120_000);

  it("openPool: every connection probes a silent server (TCP keepalive), so a vanished one fails", async () => {
    // A failover that says nothing leaves an idle lock session waiting forever without probes;
    // the pool's clients are made with these options, which pg applies to each socket.
    const opened = await openPool({ kind: "url", url: t.url }, { job: "test-keepalive" });
    try {
      expect(opened.pool.options).toMatchObject({
        keepAlive: true,
        keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
      });
      const client = await opened.pool.connect();
      const config = client as unknown as { connection: { _keepAlive: boolean } };
      expect(config.connection._keepAlive).toBe(true);
      client.release();
    } finally {
      await opened.close();
    }
  });

  it("openPool: a lent-out client that dies, idle or mid-statement, is reported; its statement fails", async () => {
    const errors: Error[] = [];
    const database = await connectDatabase(
      { kind: "url", url: t.url },
      { job: "test-lost", onIdleError: (e) => errors.push(e) },
    );
    const terminateOurs = () =>
      t.pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'telemetry-jobs/test-lost'`,
      );
    const reported = async (n: number) => {
      for (let i = 0; i < 200 && errors.length < n; i++) await new Promise((r) => setTimeout(r, 25));
    };
    const failure = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e: Error) => e,
      );
    try {
      // Lent out and idle between two statements: the next statement fails.
      const idle = await database.db.connection().execute(async (conn) => {
        await conn.selectNoFrom((eb) => eb.val(1).as("one")).execute();
        await terminateOurs();
        await reported(1);
        return await failure(conn.selectNoFrom((eb) => eb.val(2).as("two")).execute());
      });
      expect(idle).toBeInstanceOf(Error);
      // Reported once per client, with the server's reason, not again when its socket closes.
      expect(errors.map((e) => e.message)).toEqual([TERMINATED]);
      // Lent out with a statement running: the statement rejects with the server's reason, and
      // the socket's end, which pg emits as an 'error' of the client, is reported, not thrown.
      const running = await database.db.connection().execute(async (conn) => {
        const sleep = failure(sql`SELECT pg_sleep(30)`.execute(conn));
        for (let i = 0; i < 200; i++) {
          const r = await t.pool.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'telemetry-jobs/test-lost' AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
          );
          if (r.rows.length > 0) break;
          await new Promise((r) => setTimeout(r, 25));
        }
        await terminateOurs();
        const e = await sleep;
        await reported(2);
        return e;
      });
      expect(running?.message).toBe(TERMINATED);
      expect(errors).toHaveLength(2);
      // The dead clients left the pool: the next query gets a new connection.
      expect(await database.db.selectNoFrom((eb) => eb.val(3).as("three")).execute()).toHaveLength(1);
    } finally {
      await database.close();
    }
  });

  it("holdSession: one backend for the whole work; its end aborts the signal with the server's reason", async () => {
    const database = await connectDatabase(
      { kind: "url", url: t.url },
      { job: "test-held", onIdleError: () => {} },
    );
    const pidOf = async (db: typeof database.db) =>
      (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db)).rows[0]!.pid;
    try {
      const held = await holdSession(database.db, async (session, lost) => {
        const pid = await pidOf(session);
        // Every statement on the session runs on the same backend, and the pool's other
        // connections, in use meanwhile, are not the session.
        expect(await pidOf(database.db)).not.toBe(pid);
        expect(await pidOf(session)).toBe(pid);
        expect(lost.aborted).toBe(false);
        await t.pool.query("SELECT pg_terminate_backend($1)", [pid]);
        for (let i = 0; i < 200 && !lost.aborted; i++) await new Promise((r) => setTimeout(r, 25));
        return { pid, reason: lost.reason as Error };
      });
      expect(held.reason).toBeInstanceOf(Error);
      expect(held.reason.message).toBe(TERMINATED);
      // The dead client was discarded: the next session is a live backend of its own.
      const next = await holdSession(database.db, async (session, lost) => {
        expect(lost.aborted).toBe(false);
        return await pidOf(session);
      });
      expect(next).not.toBe(held.pid);
    } finally {
      await database.close();
    }
  });
});
