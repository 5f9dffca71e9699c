// The attach transaction's locks: which lock the parent needs for an attach (see apply.ts for the
// cases: beside a DEFAULT partition, with or without rows of the range to move), taken so that
// writers never queue for long behind our request.
import { type RawBuilder, sql, type Transaction } from "kysely";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { retryableLockError } from "../db/sqlstate.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import type { ApplyContext } from "./apply.ts";
import type { NewChild } from "./standalone.ts";
import { FUTURE_MARGIN_MS } from "./time.ts";

/** How long the attach transaction may queue for the parent lock while writers queue behind it. */
export const PARENT_LOCK_WAIT_MS = 200;

/**
 * The attach transaction's locks (the cases are explained in apply.ts). `exclusive`: ACCESS EXCLUSIVE on
 * the parent whatever the case, which a DETACH in the same transaction needs; taken, as when rows
 * move, only with a short wait and never behind a long-open transaction. Returns whether the
 * parent is held in ACCESS EXCLUSIVE: without it, no row may be moved (see movedWithoutExclusive).
 *
 * DEFAULT is read (is any row of the range there?) before either lock, not between them: a writer
 * whose row goes to DEFAULT holds the parent and waits for DEFAULT, so one that arrives between
 * our two requests makes us wait for each other until our short wait gives up. Reading a large
 * DEFAULT there made nearly every attempt meet such an insert under a steady writer, and the
 * attach failed once its retry budget was spent.
 */
export async function lockForAttach(
  trx: Transaction<DB>,
  ctx: ApplyContext,
  start: Date,
  { col, from, to }: NewChild,
  exclusive: boolean,
): Promise<{ readonly parentExclusive: boolean }> {
  const { policy, catalog } = ctx;
  const parent = catalog.table;
  const def = catalog.defaultPartition;
  const wait = Math.min(policy.lockTimeoutMs, PARENT_LOCK_WAIT_MS);
  if (!def) {
    if (!exclusive) {
      await sql`LOCK TABLE ONLY ${relationSql(parent)} IN SHARE UPDATE EXCLUSIVE MODE`.execute(trx);
      return { parentExclusive: false };
    }
    await refuseWhileLongHoldersOf(trx, parent, wait);
    await lockParentBriefly(trx, ctx, sql`ACCESS EXCLUSIVE`, wait, undefined);
    return { parentExclusive: true };
  }
  // With constraint exclusion on, a valid guard on DEFAULT (default-guard.ts) that covers the
  // range answers the probe from the catalog; otherwise it reads DEFAULT (by index if any). Not
  // FROM ONLY: a DEFAULT that is itself partitioned holds its rows in its own partitions, and the
  // move (which reads them) would then find rows the probe did not, on every attempt.
  await sql`SELECT set_config('constraint_exclusion', 'on', true)`.execute(trx);
  const probe = await sql<{ any: boolean; server_now: Date }>`
    SELECT EXISTS (SELECT 1 FROM ${relationSql(def)} WHERE ${col} >= ${from} AND ${col} < ${to}) AS any,
           clock_timestamp() AS server_now`.execute(trx);
  const latestNow = Math.max(ctx.now.getTime(), probe.rows[0]!.server_now.getTime());
  const parentExclusive = probe.rows[0]?.any === true || exclusive;
  await pauseAtFaultPoint("attach-after-probe", ctx.log);
  if (parentExclusive) await refuseWhileLongHoldersOf(trx, parent, wait);
  await lockParentBriefly(trx, ctx, parentLockFor(parentExclusive, start, latestNow), wait, def);
  return { parentExclusive };
}

/**
 * The parent's lock, waiting at most `waitMs`: inserts queue behind our request only that long.
 * With `def`, DEFAULT's ACCESS EXCLUSIVE first, waiting up to the policy's lock_timeout. The
 * statements go in one round trip (no parameters, so node-postgres sends them as one simple query):
 * the parent is requested the moment DEFAULT is granted, leaving no gap in which a writer whose
 * row goes to DEFAULT can take the parent and then wait for DEFAULT, which would make us wait for
 * each other until our short wait gives up.
 * ONLY: the parent's own lock is what every statement on the table must get first; without ONLY,
 * LOCK TABLE also takes each partition in turn, waiting on any of them (an autovacuum, a report
 * naming one) while DEFAULT is already held.
 */
async function lockParentBriefly(
  trx: Transaction<DB>,
  ctx: ApplyContext,
  mode: RawBuilder<unknown>,
  waitMs: number,
  def: Relation | undefined,
) {
  const lockDefault = def ? sql`LOCK TABLE ${relationSql(def)} IN ACCESS EXCLUSIVE MODE;` : sql``;
  await sql`${lockDefault}
    SET LOCAL lock_timeout = ${sql.lit(`${waitMs}ms`)};
    LOCK TABLE ONLY ${relationSql(ctx.catalog.table)} IN ${mode} MODE;
    SET LOCAL lock_timeout = ${sql.lit(`${ctx.policy.lockTimeoutMs}ms`)}`.execute(trx);
}

/**
 * Throws a retryable "lock not available" when rows were moved out of DEFAULT while the parent is
 * not held in ACCESS EXCLUSIVE: they arrived after lockForAttach read DEFAULT, and a move needs
 * that lock (apply.ts). The transaction rolls back with the move; the retry reads them and takes it.
 */
export function movedWithoutExclusive(moved: number, parentExclusive: boolean, childText: string): void {
  if (moved === 0 || parentExclusive) return;
  throw retryableLockError(
    `${moved} rows of ${childText}'s range arrived in DEFAULT while the attach took its locks; retrying with the lock a move needs`,
  );
}

/** The parent's lock mode for an attach beside a DEFAULT partition (the cases are explained in apply.ts). */
function parentLockFor(rowsMove: boolean, from: Date, latestNowMs: number) {
  if (rowsMove) return sql`ACCESS EXCLUSIVE`;
  return from.getTime() >= latestNowMs + FUTURE_MARGIN_MS
    ? sql`SHARE UPDATE EXCLUSIVE`
    : sql`SHARE ROW EXCLUSIVE`;
}

/**
 * Throws a retryable "lock not available" (the retry loop backs off) while another transaction
 * that has been open longer than `waitMs` holds any lock on `relation`: our ACCESS EXCLUSIVE request
 * would only time out after making every new reader and writer queue behind it.
 */
async function refuseWhileLongHoldersOf(trx: Transaction<DB>, relation: Relation, waitMs: number) {
  const r = await sql<{ pid: number; mode: string; state: string | null }>`
    SELECT l.pid, l.mode, a.state
      FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = ${relationOidSql(relation)} AND l.granted
       -- Oids are unique within one database only: a copy of this one has the same oid.
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
       AND l.pid <> pg_backend_pid()
       AND a.xact_start < clock_timestamp() - make_interval(secs => ${waitMs / 1000})
     LIMIT 1`.execute(trx);
  const holder = r.rows[0];
  if (!holder) return;
  throw retryableLockError(
    `${displayRelation(relation)} is held by pid ${holder.pid} (${holder.mode}, ${holder.state ?? "?"}) in a transaction older than ${waitMs} ms; not queueing for ACCESS EXCLUSIVE behind it`,
  );
}
