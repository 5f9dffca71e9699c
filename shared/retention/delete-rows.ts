// Row deletes within one named leaf relation, never through a partitioned parent (ctid repeats
// across partitions: deleting by a parent's ctid deletes recent rows of other partitions too), in
// short transactions sized by time (batch-size.ts). Two ways, by what the relation has:
// - a btree index that leads with the time column: in time order, reading only expired rows
//   (delete-in-time-order.ts);
// - otherwise by the relation's own physical block ranges (ctid), below.
import { type Kysely, sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { BATCH_TARGET_MS, blocksWithinDeleteCost, lowestMsPerRow, nextBatchSize } from "./batch-size.ts";
import { type RetentionContext, type RetentionOutcome, retryOptions } from "./context.ts";
import {
  type BatchStop,
  type DeleteProgress,
  type DeleteRows,
  inDeleteTransaction,
  logDeleteProgress,
  warnDeletesStopped,
} from "./delete-batch.ts";
import { deleteRowsInTimeOrder, timeOrderIndex } from "./delete-in-time-order.ts";
import { retentionOf } from "./expiry.ts";

/**
 * Deletes rows older than the cutoff (`action.before`) from one leaf relation: in time order when
 * an index allows it, else by block range; `startBlock` is where the last run's block-range pass
 * stopped (a pass in time order needs no such mark: it starts at the oldest expired row).
 */
export async function deleteRowsInBatches(
  ctx: RetentionContext,
  action: DeleteRows,
  startBlock: number,
): Promise<RetentionOutcome> {
  const index = await timeOrderIndex(ctx.db, action.relation, ctx.policy.timeColumn);
  if (index !== undefined) return await deleteRowsInTimeOrder(ctx, action, index);
  return await deleteByBlockRange(ctx, action, startBlock);
}

/**
 * Deletes expired rows in batches of physical blocks (`ctid >= '(b,0)' AND ctid < '(b+n,0)'`: a
 * TID range scan, PostgreSQL 14+, which reads only those blocks). Each batch is its own short
 * transaction; a kill loses nothing newer than the cutoff (the time condition is re-checked on
 * any row a concurrent update changed) and the next run goes on. Each batch's block range is scaled
 * by how long the last one took, but never past the blocks whose rows, all expired, could be
 * deleted in that time (blocksWithinDeleteCost). A run that stops at its time budget reports the
 * block it reached; the next run starts there (rescanning cleaned blocks from 0 every run would
 * spend each small budget on no work at all), and wraps round to block 0: rows inserted since
 * (with old timestamps) may sit in space freed before that block. The pass ends once as many rows
 * as the plan counted (action.rows) are deleted and one read finds no expired row
 * in the blocks it has not reached: in a table written in time order those are its newer half, not
 * worth deleting from. Rows with old timestamps written since the count (devices with no clock set)
 * can use up the count before the counted rows are all gone; then that read finds them and the pass
 * goes on to its end. A row that turns up later beyond the pass's last block is deleted by the next
 * run, as one written behind the pass always was.
 */
async function deleteByBlockRange(
  ctx: RetentionContext,
  action: DeleteRows,
  startBlock: number,
): Promise<RetentionOutcome> {
  const retention = retentionOf(ctx.policy);
  const shown = displayRelation(action.relation);
  const { blocks, blocksPerBatch, tuplesPerBlock } = await batchGeometry(
    ctx,
    action.relation,
    retention.batchSize,
  );
  const started = Date.now();
  const deadline = ctx.deadline ?? started + retention.timeBudgetMs;
  const target = ctx.batchTargetMs ?? BATCH_TARGET_MS;
  const segments = passSegments(ctx, shown, startBlock, blocks);
  const progress: DeleteProgress = { deleted: 0, batches: 0, started, lastLog: started };
  let scanned = 0;
  let size = blocksPerBatch;
  let msPerRow: number | undefined;
  let stopped: { at: number; why: BatchStop | "stopped" } | undefined;
  // An estimate (facts.ts counts exactly where this pass may run) cannot end a pass early.
  let countEnds = !action.rowsEstimated;
  outer: for (const [i, [from, to]] of segments.entries()) {
    for (let block = from; block < to; ) {
      const now = Date.now();
      if (ctx.signal.aborted || now > deadline) {
        stopped = { at: block, why: "stopped" };
        break outer;
      }
      // A batch never aims past the run's deadline.
      const aim = Math.min(target, Math.max(1, deadline - now));
      const end = Math.min(block + size, to);
      const t0 = performance.now();
      const deleted = await inDeleteTransaction(ctx, action, (trx) =>
        deleteBlocks(trx, ctx, action, block, end),
      );
      if (typeof deleted === "string") {
        stopped = { at: block, why: deleted };
        break outer;
      }
      const took = performance.now() - t0;
      progress.deleted += deleted;
      progress.batches++;
      scanned += end - block;
      msPerRow = lowestMsPerRow(msPerRow, took, deleted);
      const most = blocksWithinDeleteCost(aim, tuplesPerBlock, msPerRow, blocksPerBatch);
      size = nextBatchSize(end - block, took, aim, most);
      block = end;
      if (progress.batches === 10) await pauseAtFaultPoint("after-delete-batch", ctx.log);
      logDeleteProgress(ctx, action, progress, { blocksDone: scanned, blocks });
      if (countEnds && progress.deleted >= action.rows) {
        const rest: [number, number][] = [[block, to], ...segments.slice(i + 1)];
        if (!(await expiredRowsIn(ctx, action, rest))) break outer;
        // Rows with old timestamps written since the count used it up: on to the end of the pass.
        countEnds = false;
        ctx.log.info("expired rows remain past the counted ones; deleting on to the end", {
          relation: shown,
        });
      }
      // The pause lets writers, replicas and vacuum catch up with what a batch locked and wrote; a
      // batch that deleted nothing did neither (and, bounded by the delete cost, such batches are
      // many where nothing is expired).
      if (deleted > 0 && retention.batchPauseMs > 0)
        await new Promise((r) => setTimeout(r, retention.batchPauseMs));
    }
  }
  if (stopped) warnDeletesStopped(ctx, action, progress, stopped.why, { nextBlock: stopped.at });
  return {
    rows: progress.deleted,
    bytes: 0,
    path: `batched delete by block range (${progress.batches} batches, each aiming at ${target} ms)`,
    batches: progress.batches,
    ...(stopped ? { incomplete: true, nextBlock: stopped.at } : {}),
  };
}

/** The block ranges of one pass: from the resume block to the end, then round from block 0. */
function passSegments(ctx: RetentionContext, shown: string, startBlock: number, blocks: number) {
  const first = startBlock > 0 && startBlock < blocks ? startBlock : 0;
  if (first === 0) return [[0, blocks]] as [number, number][];
  ctx.log.info("resuming row deletes where the previous run stopped", {
    relation: shown,
    block: first,
    blocks,
  });
  return [
    [first, blocks],
    [0, first],
  ] as [number, number][];
}

/**
 * Whether any block range of `ranges` holds a row older than the cutoff: one read, ended at the
 * first such row (by an index on the time column, or a TID range scan of those blocks).
 */
async function expiredRowsIn(
  ctx: RetentionContext,
  action: DeleteRows,
  ranges: readonly [number, number][],
): Promise<boolean> {
  const rel = relationSql(action.relation);
  const col = columnSql(ctx.policy.timeColumn);
  const checks = ranges
    .filter(([from, to]) => from < to)
    .map(
      ([from, to]) => sql`EXISTS (SELECT 1 FROM ONLY ${rel}
        WHERE ctid >= ${`(${from},0)`}::tid AND ctid < ${`(${to},0)`}::tid AND ${col} < ${action.before})`,
    );
  if (checks.length === 0) return false;
  const { result } = await withLockRetry(
    ctx.db,
    retryOptions(ctx, `look for expired rows left in ${displayRelation(action.relation)}`),
    (trx) => sql<{ found: boolean }>`SELECT ${sql.join(checks, sql` OR `)} AS found`.execute(trx),
  );
  return result.rows[0]?.found === true;
}

/** One batch: the expired rows of blocks [from, to), in the transaction `trx`. */
async function deleteBlocks(
  trx: Kysely<DB>,
  ctx: RetentionContext,
  action: DeleteRows,
  from: number,
  to: number,
): Promise<number> {
  const deleted = await sql`DELETE FROM ONLY ${relationSql(action.relation)}
     WHERE ctid >= ${`(${from},0)`}::tid AND ctid < ${`(${to},0)`}::tid
       AND ${columnSql(ctx.policy.timeColumn)} < ${action.before}`.execute(trx);
  return Number(deleted.numAffectedRows ?? 0n);
}

/** The relation's size in blocks, its rows per block, and how many blocks make about `batchSize` rows. */
async function batchGeometry(
  ctx: RetentionContext,
  relation: Relation,
  batchSize: number,
): Promise<{ blocks: number; blocksPerBatch: number; tuplesPerBlock: number }> {
  const size = await sql<{ blocks: string; tuples: number; pages: number }>`
    SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int) AS blocks,
           c.reltuples AS tuples, c.relpages AS pages
      FROM pg_class c WHERE c.oid = ${relationOidSql(relation)}`.execute(ctx.db);
  const blocks = Number(size.rows[0]?.blocks ?? 0);
  const tuplesPerBlock =
    size.rows[0] && size.rows[0].pages > 0 && size.rows[0].tuples > 0
      ? size.rows[0].tuples / size.rows[0].pages
      : 60;
  return {
    blocks,
    blocksPerBatch: Math.max(1, Math.floor(batchSize / Math.max(1, tuplesPerBlock))),
    tuplesPerBlock,
  };
}
