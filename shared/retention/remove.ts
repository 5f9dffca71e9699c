// Removing whole partitions: detach, then drop, keep, or move to the archive schema.
//
// Together (the usual path): one transaction marks and detaches every expired child with a plain
// DETACH (ACCESS EXCLUSIVE on the parent: catalog work only, held for milliseconds, and no
// query on the parent can be running meanwhile), a second one finishes them all. The mark (a
// comment) commits with the detach, so a run killed between the two leaves marked tables that the
// next run finishes. Writers queue behind the ACCESS EXCLUSIVE request while it waits, so that wait
// is bounded: by lock_timeout with retries when the table has a DEFAULT partition (PostgreSQL
// refuses DETACH CONCURRENTLY then), and otherwise by one short attempt (PLAIN_DETACH_WAIT_MS).
// It is the only wait: the children and the DEFAULT partition are then locked without waiting, and
// one that is in use fails the attempt as a busy parent does.
// A parent that is busy for longer (a long query, or a transaction that has read it) is left to
// child by child: mark, DETACH ... CONCURRENTLY (SHARE UPDATE EXCLUSIVE, which writers and readers
// never wait for; two transactions and a wait for older snapshots), then finish.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { withLockRetry, withLockRetryOnConnection } from "../db/lock-retry.ts";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { isRetryableLockError, SQLSTATE, sqlState } from "../db/sqlstate.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type RetentionContext, type RetentionOutcome, retryOptions } from "./context.ts";
import { retentionOf } from "./expiry.ts";
import { removalMarker } from "./facts.ts";
import type { RetentionAction, RetentionMode } from "./plan.ts";

export type RemovePartition = Extract<RetentionAction, { kind: "remove_partition" }>;

/**
 * How long the plain detach may wait for the parent when DETACH CONCURRENTLY is possible instead:
 * inserts queue behind the request for at most this long (a policy field would let a table choose;
 * a constant until one is needed). In-flight inserts end well within it; a longer holder means a
 * query or an open transaction, and then the concurrent path costs writers nothing.
 */
export const PLAIN_DETACH_WAIT_MS = 100;

/**
 * Removes `actions` (expired children of one table, one mode) together: one outcome per action, in
 * order; or "busy" when the parent could not be had within PLAIN_DETACH_WAIT_MS, or one of the
 * children (or the DEFAULT partition) was in use once it was (nothing changed: remove them one by
 * one with removeOne).
 */
export async function removeTogether(
  ctx: RetentionContext,
  actions: readonly RemovePartition[],
): Promise<RetentionOutcome[] | "busy"> {
  const first = actions[0];
  if (!first) return [];
  const detachAll = (trx: Kysely<DB>) => markAndDetach(ctx, trx, actions);
  let why: string;
  if (first.concurrently) {
    const wait = Math.min(PLAIN_DETACH_WAIT_MS, ctx.policy.lockTimeoutMs);
    try {
      await ctx.db.transaction().execute(async (trx) => {
        await sql`SELECT set_config('lock_timeout', ${`${wait}ms`}, true)`.execute(trx);
        await detachAll(trx);
      });
    } catch (error) {
      if (!isRetryableLockError(error)) throw error;
      ctx.log.info("the parent or a partition is busy: detaching each one CONCURRENTLY instead", {
        waitedMs: wait,
      });
      return "busy";
    }
    why = `free within ${wait} ms, else CONCURRENTLY`;
  } else {
    await withLockRetry(ctx.db, retryOptions(ctx, `detach ${actions.length} partitions`), detachAll);
    why = "the table has a DEFAULT partition";
  }
  // Between the two transactions: the children are detached and marked, none is finished yet.
  await pauseAtFaultPoint("retention-after-detach", ctx.log);
  const finished = await finishTogether(
    ctx,
    actions.map((a) => ({ relation: a.partition, to: a.to })),
    first.mode,
  );
  const detached = `detach (ACCESS EXCLUSIVE on the parent, under lock_timeout: ${why}; ${actions.length} in one transaction)`;
  return actions.map((a, i) => ({
    rows: a.rowsEstimate,
    bytes: a.bytes,
    path: `${detached}, ${finished[i]}`,
  }));
}

async function markAndDetach(
  ctx: RetentionContext,
  trx: Kysely<DB>,
  actions: readonly RemovePartition[],
): Promise<void> {
  const table = policyTable(ctx.policy);
  const parent = relationSql(table);
  // The parent first, waiting at most lock_timeout: the order every query on the table takes its
  // locks in (parent, then partitions). It is the only wait, and nothing else is held meanwhile, so
  // this transaction can close no deadlock cycle. ONLY: without it LOCK TABLE would take every
  // partition too, each waited for in turn. Once the parent is held, writers of the table queue
  // behind it, so nothing more may be waited for: every DETACH also needs its child and the DEFAULT
  // partition, and waiting for each of those in turn (a reader of an old child, say) would hold the
  // writers for one lock_timeout per table. They are taken at once or not at all (NOWAIT: 55P03, the
  // same failure as a timed-out wait).
  await sql`LOCK TABLE ONLY ${parent} IN ACCESS EXCLUSIVE MODE`.execute(trx);
  const others = [...actions.map((a) => a.partition), ...(await defaultPartitionOf(trx, table))];
  // Sent as one multi-statement query (identifiers and literals inlined, no parameters): after the
  // lock and the catalog read, one round trip while the parent is locked, however many children.
  const statements = [
    sql`LOCK TABLE ${sql.join(others.map(relationSql))} IN ACCESS EXCLUSIVE MODE NOWAIT`,
    ...actions.flatMap((a) => {
      const child = relationSql(a.partition);
      return [
        sql`ALTER TABLE ${parent} DETACH PARTITION ${child}`,
        sql`COMMENT ON TABLE ${child} IS ${sql.lit(removalMarker(ctx.policy.table, a.mode))}`,
      ];
    }),
  ];
  await sql`${sql.join(statements, sql`; `)}`.execute(trx);
}

/** The table's DEFAULT partition (none or one); read with the parent locked, so it cannot change. */
async function defaultPartitionOf(trx: Kysely<DB>, table: Relation): Promise<Relation[]> {
  const r = await sql<Relation>`
    SELECT n.nspname AS schema, c.relname AS name
      FROM pg_catalog.pg_partitioned_table p
      JOIN pg_catalog.pg_class c ON c.oid = p.partdefid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE p.partrelid = ${relationOidSql(table)}`.execute(trx);
  return r.rows;
}

/** Child by child: mark, detach (CONCURRENTLY when the action allows it), finish. */
export async function removeOne(ctx: RetentionContext, action: RemovePartition): Promise<RetentionOutcome> {
  await withLockRetry(ctx.db, retryOptions(ctx, `mark ${displayRelation(action.partition)}`), (trx) =>
    sql`COMMENT ON TABLE ${relationSql(action.partition)} IS ${sql.lit(removalMarker(ctx.policy.table, action.mode))}`.execute(
      trx,
    ),
  );
  const detachPath = await detach(ctx, action.partition, action.concurrently);
  const [finishPath] = await finishTogether(
    ctx,
    [{ relation: action.partition, to: action.to }],
    action.mode,
  );
  return { rows: action.rowsEstimate, bytes: action.bytes, path: `${detachPath}, ${finishPath}` };
}

async function detach(ctx: RetentionContext, partition: Relation, concurrently: boolean): Promise<string> {
  const parent = relationSql(policyTable(ctx.policy));
  const child = relationSql(partition);
  const shown = displayRelation(partition);
  if (concurrently) {
    // Not allowed in a transaction block: its own connection, lock_timeout set for the session.
    let finalized = false;
    await onOwnConnection(ctx, `detach ${shown} concurrently`, async (conn) => {
      try {
        await sql`ALTER TABLE ${parent} DETACH PARTITION ${child} CONCURRENTLY`.execute(conn);
      } catch (error) {
        // An earlier attempt committed its first transaction, then hit lock_timeout while waiting
        // for older snapshots: the detach is pending and only FINALIZE can complete it.
        if (!isPendingDetachError(error)) throw error;
        ctx.log.info("the detach is pending after a timed-out attempt: finishing it with FINALIZE", {
          partition: shown,
        });
        await sql`ALTER TABLE ${parent} DETACH PARTITION ${child} FINALIZE`.execute(conn);
        finalized = true;
      }
    });
    return `detach concurrently${finalized ? " (finished with FINALIZE)" : ""} (SHARE UPDATE EXCLUSIVE on the parent)`;
  }
  await withLockRetry(ctx.db, retryOptions(ctx, `detach ${shown}`), (trx) =>
    sql`ALTER TABLE ${parent} DETACH PARTITION ${child}`.execute(trx),
  );
  return "detach (ACCESS EXCLUSIVE on the parent, under lock_timeout: the table has a DEFAULT partition)";
}

function isPendingDetachError(error: unknown): boolean {
  return (
    sqlState(error) === SQLSTATE.objectNotInPrerequisiteState &&
    /pending detach/i.test((error as Error).message)
  );
}

/** Finishes a DETACH CONCURRENTLY that a killed or timed-out run left pending. */
export async function finalizeDetach(ctx: RetentionContext, partition: Relation): Promise<void> {
  await onOwnConnection(ctx, `finalize the detach of ${displayRelation(partition)}`, (conn) =>
    sql`ALTER TABLE ${relationSql(policyTable(ctx.policy))} DETACH PARTITION ${relationSql(partition)} FINALIZE`.execute(
      conn,
    ),
  );
}

/** Runs one statement outside a transaction block, under lock_timeout, retried within the budget. */
async function onOwnConnection(
  ctx: RetentionContext,
  what: string,
  statement: (conn: Kysely<DB>) => Promise<unknown>,
): Promise<void> {
  await withLockRetryOnConnection(
    ctx.db,
    {
      ...retryOptions(ctx, what),
      advice: "If a DETACH CONCURRENTLY was interrupted, the next run finishes it with FINALIZE.",
    },
    statement,
  );
}

/** A detached table to finish, and the upper bound of the range it held (for the label). */
export interface Detached {
  readonly relation: Relation;
  readonly to?: Date | undefined;
}

/**
 * Drops, labels or archives detached tables, all in one transaction: each has its removal mark
 * until this commits, so a failure (a view on one of them) leaves every one to the next run.
 * Returns what was done to each, in order.
 */
export async function finishTogether(
  ctx: RetentionContext,
  tables: readonly Detached[],
  mode: RetentionMode,
): Promise<string[]> {
  const stamp = ctx.now.toISOString();
  const shown =
    tables.length === 1 ? displayRelation(tables[0]!.relation) : `${tables.length} detached tables`;
  switch (mode) {
    case "drop":
      await withLockRetry(ctx.db, retryOptions(ctx, `drop ${shown}`), async (trx) => {
        await sql`DROP TABLE ${sql.join(tables.map((t) => relationSql(t.relation)))}`.execute(trx);
        // Inside the finishing transaction: dropped, not committed (a kill rolls the drop back).
        await pauseAtFaultPoint("retention-in-finish", ctx.log, mode);
      });
      return tables.map(() => "drop");
    case "detach":
      await withLockRetry(ctx.db, retryOptions(ctx, `label ${shown}`), async (trx) => {
        for (const { relation, to } of tables)
          await sql`COMMENT ON TABLE ${relationSql(relation)} IS ${sql.lit(
            `telemetry-jobs retention: detached from ${ctx.policy.table} at ${stamp}${to ? ` (rows before ${to.toISOString()})` : ""}`,
          )}`.execute(trx);
        // Inside the finishing transaction: labelled, not committed (the marks are still theirs).
        await pauseAtFaultPoint("retention-in-finish", ctx.log, mode);
      });
      return tables.map(() => "kept detached");
    case "archive": {
      const archive = retentionOf(ctx.policy).archiveSchema;
      const archived = tables.map((t): Relation => ({ schema: archive, name: t.relation.name }));
      await withLockRetry(ctx.db, retryOptions(ctx, `archive ${shown}`), async (trx) => {
        await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(archive)}`.execute(trx);
        for (const [i, { relation }] of tables.entries()) {
          await sql`ALTER TABLE ${relationSql(relation)} SET SCHEMA ${sql.id(archive)}`.execute(trx);
          await sql`COMMENT ON TABLE ${relationSql(archived[i]!)} IS ${sql.lit(
            `telemetry-jobs retention: archived from ${ctx.policy.table} at ${stamp}`,
          )}`.execute(trx);
        }
        // Inside the finishing transaction: moved and labelled, not committed.
        await pauseAtFaultPoint("retention-in-finish", ctx.log, mode);
      });
      return archived.map((a) => `moved to ${displayRelation(a)}`);
    }
  }
}
