// The partition executor: carries out one planned action against PostgreSQL.
//
// A child is built as a standalone table (LIKE the parent: columns, defaults, CHECK and NOT NULL
// constraints, indexes), given a CHECK constraint equal to its bound, and then ATTACHed, which needs
// only SHARE UPDATE EXCLUSIVE on the parent, so selects go on (and inserts too, when there is no
// DEFAULT partition; see step 2). CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE. The
// valid CHECK lets ATTACH skip the scan of the child. Rows of the new range that sit in DEFAULT are moved in the same transaction as
// the ATTACH, so they are never invisible and the ATTACH never fails on them (SQLSTATE 23514).
//
// Every step is idempotent: a run killed at any point leaves either nothing, or a standalone table
// carrying our bound constraint, which the next run recognises and finishes. Step 1 (the checks and
// the standalone table) and the DEFAULT partition are in standalone.ts; step 2 is here, and is also
// how a table that already holds rows is attached (attach-filled.ts).
import { type Kysely, sql, type Transaction } from "kysely";
import type { TablePolicy } from "../config/policy.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { TEXT } from "../log/text-view.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { lockForAttach, movedWithoutExclusive } from "./attach-locks.ts";
import { boundLiteral } from "./bounds.ts";
import type { TableCatalog } from "./catalog.ts";
import { dropDefaultGuard, guardDefault } from "./default-guard.ts";
import type { PartitionAction } from "./plan.ts";
import {
  alreadyMade,
  buildStandalone,
  type CreateAction,
  createDefaultPartition,
  type NewChild,
} from "./standalone.ts";

export { PARENT_LOCK_WAIT_MS } from "./attach-locks.ts";
export { BOUND_CONSTRAINT } from "./standalone.ts";

export interface ApplyContext {
  db: Kysely<DB>;
  policy: TablePolicy;
  catalog: TableCatalog;
  log: Logger;
  /** The run's logical now: whether a range is still in the future decides the parent's lock. */
  now: Date;
  signal?: AbortSignal;
}

export interface ActionOutcome {
  /** Rows moved out of DEFAULT into the new child. */
  rows: number;
  /** Transactions that had to be retried because a lock was not available within lock_timeout. */
  lockRetries: number;
  /** True when the object already existed in its final state (a concurrent or earlier run made it). */
  alreadyDone: boolean;
}

export async function applyPartitionAction(
  ctx: ApplyContext,
  action: PartitionAction,
): Promise<ActionOutcome> {
  switch (action.kind) {
    case "create_partition":
      return await createPartition(ctx, action);
    case "create_default_partition":
      return await createDefaultPartition(ctx, action.partition);
    case "guard_default":
      return await guardDefault(ctx, action);
    case "drop_default_guard":
      return await dropDefaultGuard(ctx, action);
  }
}

/** The SQL pieces of the partition `name` of the parent, for [from, to). */
export function newChildSpec(ctx: ApplyContext, name: string, from: Date, to: Date): NewChild {
  const { policy, catalog, log } = ctx;
  const child: Relation = { schema: catalog.table.schema, name };
  return {
    child,
    childText: displayRelation(child),
    col: columnSql(catalog.keyColumn),
    from: sql.lit(boundLiteral(from, catalog.keyType)),
    to: sql.lit(boundLiteral(to, catalog.keyType)),
    retry: {
      lockTimeoutMs: policy.lockTimeoutMs,
      budgetMs: policy.retryBudgetMs,
      contended: catalog.table,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onRetry: ({ attempt, waitMs, error }) =>
        log.warn("lock not available, retrying", { partition: name, attempt, waitMs, error }),
    },
  };
}

async function createPartition(ctx: ApplyContext, action: CreateAction): Promise<ActionOutcome> {
  const spec = newChildSpec(ctx, action.partition, action.from, action.to);
  const made = await alreadyMade(ctx, action, spec);
  if (made.done) return { rows: 0, lockRetries: 0, alreadyDone: true };
  const built = await buildStandalone(ctx, action, spec, made.exists);
  await pauseAtFaultPoint("after-create-table", ctx.log);
  const attached = await attachWithRows(ctx, action.from, spec);
  return { rows: attached.rows, lockRetries: built + attached.lockRetries, alreadyDone: false };
}

/**
 * A table that becomes the partition under another name (attach-filled.ts): renamed to the
 * partition's name, and its comment replaced, in the attach transaction.
 */
export interface RenamedTable {
  readonly table: Relation;
  readonly comment: string | null;
  /** The partition's name is an empty partition of exactly the range: detached and dropped first. */
  readonly replacesEmpty: boolean;
}

// Step 2: move DEFAULT's rows of this range and attach, in one transaction. A filled table attached
// under another name (attach-filled.ts) is renamed in this transaction too, so that it takes the
// partition's name only as it becomes the partition.
//
// With a DEFAULT partition, an INSERT that has already routed its row to DEFAULT but waits for
// DEFAULT's lock while we attach would, once we commit, fail with "new row for relation ... violates
// partition constraint" (PostgreSQL rechecks DEFAULT's constraint because of concurrent attaches;
// our locking test hit exactly this). So in that case we also hold SHARE ROW EXCLUSIVE on the
// parent for this short transaction: writers wait for it, and no insert fails.
// Which case applies is read from DEFAULT before either lock is requested (attach-locks.ts says
// why); rows of the range that reach DEFAULT after that read make the attempt retry.
// Lock order, chosen by the benchmark:
//   1. ACCESS EXCLUSIVE on DEFAULT, waiting up to lock_timeout: only DEFAULT's readers and rows
//      routed to DEFAULT wait for us, never ordinary inserts. (Taking the parent first and then
//      waiting for a long reader of DEFAULT made every insert wait the whole lock_timeout; taking
//      DEFAULT with NOWAIT instead starved the attach under a steady whole-table reader.)
//   2. SHARE ROW EXCLUSIVE on the parent with a short wait (PARENT_LOCK_WAIT_MS): inserts queue
//      behind us only that long. An insert routed to DEFAULT holds the parent and waits for DEFAULT:
//      our short wait times out long before deadlock_timeout, we roll back, and it goes on.
// The parent lock, by case (parentLockFor):
// - Rows move: ACCESS EXCLUSIVE, so that readers wait too. A
// READ COMMITTED statement plans with the partition list it sees when it locks the parent; one
// that locked the parent before us and then waited for DEFAULT would, after our commit, read
// DEFAULT without the moved rows and not read the new partition at all: rows that exist would be
// missing from its answer (a rollup that read them so would keep an empty hour for good). Under
// ACCESS EXCLUSIVE such a statement cannot be half-way: either it holds the parent and we time
// out and retry after it, or it waits for our commit and plans with the new partition. Every
// attempt makes new reads and writes queue behind it for up to PARENT_LOCK_WAIT_MS, so it is not
// made at all while a transaction that has held the parent longer than that is still open (an
// idle-in-transaction session, a long report): we back off instead, without joining the queue.
// - Nothing moves and the range starts at least FUTURE_MARGIN_MS after both the run's now and the
//   server's clock (premaking): SHARE UPDATE EXCLUSIVE, ATTACH's own lock, which writers do not
//   notice. ATTACH proves the range absent from DEFAULT under DEFAULT's lock only: from the guard
//   the run validated beforehand when DEFAULT is large (plan-guard.ts), so DEFAULT is held for a
//   catalog update whatever its size; otherwise by scanning it, which ordinary inserts do not wait
//   for either. The price: an insert of a row dated in that range, routed to DEFAULT meanwhile,
//   fails after our commit ("violates partition constraint") instead of waiting (with the guard,
//   from the moment the guard is added: "violates check constraint"). The margin keeps that to device clocks more than a day ahead (a device
//   set to the wrong time zone is at most 14 hours off); the application sees an error, no row
//   is lost silently.
// - Otherwise (a range that starts within the margin, where inserts are likely): SHARE ROW
//   EXCLUSIVE: writers wait for the scan, none fails.
// Without a DEFAULT the attach needs only SHARE UPDATE EXCLUSIVE, which writers do not notice.
export async function attachWithRows(
  ctx: ApplyContext,
  start: Date,
  spec: NewChild,
  renamed?: RenamedTable,
): Promise<{ rows: number; lockRetries: number }> {
  const { db, catalog, log } = ctx;
  const { child, childText, from, to, retry } = spec;
  const parent = catalog.table;
  const attached = await withLockRetry(db, { ...retry, what: `attach ${childText}` }, async (trx) => {
    const { parentExclusive } = await lockForAttach(trx, ctx, start, spec, renamed?.replacesEmpty === true);
    if (renamed) {
      if (renamed.replacesEmpty) await detachEmpty(trx, parent, child);
      await sql`ALTER TABLE ${relationSql(renamed.table)} RENAME TO ${sql.id(child.name)}`.execute(trx);
      await sql`COMMENT ON TABLE ${relationSql(child)} IS ${renamed.comment === null ? sql`NULL` : sql.lit(renamed.comment)}`.execute(
        trx,
      );
    }
    const moved = catalog.defaultPartition ? await moveFromDefault(trx, ctx, child, from, to) : 0;
    movedWithoutExclusive(moved, parentExclusive, childText);
    // Logged once the move stands (the check above rolls it back); on a terminal the action's
    // progress line says it ("74,411 rows moved").
    if (moved > 0)
      log.info("moved rows out of the DEFAULT partition", {
        partition: child.name,
        rows: moved,
        [TEXT]: null,
      });
    await pauseAtFaultPoint("after-move-rows", log);
    await sql`ALTER TABLE ${relationSql(parent)} ATTACH PARTITION ${relationSql(child)}
      FOR VALUES FROM (${from}) TO (${to})`.execute(trx);
    return moved;
  });
  return { rows: attached.result, lockRetries: attached.attempts - 1 };
}

/**
 * Detaches and drops the partition `child`, which must be empty: the caller holds ACCESS EXCLUSIVE
 * on the parent, so no row can arrive in it meanwhile. A row found there throws; the transaction,
 * and with it the attach, rolls back. Not FROM ONLY: a child that is itself partitioned holds its
 * rows in its own partitions, which its DROP would take with it.
 */
async function detachEmpty(trx: Transaction<DB>, parent: Relation, child: Relation): Promise<void> {
  const r = await sql<{ has: boolean }>`
    SELECT EXISTS (SELECT 1 FROM ${relationSql(child)}) AS has`.execute(trx);
  if (r.rows[0]?.has)
    throw new Error(`${displayRelation(child)} holds rows now; it was not replaced. Nothing was attached.`);
  await sql`ALTER TABLE ${relationSql(parent)} DETACH PARTITION ${relationSql(child)}`.execute(trx);
  await sql`DROP TABLE ${relationSql(child)}`.execute(trx);
}

/**
 * Moves the DEFAULT partition's rows of [from, to) into `child`. The caller holds ACCESS EXCLUSIVE
 * on DEFAULT (the ATTACH needs it anyway), so no row of that range can arrive in DEFAULT between the
 * move and the ATTACH. DELETE ... RETURNING feeds the INSERT: each row is moved exactly once.
 */
async function moveFromDefault(
  trx: Transaction<DB>,
  ctx: ApplyContext,
  child: Relation,
  from: ReturnType<typeof sql.lit>,
  to: ReturnType<typeof sql.lit>,
): Promise<number> {
  const def = ctx.catalog.defaultPartition!;
  const defaultRel = relationSql(def);
  const col = columnSql(ctx.catalog.keyColumn);
  // The columns as they are now, under our lock on the parent (which keeps ALTER TABLE out), not as
  // the catalog read at the start of the run saw them: a column the application added since would
  // otherwise be left out of the copy and take its default in every moved row.
  const current = await sql<{ name: string }>`
    SELECT attname::text AS name FROM pg_catalog.pg_attribute
     WHERE attrelid = ${ctx.catalog.oid} AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
     ORDER BY attnum`.execute(trx);
  const cols = sql.join(current.rows.map((c) => columnSql(c.name)));
  const r = await sql`
    WITH moved AS (
      DELETE FROM ${defaultRel} WHERE ${col} >= ${from} AND ${col} < ${to} RETURNING ${cols}
    )
    INSERT INTO ${relationSql(child)} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM moved`.execute(
    trx,
  );
  return Number(r.numAffectedRows ?? 0n);
}
