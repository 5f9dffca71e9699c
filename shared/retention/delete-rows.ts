// Row deletes within one named leaf relation, addressed by that relation's own physical block
// ranges (ctid), never through a partitioned parent (ctid repeats across partitions: deleting by a
// parent's ctid deletes recent rows of other partitions too).
import { sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type RetentionContext, type RetentionOutcome, retryOptions } from "./context.ts";
import { retentionOf } from "./expiry.ts";
import type { RetentionAction } from "./plan.ts";

/**
 * Deletes rows older than the cutoff from one leaf relation, in batches of physical blocks
 * (`ctid >= '(b,0)' AND ctid < '(b+n,0)'`: a TID range scan, PostgreSQL 14+). Each batch is its
 * own short transaction; a kill loses nothing newer than the cutoff and the next run goes on.
 * A run that stops at its time budget reports the block it reached; the next run starts there
 * (rescanning cleaned blocks from 0 every run would spend each small budget on no work at all).
 */
export async function deleteRowsInBatches(
  ctx: RetentionContext,
  action: Extract<RetentionAction, { kind: "delete_rows" }>,
  startBlock: number,
): Promise<RetentionOutcome> {
  const retention = retentionOf(ctx.policy);
  const rel = relationSql(action.relation);
  const shown = displayRelation(action.relation);
  const col = columnSql(ctx.policy.timeColumn);
  const { blocks, blocksPerBatch } = await batchGeometry(ctx, action.relation, retention.batchSize);
  const started = Date.now();
  let deleted = 0;
  let lastProgress = started;
  // One full pass over the relation, starting where the previous run stopped and wrapping round to
  // block 0: rows inserted since (with old timestamps) may sit in space freed before that block.
  const first = startBlock > 0 && startBlock < blocks ? startBlock : 0;
  if (first > 0)
    ctx.log.info("resuming row deletes where the previous run stopped", {
      relation: shown,
      block: first,
      blocks,
    });
  const segments: [number, number][] =
    first > 0
      ? [
          [first, blocks],
          [0, first],
        ]
      : [[0, blocks]];
  let scanned = 0;
  let stoppedAt: number | undefined;
  outer: for (const [from, to] of segments) {
    for (let block = from; block < to; block += blocksPerBatch) {
      if (ctx.signal.aborted || Date.now() > (ctx.deadline ?? started + retention.timeBudgetMs)) {
        stoppedAt = block;
        break outer;
      }
      const lo = `(${block},0)`;
      const hi = `(${Math.min(block + blocksPerBatch, to)},0)`;
      const { result } = await withLockRetry(
        ctx.db,
        retryOptions(ctx, `delete expired rows of ${shown}`),
        async (trx) => {
          // A batch lost in a crash is simply deleted again by the next run, so its commit need
          // not wait for the WAL flush: hundreds of small commits cost no fsync each.
          await sql`SET LOCAL synchronous_commit = off`.execute(trx);
          return await sql`DELETE FROM ONLY ${rel}
             WHERE ctid >= ${lo}::tid AND ctid < ${hi}::tid AND ${col} < ${action.before}`.execute(trx);
        },
      );
      deleted += Number(result.numAffectedRows ?? 0n);
      scanned += Math.min(blocksPerBatch, to - block);
      if (scanned >= 10 * blocksPerBatch) await pauseAtFaultPoint("after-delete-batch", ctx.log);
      if (Date.now() - lastProgress > 5_000) {
        lastProgress = Date.now();
        const rowsPerSecond = Math.round(deleted / ((Date.now() - started) / 1000));
        const remainingEstimate = Math.max(0, action.rows - deleted);
        const progress = { rowsDeleted: deleted, rowsPerSecond, remainingEstimate, blocksDone: scanned };
        ctx.log.info("deleting expired rows", { relation: shown, ...progress, blocks });
      }
      if (retention.batchPauseMs > 0) await new Promise((r) => setTimeout(r, retention.batchPauseMs));
    }
  }
  const incomplete = stoppedAt !== undefined;
  if (incomplete) {
    ctx.log.warn("row deletes stopped at the time budget (or on request); the next run continues", {
      relation: shown,
      rowsDeleted: deleted,
      remainingEstimate: Math.max(0, action.rows - deleted),
      nextBlock: stoppedAt,
    });
  }
  return {
    rows: deleted,
    bytes: 0,
    path: `batched delete by block range (${blocksPerBatch} blocks per batch)`,
    ...(incomplete ? { incomplete, nextBlock: stoppedAt } : {}),
  };
}

/** The relation's size in blocks, and how many blocks make a batch of about `batchSize` rows. */
async function batchGeometry(
  ctx: RetentionContext,
  relation: Relation,
  batchSize: number,
): Promise<{ blocks: number; blocksPerBatch: number }> {
  const size = await sql<{ blocks: string; tuples: number; pages: number }>`
    SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int) AS blocks,
           c.reltuples AS tuples, c.relpages AS pages
      FROM pg_class c WHERE c.oid = ${relationOidSql(relation)}`.execute(ctx.db);
  const blocks = Number(size.rows[0]?.blocks ?? 0);
  const tuplesPerBlock =
    size.rows[0] && size.rows[0].pages > 0 && size.rows[0].tuples > 0
      ? size.rows[0].tuples / size.rows[0].pages
      : 60;
  return { blocks, blocksPerBatch: Math.max(1, Math.floor(batchSize / Math.max(1, tuplesPerBlock))) };
}
