// Row deletes in time order, for a leaf relation with a btree index that leads with the time column
// (most telemetry tables have one: it is what their readers use). Each batch deletes the oldest
// expired rows, `time >= low AND time < high`, where `high` is the time of the row `size` rows on
// from `low`, read from the index; the next batch starts at `high`. So the deletes read only
// expired rows (and the pages they share), as one plain DELETE does, where block ranges read every
// block of the table and must then look through its unexpired rest for stragglers. Batch sizes, in
// rows, follow the time each batch took (batch-size.ts).
//
// Kill-safe as block ranges are: each batch is its own short transaction, bounded in rows even
// where many rows share one time, and no row at or after the cutoff is ever deleted (every bound is
// an expired row's time or the cutoff, and PostgreSQL re-checks the condition on a row a concurrent
// update changed). There is nothing to resume: every pass starts at the oldest expired row,
// wherever the last one stopped, and a row written with an old time behind the pass is deleted by
// the next run. The bounds are carried as the database's own text, which it reads back exactly in
// the same session, never as a JavaScript Date, which has no microseconds and no infinities.
import { type Kysely, sql } from "kysely";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { BATCH_TARGET_MS, nextBatchSize } from "./batch-size.ts";
import type { RetentionContext, RetentionOutcome } from "./context.ts";
import {
  type BatchStop,
  type DeleteProgress,
  type DeleteRows,
  inDeleteTransaction,
  logDeleteProgress,
  warnDeletesStopped,
} from "./delete-batch.ts";
import { retentionOf } from "./expiry.ts";

/** An index that lets row deletes go in time order. */
export interface TimeOrderIndex {
  oid: number;
  name: string;
  /**
   * Whether its ascending order puts NULLs first (ASC NULLS FIRST, or DESC NULLS LAST read
   * backwards): a read in time order must ask for that order to be served by the index alone.
   */
  nullsFirst: boolean;
}

/**
 * A valid btree index of `relation` whose first column is the policy's time column and which covers
 * every row (not partial), or undefined when it has none.
 */
export async function timeOrderIndex(
  db: Kysely<DB>,
  relation: Relation,
  timeColumn: string,
): Promise<TimeOrderIndex | undefined> {
  // indoption bit 1 is DESC, bit 2 NULLS FIRST.
  const r = await sql<{ oid: number; name: string; nulls_first: boolean }>`
    SELECT i.indexrelid::int8 AS oid, ic.relname::text AS name,
           ((i.indoption[0] & 1) <> 0) <> ((i.indoption[0] & 2) <> 0) AS nulls_first
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = ${relationOidSql(relation)}
       AND am.amname = 'btree' AND i.indisvalid AND i.indisready AND i.indpred IS NULL
       AND a.attname = ${timeColumn}
     ORDER BY i.indnatts, ic.relname
     LIMIT 1`.execute(db);
  const row = r.rows[0];
  return row && { oid: Number(row.oid), name: row.name, nullsFirst: row.nulls_first };
}

/**
 * Deletes the rows of `action.relation` older than `action.before` in time order (see the top of
 * this file), by `index`.
 */
export async function deleteRowsInTimeOrder(
  ctx: RetentionContext,
  action: DeleteRows,
  first: TimeOrderIndex,
): Promise<RetentionOutcome> {
  let index = first;
  const retention = retentionOf(ctx.policy);
  const started = Date.now();
  const deadline = ctx.deadline ?? started + retention.timeBudgetMs;
  const target = ctx.batchTargetMs ?? BATCH_TARGET_MS;
  const progress: DeleteProgress = { deleted: 0, batches: 0, started, lastLog: started };
  let size = retention.batchSize;
  let stopped: BatchStop | "stopped" | undefined;
  // Where the next batch starts: undefined before the first (which reads the oldest expired row's
  // time), null once nothing expired is left.
  let low: string | null | undefined;
  while (low !== null) {
    const now = Date.now();
    if (ctx.signal.aborted || now > deadline) {
      stopped = "stopped";
      break;
    }
    // A batch never aims past the run's deadline.
    const aim = Math.min(target, Math.max(1, deadline - now));
    const t0 = performance.now();
    const from = low;
    const batch = await inDeleteTransaction(
      ctx,
      action,
      (trx) => deleteOldest(trx, ctx, action, { low: from, size, index }),
      index.oid,
    );
    if (batch === "index gone") {
      // A REINDEX CONCURRENTLY replaces the index under a new oid; another may serve as well.
      const again = await timeOrderIndex(ctx.db, action.relation, ctx.policy.timeColumn);
      if (again !== undefined && again.oid !== index.oid) {
        ctx.log.info("the index row deletes read was replaced; going on with the new one", {
          relation: displayRelation(action.relation),
          index: again.name,
        });
        index = again;
        continue;
      }
    }
    if (typeof batch === "string") {
      stopped = batch;
      break;
    }
    const took = performance.now() - t0;
    progress.deleted += batch.deleted;
    progress.batches++;
    size = nextBatchSize(size, took, aim);
    low = batch.next;
    if (progress.batches === 10) await pauseAtFaultPoint("after-delete-batch", ctx.log);
    if (low) logDeleteProgress(ctx, action, progress, { deletedUpTo: low });
    // The pause lets writers, replicas and vacuum catch up with what a batch locked and wrote.
    if (batch.deleted > 0 && retention.batchPauseMs > 0)
      await new Promise((r) => setTimeout(r, retention.batchPauseMs));
  }
  if (stopped) warnDeletesStopped(ctx, action, progress, stopped, low ? { deletedUpTo: low } : {});
  return {
    rows: progress.deleted,
    bytes: 0,
    path: `batched delete in time order by index ${index.name} (${progress.batches} batches, each aiming at ${target} ms)`,
    batches: progress.batches,
    ...(stopped ? { incomplete: true } : {}),
  };
}

/**
 * Where a batch ends: `high`, the time of the row `size` rows on from `low` (null when fewer are
 * left), and whether it is `low` itself (`crowded`). Read on its own, before the DELETE, so that
 * the DELETE is planned with both bounds known (an index range scan), not with a subquery's value
 * it cannot estimate; in the index's own order, so that the index serves it with no sort (`size`
 * entries read, from the index alone where the visibility map says their pages are all visible).
 */
export function batchEdgeSql(
  action: DeleteRows,
  timeColumn: string,
  at: { low: string; size: number; index: TimeOrderIndex },
) {
  const rel = relationSql(action.relation);
  const col = columnSql(timeColumn);
  const order = at.index.nullsFirst ? sql`${col} NULLS FIRST` : col;
  return sql<{ high: string | null; crowded: boolean }>`
    WITH ahead AS (
      SELECT ${col} AS t FROM ONLY ${rel} WHERE ${col} >= ${at.low} AND ${col} < ${action.before}
       ORDER BY ${order} OFFSET ${at.size} LIMIT 1)
    SELECT (SELECT t FROM ahead)::text AS high, coalesce((SELECT t FROM ahead) = ${at.low}, false) AS crowded`;
}

/**
 * One batch, in the transaction `trx`: the rows from `low` (undefined: the oldest expired row's
 * time, read first) up to the time of the row `size` rows on
 * (exclusive), or up to the cutoff when fewer than `size` expired rows are left. The rows deleted,
 * and where the next batch starts (null: nothing expired is left past this batch). Where more than
 * `size` rows share the time `low` (devices with no clock all dated 1970, say), the batch deletes
 * `size` of them, picked by ctid within this one relation, and the next starts at `low` again: a
 * batch stays bounded however many rows share a time.
 */
async function deleteOldest(
  trx: Kysely<DB>,
  ctx: RetentionContext,
  action: DeleteRows,
  at: { low: string | undefined; size: number; index: TimeOrderIndex },
): Promise<{ deleted: number; next: string | null }> {
  // A crowd's rows are picked from the start of its key each time: cheap while the rows deleted
  // before can be marked dead in the index as the scan meets them; with the oldest transaction
  // held back (a long transaction, a replica's feedback) each batch walks all of them again.
  const rel = relationSql(action.relation);
  const col = columnSql(ctx.policy.timeColumn);
  const expired = sql`${col} < ${action.before}`;
  const low = at.low ?? (await oldestExpired(trx, action, ctx.policy.timeColumn));
  if (low === null) return { deleted: 0, next: null };
  const size = at.size;
  const edge = await batchEdgeSql(action, ctx.policy.timeColumn, { ...at, low }).execute(trx);
  const { high = null, crowded = false } = edge.rows[0] ?? {};
  if (crowded) {
    // The time is checked again by the DELETE itself: a row a concurrent update moved is re-checked
    // on its new version, and a TID list alone matched any version on some minor releases.
    const deleted = await sql`DELETE FROM ONLY ${rel}
       WHERE ctid = ANY (ARRAY(SELECT ctid FROM ONLY ${rel} WHERE ${col} = ${low} LIMIT ${size}))
         AND ${col} = ${low}`.execute(trx);
    return { deleted: Number(deleted.numAffectedRows ?? 0n), next: low };
  }
  const upTo = high === null ? expired : sql`${col} < ${high}`;
  const deleted = await sql`DELETE FROM ONLY ${rel} WHERE ${col} >= ${low} AND ${upTo}`.execute(trx);
  return { deleted: Number(deleted.numAffectedRows ?? 0n), next: high };
}

/** The time of the oldest expired row, as text; null when there is none. */
async function oldestExpired(
  trx: Kysely<DB>,
  action: DeleteRows,
  timeColumn: string,
): Promise<string | null> {
  const col = columnSql(timeColumn);
  const r = await sql<{ low: string | null }>`
    SELECT min(${col})::text AS low FROM ONLY ${relationSql(action.relation)} WHERE ${col} < ${action.before}`.execute(
    trx,
  );
  return r.rows[0]?.low ?? null;
}
