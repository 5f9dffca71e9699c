// How large each row-delete batch is: sized by time, not by a fixed row count. A fixed 5,000 rows
// made a batch's own cost (a transaction, a few round trips) a large part of the whole on a fast
// table; a batch of a fixed duration keeps it small on any table, while each transaction still ends
// within a fraction of a second (row locks held, SIGTERM and the time budget honoured between
// batches). Used by both ways of deleting: by block range (delete-rows.ts) and in time order
// (delete-in-time-order.ts).

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
 * The next batch's size (in blocks, or in rows), from the last one's size and how long it took;
 * never more than `most` (for blocks, see blocksWithinDeleteCost).
 */
export function nextBatchSize(size: number, tookMs: number, targetMs: number, most = Infinity): number {
  const largest = Math.min(Math.ceil(size * MAX_GROWTH), most);
  const scaled = tookMs > 0 ? Math.floor((size * targetMs) / tookMs) : largest;
  return Math.max(1, Math.min(largest, scaled));
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
