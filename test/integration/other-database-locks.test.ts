// Relation oids are unique within one database only: a copy of the database in the same cluster
// (a clone for staging, CREATE DATABASE ... TEMPLATE) has the same table under the same oid. A
// session there that holds a lock on its copy must not look, to a job here, like a holder of ours.
// Partition-manager's rescue refuses to queue behind a long holder of the parent; it used to find
// one in the other database and fail the table, so no partition was made at all.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { EXIT } from "../../shared/config/errors.ts";
import { databaseUrl } from "../support/global-setup.ts";
import { runCli } from "../support/jobs.ts";

const adminUrl = inject("adminUrl");
const suffix = randomBytes(4).toString("hex");
const ours = `t_ours_${suffix}`;
const copy = `t_copy_${suffix}`;
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${ours} TEMPLATE ${inject("templateDb")}`);
  const c = new pg.Client({ connectionString: databaseUrl(adminUrl, ours) });
  await c.connect();
  await c.query("CREATE TABLE public.rr (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
  await c.query("CREATE TABLE public.rr_default PARTITION OF public.rr DEFAULT");
  // November has no partition yet: its rows are in DEFAULT, so making it is a rescue.
  await c.query(
    "INSERT INTO public.rr SELECT g, '2026-11-01Z'::timestamptz + g * interval '1 hour' FROM generate_series(1, 100) g",
  );
  await c.end();
  await admin.query(`CREATE DATABASE ${copy} TEMPLATE ${ours}`);
});
afterAll(async () => {
  for (const name of [ours, copy]) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

it("a long lock on the same oid in another database does not stop a rescue here", async () => {
  const reader = new pg.Client({ connectionString: databaseUrl(adminUrl, copy) });
  await reader.connect();
  try {
    const oids = await reader.query("SELECT 'public.rr'::regclass::oid::int AS oid");
    const mine = new pg.Client({ connectionString: databaseUrl(adminUrl, ours) });
    await mine.connect();
    const here = await mine.query("SELECT 'public.rr'::regclass::oid::int AS oid");
    await mine.end();
    expect(oids.rows[0].oid).toBe(here.rows[0].oid); // the premise: one oid, two databases
    await reader.query("BEGIN");
    await reader.query("LOCK TABLE public.rr IN ACCESS SHARE MODE");
    await new Promise((r) => setTimeout(r, 1_200)); // older than the run's lockTimeoutMs
    const policy = {
      table: "public.rr",
      timeColumn: "ts",
      premake: 2,
      lockTimeoutMs: 1_000,
      retryBudgetMs: 3_000,
    };
    const run = await runCli(["partition-manager", "--now", "2026-11-21T00:00:00Z"], {
      DATABASE_URL: databaseUrl(adminUrl, ours),
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
    });
    expect(run.code, run.stderr + JSON.stringify(run.lines.filter((l) => l.severity === "ERROR"))).toBe(
      EXIT.ok,
    );
    const check = new pg.Client({ connectionString: databaseUrl(adminUrl, ours) });
    await check.connect();
    const moved = await check.query(
      "SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM public.rr GROUP BY 1 ORDER BY 1",
    );
    await check.end();
    expect(moved.rows).toEqual([{ part: "rr_p202611", n: 100 }]);
  } finally {
    await reader.query("ROLLBACK").catch(() => {});
    await reader.end();
  }
}, 120_000);
