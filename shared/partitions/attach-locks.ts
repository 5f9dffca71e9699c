// The attach transaction's locks: which lock the parent needs for an attach (see apply.ts for the
// cases: beside a DEFAULT partition, with or without rows of the range to move), taken so that
// writers never queue for long behind our request.
import { sql, type Transaction } from "kysely";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE } from "../db/sqlstate.ts";
import type { ApplyContext } from "./apply.ts";
import type { NewChild } from "./standalone.ts";
import { FUTURE_MARGIN_MS } from "./time.ts";

/** How long the attach transaction may queue for the parent lock while writers queue behind it. */
export const PARENT_LOCK_WAIT_MS = 200;

/**
 * The attach transaction's locks (the cases are explained in apply.ts). `exclusive`: ACCESS EXCLUSIVE on
 * the parent whatever the case, which a DETACH in the same transaction needs; taken, as when rows
 * move, only with a short wait and never behind a long-open transaction.
 */
export async function lockForAttach(
  trx: Transaction<DB>,
  ctx: ApplyContext,
  start: Date,
  { col, from, to }: NewChild,
  exclusive: boolean,
): Promise<void> {
  const { policy, catalog } = ctx;
  const parent = catalog.table;
  const def = catalog.defaultPartition;
  let parentMode = sql`SHARE UPDATE EXCLUSIVE`;
  let long = exclusive;
  if (def) {
    await sql`LOCK TABLE ${relationSql(def)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
    // With constraint exclusion on, a valid guard on DEFAULT (default-guard.ts) that covers the
    // range answers the probe from the catalog; otherwise it reads DEFAULT (by index if any).
    await sql`SELECT set_config('constraint_exclusion', 'on', true)`.execute(trx);
    const probe = await sql<{ any: boolean; server_now: Date }>`
      SELECT EXISTS (SELECT 1 FROM ONLY ${relationSql(def)} WHERE ${col} >= ${from} AND ${col} < ${to}) AS any,
             clock_timestamp() AS server_now`.execute(trx);
    const rowsMove = probe.rows[0]?.any === true;
    const latestNow = Math.max(ctx.now.getTime(), probe.rows[0]!.server_now.getTime());
    parentMode = parentLockFor(rowsMove || exclusive, start, latestNow);
    long ||= rowsMove;
  } else if (exclusive) parentMode = sql`ACCESS EXCLUSIVE`;
  if (!def && !exclusive) {
    await sql`LOCK TABLE ONLY ${relationSql(parent)} IN ${parentMode} MODE`.execute(trx);
    return;
  }
  const wait = Math.min(policy.lockTimeoutMs, PARENT_LOCK_WAIT_MS);
  if (long) await refuseWhileLongHoldersOf(trx, parent, wait);
  await sql`SELECT set_config('lock_timeout', ${`${wait}ms`}, true)`.execute(trx);
  // ONLY: the parent's own lock is what every statement on the table must get first; without
  // ONLY, LOCK TABLE also takes each partition in turn, waiting on any of them (an autovacuum,
  // a report naming one) while DEFAULT is already held.
  await sql`LOCK TABLE ONLY ${relationSql(parent)} IN ${parentMode} MODE`.execute(trx);
  await sql`SELECT set_config('lock_timeout', ${`${policy.lockTimeoutMs}ms`}, true)`.execute(trx);
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
  throw Object.assign(
    new Error(
      `${displayRelation(relation)} is held by pid ${holder.pid} (${holder.mode}, ${holder.state ?? "?"}) in a transaction older than ${waitMs} ms; not queueing for ACCESS EXCLUSIVE behind it`,
    ),
    { code: SQLSTATE.lockNotAvailable },
  );
}
