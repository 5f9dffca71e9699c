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
// Then the checks of removal-guards.ts: each name is still a partition of the table with the
// planned range, and none is held; or nothing is removed.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { RetentionContext } from "./context.ts";
import { checkStillPlanned } from "./removal-guards.ts";
import type { RemovePartition } from "./remove.ts";

/** lock_timeout once the parent is held (0 would mean no limit): in effect NOWAIT. */
const HELD_PARENT_LOCK_WAIT = "1ms";

/**
 * Locks the parent (waiting `parentWaitMs`, or the lock_timeout already set when undefined), then
 * the children; checks them (checkStillPlanned), which throws when one is not what the plan read.
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
  await checkStillPlanned(ctx, trx, actions);
}
