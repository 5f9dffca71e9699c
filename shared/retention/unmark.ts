// Taking a removal mark off again: a partition retention marked to remove by itself, whose detach
// then failed without detaching it (see removeOne in remove.ts).
import { sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { quoteRelation } from "../db/quote.ts";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import { type RetentionContext, retryOptions } from "./context.ts";

/**
 * Takes this run's mark off the table it marked (`oid`, whatever its name now) when its detach
 * failed without detaching it: refused by the detach's check (a hold placed, or the partition
 * renamed, replaced or detached by someone else, since the mark), or out of lock retries. Left on,
 * the mark would outlive the run, and the table, once detached by hand (say, to keep it out of
 * retention's reach), is what a killed run leaves unfinished: the next run would drop it. Kept
 * where this run may have detached it (not attached, and not a refusal), it is pending detach (the
 * next run finishes that one), the comment is no longer this mark, or the run's locks are gone
 * (another run may own the mark now). Best effort: a failure is logged, the run's error stands.
 */
export async function unmarkNotDetached(
  ctx: RetentionContext,
  oid: number,
  mark: string,
  refused: boolean,
): Promise<void> {
  if (ctx.signal.aborted) return;
  let shown = `the table of oid ${oid}`;
  let quoted = shown;
  try {
    await withLockRetry(ctx.db, retryOptions(ctx, `unmark ${shown}`), async (trx) => {
      const named = await sql<Relation>`
        SELECT n.nspname::text AS schema, c.relname::text AS name
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ${oid}::oid`.execute(trx);
      const table = named.rows[0];
      if (!table) return; // dropped
      shown = displayRelation(table);
      quoted = quoteRelation(table);
      await sql`LOCK TABLE ONLY ${relationSql(table)} IN SHARE UPDATE EXCLUSIVE MODE`.execute(trx);
      // Under the lock: the name still the same table, and what state it is in.
      const r = await sql<{ same: boolean; attached: boolean; pending: boolean; comment: string | null }>`
        SELECT c.oid = ${oid}::oid AS same, c.relispartition AS attached,
               coalesce(bool_or(i.inhdetachpending), false) AS pending,
               pg_catalog.obj_description(c.oid, 'pg_class') AS comment
          FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
         WHERE c.oid = ${relationOidSql(table)}
         GROUP BY c.oid, c.relispartition`.execute(trx);
      const row = r.rows[0];
      if (!row?.same || row.pending || row.comment !== mark || !(row.attached || refused)) return;
      await sql`COMMENT ON TABLE ${relationSql(table)} IS NULL`.execute(trx);
      ctx.log.info("removal mark taken off: this run did not detach it", { partition: shown });
    });
  } catch (error) {
    ctx.log.warn(
      `could not take the removal mark off ${shown}: ${(error as Error).message}. Should it be detached by hand, the next run would drop it: first run COMMENT ON TABLE ${quoted} IS NULL`,
      { partition: shown },
    );
  }
}
