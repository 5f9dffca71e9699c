// What one retention run costs besides its removals, counted in statements: every statement a job
// sends goes through the Kysely instance it is given, and one built with a `log` hook records them.
// Removals applied together (one transaction) are audited together: one INSERT, so one commit and
// one WAL flush, with one row per action as before.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionOptions } from "../../shared/db/connect.ts";
import type { DB } from "../../shared/db/schema.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
let t: TestDatabase;
let pool: pg.Pool;
let counted: Kysely<DB>;
const statements: string[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  pool = new pg.Pool({ connectionString: t.url, max: 5, ...sessionOptions("test") });
  pool.on("error", () => {});
  counted = new Kysely<DB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      statements.push(event.query.sql);
    },
  });
});
afterAll(async () => {
  await counted.destroy();
  await t.drop();
});

let seq = 0;
/** c_N(id, ts): monthly children 2025-11 .. 2026-03 (three expire), 100 rows over them; DEFAULT if asked. */
async function table(withDefault = false): Promise<string> {
  const name = `c_${++seq}`;
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
  if (withDefault)
    await t.pool.query(`CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT`);
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours' FROM generate_series(0, 99) g;
     ANALYZE public.${name}`,
  );
  return name;
}

function config(name: string, mode = "drop") {
  return makeConfig(
    t.url,
    [{ table: `public.${name}`, timeColumn: "ts", retention: { keep: "1 month", mode } }],
    {
      now: NOW,
    },
  );
}

const count = (re: RegExp) => statements.filter((s) => re.test(s)).length;

describe("retention's fixed cost per run", () => {
  it("audits the removals done together with one INSERT, one row per removal", async () => {
    const name = await table();
    statements.length = 0;
    const run = await runRetention(counted, config(name));
    expect(run.exitCode).toBe(0);
    expect(count(/insert into "telemetry_jobs"\."job_actions"/i)).toBe(1);
    const rows = await t.pool.query(
      `SELECT kind, partition_name, range_from, range_to, rows, outcome, detail->>'path' AS path,
              detail->>'mode' AS mode, detail->>'hold' AS hold
         FROM telemetry_jobs.job_actions WHERE table_name = $1 ORDER BY id`,
      [`public.${name}`],
    );
    expect(rows.rows.map((r) => [r.kind, r.partition_name, r.range_from, r.range_to, r.outcome])).toEqual(
      ["2025-11", "2025-12", "2026-01"].map((m) => {
        const from = new Date(`${m}-01T00:00:00Z`);
        return [
          "remove_partition",
          `public.${name}_p${m.replace("-", "")}`,
          from,
          new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1)),
          "ok",
        ];
      }),
    );
    for (const r of rows.rows) {
      expect(Number(r.rows)).toBeGreaterThan(0);
      expect(r.path).toMatch(/^drop \(ACCESS EXCLUSIVE .*3 in one transaction, with their audit rows\)$/);
      expect([r.mode, r.hold]).toEqual(["drop", "none"]);
    }
    // The summary counts each removal, and the log has one "done" record for each.
    expect(run.summary.actions).toEqual({ remove_partition: 3 });
    expect(run.logs.filter((l) => /^done: drop /.test(l.message))).toHaveLength(3);
  });

  it("reads the table's catalog once per run, in one transaction with its rows", async () => {
    const name = await table(true);
    await t.pool.query(`INSERT INTO public.${name} VALUES (1000, '2027-01-01')`); // a row in DEFAULT
    statements.length = 0;
    const run = await runRetention(counted, config(name));
    expect(run.exitCode).toBe(0);
    expect(run.summary.actions).toEqual({ remove_partition: 3 });
    // The policy check's read of the table (relkind, key) serves the run's catalog read too.
    expect(count(/AS relkind/)).toBe(1);
    // One transaction reads the catalog and which children hold rows; one detaches, drops and
    // writes the audit rows.
    expect(count(/^begin/i)).toBe(2);
    // Retention needs neither DEFAULT's rows by interval (a scan of DEFAULT) nor the columns.
    expect(count(/date_trunc/)).toBe(0);
    expect(count(/attgenerated/)).toBe(0);
  });

  it("writes its job_runs row with two statements, which also take and release the run's lock", async () => {
    const name = await table();
    statements.length = 0;
    const run = await runRetention(counted, config(name));
    expect(run.exitCode).toBe(0);
    // The start (which also marks abandoned runs and takes the run's lock), and the finish (which
    // releases it); the only unlock of its own is the table's.
    expect(count(/job_runs/)).toBe(2);
    expect(count(/^\s*select pg_advisory_unlock/i)).toBe(1);
    const held = await t.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    expect(held.rows[0].n).toBe(0);
  });
});
