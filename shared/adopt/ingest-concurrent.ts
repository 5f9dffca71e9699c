// Statements that cannot run in a transaction block (CREATE and DROP INDEX CONCURRENTLY), each on a
// connection of its own, and the concurrent index build with its cleanup after a failure.
import { type Kysely, sql } from "kysely";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import type { IngestAction } from "./ingest-actions.ts";
import { INGEST_COLUMN } from "./ingest-plan.ts";

/**
 * A statement that cannot run in a transaction block (CONCURRENTLY), on a connection of its own,
 * under a session lock_timeout of the whole retry budget. Such a statement holds SHARE UPDATE
 * EXCLUSIVE, which INSERT/UPDATE/DELETE do not conflict with, and then waits, through ordinary lock
 * waits, for transactions that modified the table (before each of its two scans) and for those
 * holding older snapshots. A short lock_timeout would cut those waits and throw the build away;
 * none at all could hang behind a forgotten open transaction. Waiting there blocks no writer.
 */
export async function runConcurrently(
  db: Kysely<DB>,
  timeoutMs: number,
  work: (conn: Kysely<DB>) => Promise<unknown>,
): Promise<void> {
  await db.connection().execute(async (conn) => {
    await sql`SELECT set_config('lock_timeout', ${`${Math.max(1, Math.round(timeoutMs))}ms`}, false)`.execute(
      conn,
    );
    try {
      await work(conn);
    } finally {
      await sql`RESET lock_timeout`.execute(conn).catch(() => {});
    }
  });
}

/**
 * CREATE INDEX CONCURRENTLY of one table or partition; on failure, drops the invalid index it left
 * (if it can) and throws an error saying what happened and what to do.
 */
export async function buildConcurrently(
  db: Kysely<DB>,
  retryBudgetMs: number,
  a: Extract<IngestAction, { kind: "build_index_concurrently" }>,
): Promise<void> {
  const index: Relation = { schema: a.on.schema, name: a.index };
  try {
    await runConcurrently(db, retryBudgetMs, (conn) =>
      sql`CREATE INDEX CONCURRENTLY ${sql.id(a.index)} ON ${relationSql(a.on)} (${sql.id(INGEST_COLUMN)}, ${sql.id(a.timeColumn)})`.execute(
        conn,
      ),
    );
  } catch (error) {
    // A failed concurrent build leaves an INVALID index that every write still maintains: drop it
    // now rather than leave it to the next run. That drop waits for the same transactions, so it
    // may fail too; the next run's plan drops it then.
    // Only an INVALID index on this table is ours to drop (a name clash must not cost a valid one).
    let cleanup = "the invalid index it left was dropped";
    try {
      const left = await sql<{ invalid: boolean }>`
        SELECT NOT x.indisvalid AS invalid FROM pg_catalog.pg_index x
         WHERE x.indexrelid = ${relationOidSql(index)} AND x.indrelid = ${relationOidSql(a.on)}`.execute(db);
      if (left.rows[0]?.invalid === true)
        await runConcurrently(db, retryBudgetMs, (conn) =>
          sql`DROP INDEX CONCURRENTLY IF EXISTS ${relationSql(index)}`.execute(conn),
        );
      else cleanup = "it left no invalid index";
    } catch (dropError) {
      cleanup = `dropping the invalid index it left failed too (${(dropError as Error).message}); the next run drops it`;
    }
    const lock = sqlState(error) === SQLSTATE.lockNotAvailable;
    throw new Error(
      `CREATE INDEX CONCURRENTLY ${displayRelation(index)} on ${displayRelation(a.on)} failed` +
        (lock
          ? ` waiting ${retryBudgetMs} ms (retryBudgetMs) for older transactions on the table to end`
          : `: ${(error as Error).message}`) +
        `; ${cleanup}. Nothing else was changed; the next run retries` +
        (lock ? ". Find the long transaction in pg_stat_activity, or raise retryBudgetMs." : "."),
      { cause: error },
    );
  }
}
