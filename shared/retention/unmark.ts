// Taking a removal mark off again: a partition retention marked to remove by itself, whose detach
// then failed without taking it out of the table (see removeOne in remove.ts).
import { sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { quoteRelation } from "../db/quote.ts";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import { type RetentionContext, retryOptions } from "./context.ts";

/**
 * Takes this run's mark off the table it marked (`marked.oid`, whatever its name now) when its
 * detach failed: refused by its check (a hold placed; the partition renamed, replaced or detached
 * by someone else since the mark), out of lock retries, or the name gone. Left on, the mark would
 * outlive the run, and the table, once not attached (detached by hand, say, to keep it out of
 * retention's reach), is what a killed run leaves unfinished: the next run would drop it.
 *
 * Kept where a DETACH of it was sent (`detachSent`) and it is no longer attached: this run's detach
 * may have taken effect, and the next run finishes it; where it is pending detach (likewise); where
 * the comment is no longer this mark; and where the run is stopping or lost its locks (another run
 * may own the mark now), with a WARNING. Best effort: a failure is a WARNING, the run's error stands.
 */
export async function unmarkNotDetached(
  ctx: RetentionContext,
  marked: { oid: number; planned: Relation },
  mark: string,
  detachSent: boolean,
): Promise<void> {
  const warn = (why: string, table: Relation) =>
    ctx.log.warn(
      `removal mark left on ${displayRelation(table)} (${why}). Should it be detached by hand, the next run would drop it: first run COMMENT ON TABLE ${quoteRelation(table)} IS NULL`,
      { partition: displayRelation(table) },
    );
  if (ctx.signal.aborted) return warn("the run is stopping", marked.planned);
  let current = marked.planned;
  try {
    await withLockRetry(ctx.db, retryOptions(ctx, `unmark ${displayRelation(current)}`), async (trx) => {
      const named = await sql<Relation>`
        SELECT n.nspname::text AS schema, c.relname::text AS name
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ${marked.oid}::oid`.execute(trx);
      const table = named.rows[0];
      if (!table) return; // dropped
      current = table;
      await sql`LOCK TABLE ONLY ${relationSql(table)} IN SHARE UPDATE EXCLUSIVE MODE`.execute(trx);
      // Under the lock: the name still the same table, and what state it is in.
      const r = await sql<{ same: boolean; attached: boolean; pending: boolean; comment: string | null }>`
        SELECT c.oid = ${marked.oid}::oid AS same, c.relispartition AS attached,
               coalesce(bool_or(i.inhdetachpending), false) AS pending,
               pg_catalog.obj_description(c.oid, 'pg_class') AS comment
          FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
         WHERE c.oid = ${relationOidSql(table)}
         GROUP BY c.oid, c.relispartition`.execute(trx);
      const row = r.rows[0];
      if (!row?.same) throw new Error("renamed while being unmarked");
      if (row.pending || row.comment !== mark || (detachSent && !row.attached)) return;
      await sql`COMMENT ON TABLE ${relationSql(table)} IS NULL`.execute(trx);
      ctx.log.info("removal mark taken off: this run did not detach it", {
        partition: displayRelation(table),
      });
    });
  } catch (error) {
    warn(`could not take it off: ${(error as Error).message}`, current);
  }
}
