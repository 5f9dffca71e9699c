// A PostgreSQL server of its own for one test file, with one migrated database, for tests whose
// subject is transaction ids. Xids are cluster-wide: on the shared test server other files take
// them all the time, so "the next xid assigned is this one" cannot be arranged there. Here nothing
// else assigns xids (autovacuum is off: an automatic ANALYZE would take one).
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { DB } from "../../shared/db/schema.ts";
import { migrateToLatest } from "../../shared/migrate/migrator.ts";
import { majorFromEnv, startEmbeddedPostgres } from "./embedded-postgres.ts";

export interface PrivateDatabase {
  url: string;
  db: Kysely<DB>;
  pool: pg.Pool;
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>;
}

export async function startPrivateDatabase(): Promise<PrivateDatabase> {
  const server = await startEmbeddedPostgres({ major: majorFromEnv() });
  try {
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    try {
      await admin.query("ALTER SYSTEM SET autovacuum = off");
      await admin.query("SELECT pg_reload_conf()");
      await admin.query("CREATE DATABASE tj_private");
    } finally {
      await admin.end();
    }
    const url = server.url("tj_private");
    const migrating = new Kysely<unknown>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }),
    });
    try {
      await migrateToLatest(migrating, { starterSchema: true });
    } finally {
      await migrating.destroy();
    }
    const pool = new pg.Pool({ connectionString: url, max: 10, options: "-c TimeZone=UTC" });
    pool.on("error", () => {});
    const kyselyPool = new pg.Pool({ connectionString: url, max: 5, options: "-c TimeZone=UTC" });
    kyselyPool.on("error", () => {});
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: kyselyPool }) });
    return {
      url,
      db,
      pool,
      async stop() {
        await db.destroy();
        await pool.end();
        await server.stop();
      },
    };
  } catch (error) {
    await server.stop();
    throw error;
  }
}
