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
import { displayRelation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { RetentionContext } from "./context.ts";
import { checkStillPlanned } from "./removal-guards.ts";
import type { RemovePartition } from "./remove.ts";

/** How often the pin asks whether the detach's first transaction has committed. */
const PENDING_POLL_MS = 10;

/**
 * Runs `detach` (a DETACH ... CONCURRENTLY or FINALIZE of the action's partition, on a connection
 * of its own) while the partition's name is pinned and checked, as described above.
 */
export async function detachPinned(
  ctx: RetentionContext,
  action: RemovePartition,
  detach: () => Promise<unknown>,
): Promise<void> {
  await ctx.db.connection().execute(async (pin) => {
    let open = false;
    try {
      await sql`BEGIN; SET LOCAL lock_timeout = ${sql.lit(`${ctx.policy.lockTimeoutMs}ms`)}; LOCK TABLE ${relationSql(action.partition)} IN ACCESS SHARE MODE`.execute(
        pin,
      );
      open = true;
      const [oid] = await checkStillPlanned(ctx, pin, [action], { detachPending: true });
      let settled = false;
      const running = detach().finally(() => {
        settled = true;
      });
      // Handled below, after the pin has let go: not an unhandled rejection meanwhile.
      running.catch(() => {});
      while (!settled && !(await pendingDetach(pin, oid!)))
        await new Promise((resolve) => setTimeout(resolve, PENDING_POLL_MS));
      open = false;
      await sql`COMMIT`.execute(pin);
      await running;
    } finally {
      if (open) await sql`ROLLBACK`.execute(pin).catch(() => {});
    }
  });
  ctx.log.info("detached with its name pinned until it was pending", {
    partition: displayRelation(action.partition),
  });
}

/** Whether the relation `oid` is a partition pending detach (the DETACH's first step committed). */
async function pendingDetach(pin: Kysely<DB>, oid: number): Promise<boolean> {
  const r = await sql<{ pending: boolean }>`
    SELECT coalesce(bool_or(i.inhdetachpending), false) AS pending
      FROM pg_catalog.pg_inherits i WHERE i.inhrelid = ${oid}::oid`.execute(pin);
  return r.rows[0]?.pending === true;
}
