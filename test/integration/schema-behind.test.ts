// A new image runs before `migrate up` has (a deploy's usual order is the other way round, but a
// schedule fires when it fires): its jobs need every migration it bundles. A bookkeeping schema
// that is behind is a configuration error, exit 2 before any work, naming the migrations missing
// and the command that applies them; not an SQL error from the first statement that needs them.
import { afterAll, beforeAll, expect, it } from "vitest";
import { MIGRATIONS } from "../../migrations/index.ts";
import { createMigrator, throwIfFailed } from "../../shared/migrate/migrator.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
});
afterAll(async () => {
  await t?.drop();
});

it("a schema one migration behind: exit 2, the missing migration and `migrate up` named", async () => {
  const names = Object.keys(MIGRATIONS);
  const [last, previous] = [names.at(-1)!, names.at(-2)!];
  throwIfFailed(await createMigrator(t.db).migrateTo(previous));
  await t.pool.query(`
    CREATE TABLE public.sb (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);`);
  const env = {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [{ table: "public.sb", timeColumn: "ts" }] }),
  };
  for (const job of ["partition-manager", "retention", "rollup-hourly"]) {
    const run = await runCli([job], env);
    const shown = `${run.stderr}\n${run.lines.map((l) => l.message).join("\n")}`;
    expect(run.code, shown).toBe(2);
    expect(shown).toContain(`${last} not applied`);
    expect(shown).toContain("telemetry-jobs migrate up");
  }
  // Nothing was done: no partition made, no run recorded.
  const made = await t.pool.query(
    "SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.sb'::regclass",
  );
  expect(made.rows[0].n).toBe(0);
  const runs = await t.pool.query("SELECT count(*)::int AS n FROM telemetry_jobs.job_runs");
  expect(runs.rows[0].n).toBe(0);
  // A policy that does not match the database as well: the schema behind is what is named
  // (`migrate up` comes first whatever the policies say).
  const alsoBadPolicy = {
    ...env,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
      tables: [{ table: "public.sb_missing", timeColumn: "ts" }],
    }),
  };
  const both = await runCli(["partition-manager"], alsoBadPolicy);
  const bothShown = `${both.stderr}\n${both.lines.map((l) => l.message).join("\n")}`;
  expect(both.code, bothShown).toBe(2);
  expect(bothShown).toContain(`${last} not applied`);
  expect(bothShown).not.toContain("public.sb_missing does not exist");
  // Once migrated, the same run works.
  expect((await runCli(["migrate", "up"], env)).code).toBe(0);
  expect((await runCli(["partition-manager"], env)).code).toBe(0);
});
