import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../migrations/index.ts";
import { STARTER_MIGRATIONS } from "../../migrations/starter/index.ts";
import {
  createMigrator,
  migrateToLatest,
  migrationStatus,
  throwIfFailed,
} from "../../shared/migrate/migrator.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

let t: TestDatabase;
let db: Kysely<any>;
beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  const pool = new pg.Pool({ connectionString: t.url, max: 2 });
  // DROP DATABASE ... WITH (FORCE) terminates clients still closing; without a listener that is an
  // uncaught exception that fails the run (seen once on PostgreSQL 14).
  pool.on("error", () => {});
  db = new Kysely({ dialect: new PostgresDialect({ pool }) });
});
afterAll(async () => {
  await db.destroy();
  await t.drop();
});

async function tables(): Promise<string[]> {
  const r = await sql<{ name: string }>`
    SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'telemetry_jobs') ORDER BY 1`.execute(db);
  return r.rows.map((row) => row.name);
}

describe("migrations", () => {
  it("each migration goes up and down, and up again: the product's (nothing in public), then the starter schema's", async () => {
    const product = createMigrator(db, "product");
    const starter = createMigrator(db, "starter");
    const steps = [
      ...Object.keys(MIGRATIONS).map(() => product),
      ...Object.keys(STARTER_MIGRATIONS).map(() => starter),
    ];
    const snapshots: string[][] = [await tables()];
    for (const migrator of steps) {
      throwIfFailed(await migrator.migrateUp());
      snapshots.push(await tables());
    }
    const productOnly = snapshots[Object.keys(MIGRATIONS).length]!;
    expect(productOnly).toContain("telemetry_jobs.job_runs");
    expect(productOnly.filter((x) => !x.startsWith("telemetry_jobs."))).toEqual([]);
    expect(snapshots.at(-1)).toContain("public.telemetry_points");
    expect(snapshots.at(-1)).toContain("public.telemetry_rollups_hourly");
    expect((await migrationStatus(db, "product")).every((m) => m.executedAt !== undefined)).toBe(true);
    expect((await migrationStatus(db, "starter")).every((m) => m.executedAt !== undefined)).toBe(true);
    for (let i = steps.length - 1; i >= 0; i--) {
      throwIfFailed(await steps[i]!.migrateDown());
      // Kysely's own bookkeeping tables stay; everything a migration made goes.
      expect((await tables()).filter((x) => !x.startsWith("telemetry_jobs.kysely_"))).toEqual(
        snapshots[i]!.filter((x) => !x.startsWith("telemetry_jobs.kysely_")),
      );
    }
    await migrateToLatest(db, { starterSchema: false });
    expect(await tables()).toEqual(expect.arrayContaining(productOnly));
    expect((await tables()).filter((x) => x.startsWith("public."))).toEqual([]);
    await migrateToLatest(db, { starterSchema: true });
    expect(await tables()).toEqual(snapshots.at(-1));
  });

  it("telemetry_points is RANGE partitioned on ts with a DEFAULT partition", async () => {
    const r = await sql<{ key: string; default_part: string }>`
      SELECT pg_get_partkeydef('public.telemetry_points'::regclass) AS key,
             (SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'public.telemetry_points'::regclass
                 AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT') AS default_part`.execute(db);
    expect(r.rows[0]).toEqual({ key: "RANGE (ts)", default_part: "telemetry_points_default" });
  });
});
