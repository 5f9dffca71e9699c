// What one rollup run must do, as a pure function of the saved watermark, the clock and the
// options: no database, no Date.now(). The executor (apply.ts) carries the plan out.
//
// The invariant the plan keeps: an hour is "final" once it has ended (its start is before
// floor(now)); final hours are materialized, open hours never are. Each run
//   1. recomputes every bucket of the hours that became final since the last run
//      ([previous finalBefore, floor(now)), all groups of its shard), and
//   2. recomputes the final-hour buckets touched by rows that became visible since the last run
//      (late rows, in-flight transactions that have since committed),
// then saves the snapshot it saw and the new finalBefore, in the same transaction.
// A first run (or --from/--to) also schedules a rebuild of whole hours, done in batches.
import type { Duration } from "../config/duration.ts";
import { rawDataHorizon } from "../retention/expiry.ts";

export const HOUR_MS = 3_600_000;

export function floorHour(instant: Date): Date {
  return new Date(Math.floor(instant.getTime() / HOUR_MS) * HOUR_MS);
}

export function ceilHour(instant: Date): Date {
  return new Date(Math.ceil(instant.getTime() / HOUR_MS) * HOUR_MS);
}

export interface Watermark {
  finalBefore: Date;
  backfillNext: Date | null;
  backfillTo: Date | null;
}

export interface HourRange {
  from: Date;
  to: Date;
}

export interface RollupPlanInput {
  now: Date;
  /** The saved state of this shard; undefined on the first run. */
  watermark: Watermark | undefined;
  /** Earliest raw timestamp (first run only: where the history rebuild starts). */
  earliestRow: Date | null;
  /** An explicit rebuild (--from/--to). */
  rebuild?: HourRange | undefined;
  /** Raw rows older than this may already be gone (the source's retention): never recompute there. */
  rawKeep?: Duration | undefined;
  /**
   * At most this many newly final hours are recomputed in the incremental transaction; older ones
   * (after an outage) become rebuild work, done in batches within the time budget.
   */
  maxNewlyFinalHours?: number;
}

export interface RollupPlan {
  /** Hours that became final since the last run: recomputed whole. Empty on a first run. */
  newlyFinal: HourRange | null;
  /** Touched buckets are recomputed only within [horizon, finalBefore). */
  finalBefore: Date;
  horizon: Date | null;
  /** The rebuild to (re)start now, replacing any in progress; null keeps the current one. */
  startBackfill: HourRange | null;
  /** Problems that make the run refuse (exit 2). */
  refusals: string[];
}

export function planRollup(input: RollupPlanInput): RollupPlan {
  const finalBefore = floorHour(input.now);
  const horizon = input.rawKeep ? rawDataHorizon(input.rawKeep, input.now) : null;
  const refusals: string[] = [];
  const prev = input.watermark;

  let newlyFinal: HourRange | null = null;
  if (prev && prev.finalBefore < finalBefore) {
    // From where the last run stopped, even when that is before the raw-data horizon (rollups that
    // stalled longer than the source's keep): these hours were never final, so no rollup row of
    // theirs exists to be overwritten, and retention keeps the raw rows of hours that are not final
    // yet. Skipping to the horizon would leave them without rollups for good once retention,
    // seeing them final, removes their raw rows.
    newlyFinal = { from: prev.finalBefore, to: finalBefore };
  }

  let startBackfill: HourRange | null = null;
  let overflow: HourRange | null = null;
  const maxHours = input.maxNewlyFinalHours;
  if (newlyFinal && maxHours && newlyFinal.to.getTime() - newlyFinal.from.getTime() > maxHours * HOUR_MS) {
    const split = new Date(newlyFinal.to.getTime() - maxHours * HOUR_MS);
    overflow = { from: newlyFinal.from, to: split };
    newlyFinal = { from: split, to: newlyFinal.to };
  }
  if (input.rebuild) {
    const from = floorHour(input.rebuild.from);
    const to = ceilHour(input.rebuild.to) < finalBefore ? ceilHour(input.rebuild.to) : finalBefore;
    if (horizon && from < horizon)
      refusals.push(
        `--from ${from.toISOString()} is before the raw-data horizon ${horizon.toISOString()} (now - the source's retention keep): raw rows there may be gone and a rebuild would overwrite complete rollups with partial ones`,
      );
    if (!(from < to))
      refusals.push(`--from/--to select no complete hour before ${finalBefore.toISOString()}`);
    startBackfill = { from, to };
  } else if (!prev && input.earliestRow) {
    // A first run rolls up all the history there is, horizon or not: there is no earlier
    // aggregate to overwrite, and these rollups are what outlives the raw rows.
    const from = floorHour(input.earliestRow);
    if (from < finalBefore) startBackfill = { from, to: finalBefore };
  }

  if (overflow && refusals.length === 0)
    startBackfill = startBackfill
      ? {
          from: overflow.from < startBackfill.from ? overflow.from : startBackfill.from,
          to: overflow.to > startBackfill.to ? overflow.to : startBackfill.to,
        }
      : overflow;
  return {
    newlyFinal,
    finalBefore: prev && prev.finalBefore > finalBefore ? prev.finalBefore : finalBefore,
    horizon,
    startBackfill: refusals.length > 0 ? null : startBackfill,
    refusals,
  };
}

/**
 * Where newly visible rows can touch a bucket that this run must recompute one by one: final hours
 * from the horizon on, minus the ranges recomputed whole anyway (newly final hours, a pending
 * rebuild). Disjoint, sorted. The scan for new rows is limited to these ranges (an index on
 * (ingest_xid, time) checks the time in the index, so rows of the newly final hours, the bulk of
 * every hourly run, are never fetched twice).
 */
export function touchedScanRanges(
  horizon: Date | null,
  finalBefore: Date,
  exclude: readonly HourRange[],
): HourRange[] {
  let ranges: HourRange[] = [{ from: horizon ?? new Date("0001-01-01T00:00:00Z"), to: finalBefore }];
  for (const x of exclude) {
    const next: HourRange[] = [];
    for (const r of ranges) {
      if (x.to <= r.from || x.from >= r.to) {
        next.push(r);
        continue;
      }
      if (r.from < x.from) next.push({ from: r.from, to: x.from });
      if (x.to < r.to) next.push({ from: x.to, to: r.to });
    }
    ranges = next;
  }
  return ranges.filter((r) => r.from < r.to).sort((a, b) => a.from.getTime() - b.from.getTime());
}

/** The next batch of a rebuild: whole hours, at most `batchHours`. */
export function nextBackfillBatch(next: Date, to: Date, batchHours: number): HourRange | null {
  if (!(next < to)) return null;
  const end = new Date(Math.min(next.getTime() + batchHours * HOUR_MS, to.getTime()));
  return { from: next, to: end };
}

export interface ShardSpec {
  count: number;
  index: number;
}

/**
 * The shard this task owns, from Cloud Run's CLOUD_RUN_TASK_COUNT / CLOUD_RUN_TASK_INDEX.
 * Returns a message instead when they are malformed (a config error).
 */
export function shardFromEnv(env: NodeJS.ProcessEnv): ShardSpec | string {
  const countText = env.CLOUD_RUN_TASK_COUNT ?? "1";
  const indexText = env.CLOUD_RUN_TASK_INDEX ?? "0";
  const count = Number(countText);
  const index = Number(indexText);
  if (!/^\d+$/.test(countText) || !Number.isSafeInteger(count) || count < 1 || count > 10_000)
    return `CLOUD_RUN_TASK_COUNT must be a whole number from 1 to 10000, got "${countText}"`;
  if (!/^\d+$/.test(indexText) || index >= count)
    return `CLOUD_RUN_TASK_INDEX must be a whole number below CLOUD_RUN_TASK_COUNT (${count}), got "${indexText}"`;
  return { count, index };
}
