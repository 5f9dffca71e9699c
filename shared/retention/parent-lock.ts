// The start of every transaction that removes a run's expired partitions together: the parent's
// lock, the children's, and a check that the names still mean what the plan read.
//
// The parent first, waiting at most lock_timeout: the order every query on the table takes its
// locks in (parent, then partitions). It is the only wait, and nothing else is held meanwhile, so
// the transaction can close no deadlock cycle. ONLY: without it LOCK TABLE would take every
// partition too, each waited for in turn. Once the parent is held, writers of the table queue
// behind it, so nothing more may be waited for: the children, the DEFAULT partition (which a
// DETACH or a DROP of a partition locks), a table a foreign key refers to (which a DETACH locks),
// a reader of an old child... Waiting for each in turn would hold the writers for one lock_timeout
// per lock, and a writer that holds one of them and then inserts into the table would deadlock
// with us. So they are taken at once or not at all: NOWAIT for the children, and lock_timeout
// HELD_PARENT_LOCK_WAIT for whatever the statements lock themselves (55P03, the same failure as a
// timed-out wait for the parent: retried, or removed child by child).
//
// Between the plan and the lock, a name may have been given to another table (a rename and a
// rebuild, two partitions' names swapped): once the children are locked no name of theirs can
// change, and each must still be a partition of the table with the planned range, or nothing is
// removed.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { displayRelation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { boundRange, parsePartitionBound } from "../partitions/bounds.ts";
import type { RetentionContext } from "./context.ts";
import type { RemovePartition } from "./remove.ts";

/** lock_timeout once the parent is held (0 would mean no limit): in effect NOWAIT. */
const HELD_PARENT_LOCK_WAIT = "1ms";

/**
 * Locks the parent (waiting `parentWaitMs`, or the lock_timeout already set when undefined), then
 * the children; checks them against the plan. Throws when a child is not what the plan read.
 */
export async function lockForRemoval(
  ctx: RetentionContext,
  trx: Kysely<DB>,
  actions: readonly RemovePartition[],
  parentWaitMs: number | undefined,
): Promise<void> {
  const table = policyTable(ctx.policy);
  // One multi-statement query (identifiers and literals inlined, no parameters): one round trip.
  const statements = [
    ...(parentWaitMs === undefined ? [] : [sql`SET LOCAL lock_timeout = ${sql.lit(`${parentWaitMs}ms`)}`]),
    sql`LOCK TABLE ONLY ${relationSql(table)} IN ACCESS EXCLUSIVE MODE`,
    sql`SET LOCAL lock_timeout = ${sql.lit(HELD_PARENT_LOCK_WAIT)}`,
    sql`LOCK TABLE ${sql.join(actions.map((a) => relationSql(a.partition)))} IN ACCESS EXCLUSIVE MODE NOWAIT`,
  ];
  await sql`${sql.join(statements, sql`; `)}`.execute(trx);
  const children = await sql<{ schema: string; name: string; bound: string }>`
    SELECT n.nspname::text AS schema, c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = ${relationOidSql(table)} AND NOT i.inhdetachpending`.execute(trx);
  const bounds = new Map(children.rows.map((c) => [displayRelation(c), c.bound]));
  const changed = actions.filter((a) => !holdsPlannedRange(bounds.get(displayRelation(a.partition)), a));
  if (changed.length > 0)
    throw new Error(
      `${changed.map((a) => displayRelation(a.partition)).join(", ")} ${changed.length === 1 ? "is" : "are"} no longer the partition${changed.length === 1 ? "" : "s"} of ${displayRelation(table)} this run planned to remove (renamed, replaced or detached meanwhile): nothing was removed. The next run plans again from the catalog as it is then.`,
    );
}

/** Whether `bound` (pg_get_expr's text; undefined: not a partition) is the action's range. */
function holdsPlannedRange(bound: string | undefined, action: RemovePartition): boolean {
  if (bound === undefined) return false;
  const range = boundRange(parsePartitionBound(bound));
  if (!range || range.to !== action.to.getTime()) return false;
  return action.from === null ? !Number.isFinite(range.from) : range.from === action.from.getTime();
}
