// Removing a run's expired partitions of one table together, in as few transactions as it takes.
//
// Mode drop: one transaction takes the parent's ACCESS EXCLUSIVE lock (no query on the parent can
// be running meanwhile; held for milliseconds), drops every expired child (DROP TABLE of a
// partition needs that lock anyway; no DETACH first, which would only add catalog work under it)
// and writes their audit rows. A kill at any point before its commit leaves the children attached
// and unaudited, as if the run had not started; after it, removed and audited. One commit (one WAL
// flush) for the whole removal, and no mark to write or read back. PostgreSQL removes the files
// only after the commit has released the locks, so the parent is held no longer than for the
// DROP's catalog rows. Two exceptions, removed as in the other modes: a child that carries an
// export's mark (a killed mode "export" run's), whose export must be confirmed before it is dropped
// (confirmBeforeDrop, which reads files: no work to do while writers queue); and a child with a
// foreign key, whose DROP needs ACCESS EXCLUSIVE on the table referred to (any reader of it holds
// that up), which the second transaction waits for without holding the parent.
//
// Modes detach and archive (and those exceptions): one transaction marks and detaches the children,
// a second one finishes them all (finishTogether). The mark (a comment) commits with the detach,
// so a run killed between the two leaves marked tables that the next run finishes.
//
// Writers queue behind the ACCESS EXCLUSIVE request while it waits, so that wait is bounded: by
// lock_timeout with retries when the table has a DEFAULT partition (PostgreSQL refuses DETACH
// CONCURRENTLY then), and otherwise by one short attempt (PLAIN_DETACH_WAIT_MS). It is the only
// wait (parent-lock.ts): every other lock is taken at once or the attempt fails as a busy parent
// does. A parent that is busy for longer (a long query, or a transaction that has read it) is left
// to removeOne, child by child, with DETACH ... CONCURRENTLY.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { isRetryableLockError } from "../db/sqlstate.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type AuditOutcomes, type RetentionContext, type RetentionOutcome, retryOptions } from "./context.ts";
import { lockForRemoval } from "./parent-lock.ts";
import { removalMarker } from "./removal-mark.ts";
import { finishTogether, type RemovePartition } from "./remove.ts";

/**
 * How long the plain detach may wait for the parent when DETACH CONCURRENTLY is possible instead:
 * inserts queue behind the request for at most this long (a policy field would let a table choose;
 * a constant until one is needed). In-flight inserts end well within it; a longer holder means a
 * query or an open transaction, and then the concurrent path costs writers nothing.
 */
export const PLAIN_DETACH_WAIT_MS = 100;

/** What removeTogether did: an outcome per action, in order, and whether `audit` wrote their rows. */
export interface RemovedTogether {
  readonly outcomes: RetentionOutcome[];
  readonly audited: boolean;
}

/**
 * Removes `actions` (expired children of one table, one mode) together, as described at the top;
 * "busy" when the parent could not be had within PLAIN_DETACH_WAIT_MS, or one of the children (or
 * the DEFAULT partition) was in use once it was (nothing changed: remove them one by one with
 * removeOne). Exported partitions are always "busy": each is exported and verified just before its
 * own detach (a partition that fails is the one action that fails, and rows have the least time to
 * change between the export and the detach). `audit`, when given, writes the audit rows inside the
 * transaction that finishes the removals (mode drop's only one; the second in the other modes), and
 * `audited` says so; otherwise the caller writes them.
 */
export async function removeTogether(
  ctx: RetentionContext,
  actions: readonly RemovePartition[],
  audit?: AuditOutcomes,
): Promise<RemovedTogether | "busy"> {
  const first = actions[0];
  if (!first) return { outcomes: [], audited: false };
  if (first.exportTo !== undefined) return "busy";
  const inOne = first.mode === "drop" && !actions.some((a) => a.exportMarked || a.foreignKeys);
  const wait = Math.min(PLAIN_DETACH_WAIT_MS, ctx.policy.lockTimeoutMs);
  const why = first.concurrently
    ? `free within ${wait} ms, else CONCURRENTLY`
    : "the table has a DEFAULT partition";
  const how = `ACCESS EXCLUSIVE on the parent, under lock_timeout: ${why}; ${actions.length} in one transaction`;
  if (inOne) {
    const outcomes = outcomesOf(actions, () => `drop (${how}, with their audit rows)`);
    const locked = await underParentLock(
      ctx,
      first.concurrently,
      wait,
      `drop ${actions.length} partitions`,
      async (trx, parentWaitMs) => {
        await detachAll(ctx, trx, actions, { mark: false, drop: true, parentWaitMs });
        // Still under the 1 ms lock_timeout of parent-lock.ts: the audit rows wait for no lock while
        // writers queue.
        await audit?.(trx, outcomes);
        // Inside the one transaction: dropped and audited, not committed.
        await pauseAtFaultPoint("retention-in-drop-together", ctx.log);
      },
    );
    return locked === "busy" ? "busy" : { outcomes, audited: audit !== undefined };
  }
  const locked = await underParentLock(
    ctx,
    first.concurrently,
    wait,
    `detach ${actions.length} partitions`,
    (trx, parentWaitMs) => detachAll(ctx, trx, actions, { mark: true, drop: false, parentWaitMs }),
  );
  if (locked === "busy") return "busy";
  // Between the two transactions: the children are detached and marked, none is finished yet.
  await pauseAtFaultPoint("retention-after-detach", ctx.log);
  const finishedAs = (finished: readonly string[]) =>
    outcomesOf(actions, (i) => `detach (${how}), ${finished[i]}`);
  const finished = await finishTogether(
    ctx,
    actions.map((a) => ({ relation: a.partition, to: a.to })),
    first.mode,
    audit && ((trx, done) => audit(trx, finishedAs(done))),
  );
  return { outcomes: finishedAs(finished), audited: audit !== undefined };
}

function outcomesOf(actions: readonly RemovePartition[], path: (i: number) => string): RetentionOutcome[] {
  return actions.map((a, i) => ({ rows: a.rowsEstimate, bytes: a.bytes, path: path(i) }));
}

/**
 * Runs `work` in a transaction that first waits for the parent's ACCESS EXCLUSIVE lock: at most
 * `wait` ms once when the children could be detached CONCURRENTLY instead ("busy" when that is not
 * enough), else lock_timeout per attempt, retried within the policy's budget. `work` is given the
 * wait to set (undefined: the retry loop has set lock_timeout already).
 */
async function underParentLock(
  ctx: RetentionContext,
  concurrently: boolean,
  wait: number,
  what: string,
  work: (trx: Kysely<DB>, parentWaitMs: number | undefined) => Promise<void>,
): Promise<"done" | "busy"> {
  if (!concurrently) {
    await withLockRetry(ctx.db, retryOptions(ctx, what), (trx) => work(trx, undefined));
    return "done";
  }
  try {
    await ctx.db.transaction().execute((trx) => work(trx, wait));
    return "done";
  } catch (error) {
    if (!isRetryableLockError(error)) throw error;
    ctx.log.info("the parent or a partition is busy: detaching each one CONCURRENTLY instead", {
      waitedMs: wait,
    });
    return "busy";
  }
}

async function detachAll(
  ctx: RetentionContext,
  trx: Kysely<DB>,
  actions: readonly RemovePartition[],
  options: { mark: boolean; drop: boolean; parentWaitMs: number | undefined },
): Promise<void> {
  await lockForRemoval(ctx, trx, actions, options.parentWaitMs);
  const parent = relationSql(policyTable(ctx.policy));
  const children = actions.map((a) => relationSql(a.partition));
  // No DETACH before a DROP: dropping a partition takes the same locks (the parent's, the DEFAULT
  // partition's), and detaching first only adds catalog work inside the parent's lock. Otherwise
  // each child is marked for the transaction that finishes it.
  const statements = options.drop
    ? [sql`DROP TABLE ${sql.join(children)}`]
    : actions.flatMap((a, i) => [
        sql`ALTER TABLE ${parent} DETACH PARTITION ${children[i]!}`,
        ...(options.mark
          ? [sql`COMMENT ON TABLE ${children[i]!} IS ${sql.lit(removalMarker(ctx.policy.table, a.mode, a))}`]
          : []),
      ]);
  // One multi-statement query (identifiers and literals inlined, no parameters): one round trip
  // while the parent is locked, however many children.
  await sql`${sql.join(statements, sql`; `)}`.execute(trx);
}
