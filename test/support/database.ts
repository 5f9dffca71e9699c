// One database per test file, cloned from the migrated template (fast, and isolated: files run in
// parallel without seeing each other's tables).
import { randomBytes } from "node:crypto";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { inject } from "vitest";
import { sessionOptions } from "../../shared/db/connect.ts";
import type { DB } from "../../shared/db/schema.ts";
import { databaseUrl } from "./global-setup.ts";

export interface TestDatabase {
  name: string;
  url: string;
  db: Kysely<DB>;
  /** Plain pg pool for tests that need raw sessions (open transactions, locks). */
  pool: pg.Pool;
  drop(): Promise<void>;
}

export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = inject("adminUrl");
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const template = options.migrated === false ? "template0" : inject("templateDb");
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  } finally {
    await admin.end();
  }
  const url = databaseUrl(adminUrl, name);
  // Idle clients are terminated when the database is dropped WITH (FORCE); without an error
  // listener that surfaces as an uncaught exception. pool.end() resolves once it has let go of its
  // clients, which may still be closing their sockets: the drop's FATAL can reach one of those
  // after the pool's own listener is gone, so each client ignores errors too.
  const pool = ignoringDroppedDatabase(
    new pg.Pool({ connectionString: url, max: 10, options: "-c TimeZone=UTC" }),
  );
  // The jobs' connection, with the session settings production uses.
  const kyselyPool = ignoringDroppedDatabase(
    new pg.Pool({ connectionString: url, max: 5, ...sessionOptions("test") }),
  );
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: kyselyPool }) });
  return {
    name,
    url,
    db,
    pool,
    async drop() {
      await db.destroy();
      await pool.end();
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

/**
 * `pool`, its errors and its clients' ignored: for a test's pools, whose database the test drops
 * WITH (FORCE) at its end (see createTestDatabase).
 */
export function ignoringDroppedDatabase(pool: pg.Pool): pg.Pool {
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}
