// Row deletes within one named leaf relation, addressed by that relation's own physical block
// ranges (ctid), never through a partitioned parent (ctid repeats across partitions: deleting by a
// parent's ctid deletes recent rows of other partitions too).
//
// Batches are sized by time, not by a row count: each batch's block range is scaled by how long
// the last one took, aiming at BATCH_TARGET_MS, but never past the blocks whose rows, all expired,
// could be deleted in that time (blocksWithinDeleteCost). A fixed 5,000 rows made a batch's own
// cost (a transaction, a few round trips) a large part of the whole on a fast table; a batch of a fixed
// duration keeps it small on any table, while each transaction still ends within a fraction of a
// second (row locks held, SIGTERM and the time budget honoured between batches).
import { sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type RetentionContext, type RetentionOutcome, retryOptions } from "./context.ts";
import { retentionOf } from "./expiry.ts";
import type { RetentionAction } from "./plan.ts";

/**
 * How long one batch should take, by default (RetentionContext.batchTargetMs overrides it). At
 * 100 ms a batch's own cost (about 2 ms) is lost in it, and rows a concurrent update wants are
 * locked for no longer than that; longer batches deleted no faster in the benchmark. A constant
 * rather than a policy field until a table needs another value.
 */
export const BATCH_TARGET_MS = 100;

/** How much larger than the last a batch may be: past blocks with nothing to delete, a batch may meet blocks full of it. */
const MAX_GROWTH = 1.5;

/**
 * Until a batch has deleted a row, no batch spans more than this many times the first one (sized
 * by the policy's batchSize rows): a batch's time says what scanning costs, not what deleting does.
 */
const UNMEASURED_MAX_MULTIPLE = 4;

/**
 * The next batch's size in blocks, from the last one's size and how long it took; never more than
 * `mostBlocks` (see blocksWithinDeleteCost).
 */
export function nextBatchBlocks(
  blocks: number,
  tookMs: number,
  targetMs: number,
  mostBlocks = Infinity,
): number {
  const most = Math.min(Math.ceil(blocks * MAX_GROWTH), mostBlocks);
  const scaled = tookMs > 0 ? Math.floor((blocks * targetMs) / tookMs) : most;
  return Math.max(1, Math.min(most, scaled));
}

/**
 * The most blocks a batch may span so that deleting every row in them would still fit in
 * `targetMs`, at the lowest cost per deleted row seen so far (`msPerRow`; the densest batch tells
 * it best, a sparse one mostly measures scanning). Without that scaling by time alone overshoots:
 * a stretch of blocks with nothing to delete is cheap, the batch grows through it, then meets
 * blocks full of expired rows. Before any row is deleted: UNMEASURED_MAX_MULTIPLE first batches.
 */
export function blocksWithinDeleteCost(
  targetMs: number,
  tuplesPerBlock: number,
  msPerRow: number | undefined,
  firstBlocks: number,
): number {
  if (msPerRow === undefined || msPerRow <= 0) return Math.max(1, firstBlocks * UNMEASURED_MAX_MULTIPLE);
  return Math.max(1, Math.floor(targetMs / (msPerRow * Math.max(1, tuplesPerBlock))));
}

/** The lowest cost per deleted row so far, given the last batch's time and rows deleted. */
export function lowestMsPerRow(
  seen: number | undefined,
  tookMs: number,
  deleted: number,
): number | undefined {
  if (deleted <= 0 || tookMs <= 0) return seen;
  const cost = tookMs / deleted;
  return seen === undefined ? cost : Math.min(seen, cost);
}

type DeleteRows = Extract<RetentionAction, { kind: "delete_rows" }>;

/**
 * Deletes rows older than the cutoff from one leaf relation, in batches of physical blocks
 * (`ctid >= '(b,0)' AND ctid < '(b+n,0)'`: a TID range scan, PostgreSQL 14+, which reads only
 * those blocks). Each batch is its own short transaction; a kill loses nothing newer than the
 * cutoff (the time condition is re-checked on any row a concurrent update changed) and the next
 * run goes on. A run that stops at its time budget reports the block it reached; the next run
 * starts there (rescanning cleaned blocks from 0 every run would spend each small budget on no
 * work at all), and wraps round to block 0: rows inserted since (with old timestamps) may sit in
 * space freed before that block. The pass ends once as many rows as were counted when the run
 * planned (action.rows) are deleted and one read finds no expired row in the blocks it has not
 * reached: in a table written in time order those are its newer half, not worth deleting from.
 * Rows with old timestamps written since planning (devices with no clock set) can use up the
 * count before the counted rows are all gone; then that read finds them and the pass goes on to
 * its end. A row that turns up later beyond the pass's last block is deleted by the next run, as
 * one written behind the pass always was.
 */
export async function deleteRowsInBatches(
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
  const progress = { deleted: 0, scanned: 0, batches: 0, started, lastLog: started };
  let size = blocksPerBatch;
  let msPerRow: number | undefined;
  let stoppedAt: number | undefined;
  let countEnds = true;
  let heldAt: number | undefined;
  outer: for (const [i, [from, to]] of segments.entries()) {
    for (let block = from; block < to; ) {
      const now = Date.now();
      if (ctx.signal.aborted || now > deadline) {
        stoppedAt = block;
        break outer;
      }
      // A batch never aims past the run's deadline.
      const aim = Math.min(target, Math.max(1, deadline - now));
      const end = Math.min(block + size, to);
      const t0 = performance.now();
      const batch = await deleteBatch(ctx, action, block, end);
      if (batch === "held") {
        heldAt = stoppedAt = block;
        break outer;
      }
      const deleted = batch;
      const took = performance.now() - t0;
      progress.deleted += deleted;
      progress.scanned += end - block;
      progress.batches++;
      msPerRow = lowestMsPerRow(msPerRow, took, deleted);
      const most = blocksWithinDeleteCost(aim, tuplesPerBlock, msPerRow, blocksPerBatch);
      size = nextBatchBlocks(end - block, took, aim, most);
      block = end;
      if (progress.batches === 10) await pauseAtFaultPoint("after-delete-batch", ctx.log);
      logProgress(ctx, action, progress, blocks);
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
  const incomplete = stoppedAt !== undefined;
  if (heldAt !== undefined) {
    ctx.log.warn(
      `${shown} was held while its expired rows were being deleted: the deletes stopped, and the hold keeps the rest`,
      {
        relation: shown,
        rowsDeleted: progress.deleted,
        remainingEstimate: Math.max(0, action.rows - progress.deleted),
      },
    );
  } else if (incomplete) {
    ctx.log.warn("row deletes stopped at the time budget (or on request); the next run continues", {
      relation: shown,
      rowsDeleted: progress.deleted,
      remainingEstimate: Math.max(0, action.rows - progress.deleted),
      nextBlock: stoppedAt,
    });
  }
  return {
    rows: progress.deleted,
    bytes: 0,
    path: `batched delete by block range (${progress.batches} batches, each aiming at ${target} ms)`,
    batches: progress.batches,
    ...(incomplete ? { incomplete, nextBlock: stoppedAt } : {}),
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

/**
 * One batch, the expired rows of blocks [from, to) in one transaction: the rows deleted, or "held"
 * when a hold on the relation was placed since the run planned (a hold keeps all of a relation's
 * rows; it applies from the next batch on).
 */
async function deleteBatch(
  ctx: RetentionContext,
  action: DeleteRows,
  from: number,
  to: number,
): Promise<number | "held"> {
  const rel = relationSql(action.relation);
  const col = columnSql(ctx.policy.timeColumn);
  const { result } = await withLockRetry(
    ctx.db,
    retryOptions(ctx, `delete expired rows of ${displayRelation(action.relation)}`),
    async (trx) => {
      // A batch lost in a crash is simply deleted again by the next run, so its commit need
      // not wait for the WAL flush. The same round trip reads whether a hold was placed since.
      const held = await sql<{ held: boolean }>`
        SELECT set_config('synchronous_commit', 'off', true) IS NOT NULL
               AND EXISTS (SELECT 1 FROM telemetry_jobs.retention_holds h
                            WHERE h.partition_name = ${displayRelation(action.relation)}
                              AND h.hold_until > ${ctx.now}) AS held`.execute(trx);
      if (held.rows[0]?.held) return "held" as const;
      const deleted = await sql`DELETE FROM ONLY ${rel}
         WHERE ctid >= ${`(${from},0)`}::tid AND ctid < ${`(${to},0)`}::tid AND ${col} < ${action.before}`.execute(
        trx,
      );
      return Number(deleted.numAffectedRows ?? 0n);
    },
  );
  return result;
}

/** Every 5 s: rows deleted so far, the rate, and what is left. */
function logProgress(
  ctx: RetentionContext,
  action: DeleteRows,
  progress: { deleted: number; scanned: number; batches: number; started: number; lastLog: number },
  blocks: number,
): void {
  const now = Date.now();
  if (now - progress.lastLog <= 5_000) return;
  progress.lastLog = now;
  ctx.log.info("deleting expired rows", {
    relation: displayRelation(action.relation),
    rowsDeleted: progress.deleted,
    rowsPerSecond: Math.round(progress.deleted / ((now - progress.started) / 1000)),
    remainingEstimate: Math.max(0, action.rows - progress.deleted),
    blocksDone: progress.scanned,
    batches: progress.batches,
    blocks,
  });
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
