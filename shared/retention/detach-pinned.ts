// DETACH PARTITION ... CONCURRENTLY names its partition, and cannot run in a transaction block, so
// the check that the name still means the planned partition (checkStillPlanned) cannot share its
// transaction. And the DETACH itself may wait a long time for the parent before it looks the name
// up: a rename meanwhile (two partitions' names swapped) would detach the wrong one, the current
// month say, and every insert into that month would fail until it was attached again.
//
// So a second session pins the name: it takes the partition's ACCESS SHARE lock, checks it, and
// holds the lock until PostgreSQL has marked that partition (by oid) pending detach. A rename
// needs ACCESS EXCLUSIVE on the renamed table, so none can happen meanwhile; and ACCESS SHARE does
// not conflict with the SHARE UPDATE EXCLUSIVE of the detach's first transaction. Its second
// transaction needs ACCESS EXCLUSIVE on the partition, so the pin lets go as soon as the first has
// committed (the partition is pending detach): from then on the detach is bound to the oid.
import { type Kysely, sql } from "kysely";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { RetentionContext } from "./context.ts";
import { checkStillPlanned } from "./removal-guards.ts";
import type { RemovePartition } from "./remove.ts";

/** How often the pin asks whether the detach's first transaction has committed. */
const PENDING_POLL_MS = 10;

/**
 * Runs `detach` (a DETACH ... CONCURRENTLY or FINALIZE of the action's partition) on `conn`, its
 * own connection, while the partition's name is pinned and checked, as described above. Should
 * the pin's session fail while the DETACH runs, the DETACH is cancelled once the next poll sees
 * the failure (within about PENDING_POLL_MS and a round trip). That window is not closed: the
 * failed session's lock is gone at once, so a rename waiting on it goes ahead, and a DETACH that
 * gets the parent in that window looks up the name given to another table since; the cancel may
 * then come after that table is pending detach. The run fails either way (exit 1).
 */
export async function detachPinned(
  ctx: RetentionContext,
  action: RemovePartition,
  conn: Kysely<DB>,
  detach: () => Promise<unknown>,
): Promise<void> {
  const detachPid = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(conn)).rows[0]!.pid;
  await ctx.db.connection().execute(async (pin) => {
    // BEGIN alone: a failed LOCK in the same query would leave the block open and aborted on a
    // connection that goes back to the pool.
    await sql`BEGIN`.execute(pin);
    let running: Promise<unknown> | undefined;
    let settled = false;
    try {
      await sql`SET LOCAL lock_timeout = ${sql.lit(`${ctx.policy.lockTimeoutMs}ms`)}; LOCK TABLE ONLY ${relationSql(action.partition)} IN ACCESS SHARE MODE`.execute(
        pin,
      );
      const [oid] = await checkStillPlanned(ctx, pin, [action], { detachPending: true });
      running = detach().finally(() => {
        settled = true;
      });
      // Awaited below, once the pin has let go: not an unhandled rejection meanwhile.
      running.catch(() => {});
      while (!settled && !(await pendingDetach(pin, oid!)))
        await new Promise((resolve) => setTimeout(resolve, PENDING_POLL_MS));
      await sql`COMMIT`.execute(pin);
    } catch (error) {
      await sql`ROLLBACK`.execute(pin).catch(() => {});
      if (running && !settled) await cancelDetach(ctx, detachPid, running);
      throw error;
    }
    await running;
  });
  ctx.log.info("detached with its name pinned until it was pending", {
    partition: displayRelation(action.partition),
  });
}

/** Cancels the DETACH running in backend `pid` (from another connection) and waits for it to end. */
async function cancelDetach(ctx: RetentionContext, pid: number, running: Promise<unknown>): Promise<void> {
  await sql`SELECT pg_cancel_backend(${pid})`.execute(ctx.db).catch(() => {});
  await running.catch(() => {});
}

/**
 * Whether `child` (an oid, or a relation by name) is a partition pending detach: a DETACH ...
 * CONCURRENTLY committed its first step and did not finish.
 */
export async function pendingDetach(db: Kysely<DB>, child: number | Relation): Promise<boolean> {
  const relid = typeof child === "number" ? sql`${child}::oid` : relationOidSql(child);
  const r = await sql<{ pending: boolean }>`
    SELECT coalesce(bool_or(i.inhdetachpending), false) AS pending
      FROM pg_catalog.pg_inherits i WHERE i.inhrelid = ${relid}`.execute(db);
  return r.rows[0]?.pending === true;
}
