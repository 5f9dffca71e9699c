// The retention rule, in one place. A table with a retention block keeps `keep` of data: the
// cutoff is now - keep in UTC, a partition expires once its upper bound is at or before the
// cutoff, and a rolled-up table's raw rows are trusted only from the first whole hour at or after
// the cutoff (the raw-data horizon). partition-manager (never make an expired partition),
// retention (what to remove) and rollup-hourly (what may be rebuilt from raw rows) all ask here.
import { type Duration, subtractDuration } from "../config/duration.ts";
import type { RetentionPolicy } from "../config/policy.ts";
import { type BoundRange, boundRange, type PartitionBound } from "../partitions/bounds.ts";

const HOUR_MS = 3_600_000;

interface PolicyWithRetention<R> {
  readonly table: string;
  readonly retention?: R | undefined;
}

/** The policy's retention block; throws for a policy without one (retention selects only those). */
export function retentionOf<R = RetentionPolicy>(policy: PolicyWithRetention<R>): R {
  if (!policy.retention) throw new Error(`${policy.table} has no valid retention.keep`);
  return policy.retention;
}

/** The retention window of a policy; throws for a policy without a retention block. */
export function keepOf(policy: PolicyWithRetention<{ readonly keepDuration: Duration }>): Duration {
  return retentionOf(policy).keepDuration;
}

/** now - keep, in UTC (month ends clamp: Mar 31 - 1 month = Feb 28/29). */
export function cutoffAt(keep: Duration, now: Date): Date {
  return subtractDuration(now, keep);
}

/** The policy's cutoff at `now`; throws for a policy without a retention block. */
export function retentionCutoff(policy: Parameters<typeof keepOf>[0], now: Date): Date {
  return cutoffAt(keepOf(policy), now);
}

/** The policy's cutoff at `now`, or undefined when nothing of the table ever expires. */
export function cutoffOrNone(policy: Parameters<typeof keepOf>[0], now: Date): Date | undefined {
  return policy.retention ? cutoffAt(policy.retention.keepDuration, now) : undefined;
}

/**
 * A partition's range as retention judges it, in epoch ms (undefined: not a range partition). A
 * bound with sub-millisecond digits, which a Date truncates, is read as ending at the next
 * millisecond: TO ('2026-02-01 00:00:00.0005') holds the instant 2026-02-01 00:00:00, and read as
 * ending there it would count as expired at that very cutoff, its rows at the cutoff with it. So
 * a partition is never judged expired while it may hold an instant the cutoff keeps; the checks
 * made under a removal's lock read the bound the same way, and so agree with the plan.
 */
export function expiryRange(bound: PartitionBound): BoundRange | undefined {
  const range = boundRange(bound);
  if (!range || bound.kind !== "range" || !Number.isFinite(range.to)) return range;
  if (bound.inexact !== "to" && bound.inexact !== "both") return range;
  return { from: range.from, to: range.to + 1 };
}

/** A range ending at `upper` (exclusive) is expired: every instant it holds is before the cutoff. */
export function isExpired(upper: Date, cutoff: Date): boolean {
  return upper.getTime() <= cutoff.getTime();
}

/**
 * A range [from, to) in epoch ms (MINVALUE and MAXVALUE as infinities) holds rows on both sides of
 * the cutoff: only its rows before the cutoff expire, row by row.
 */
export function straddlesCutoff(range: { from: number; to: number }, cutoff: Date): boolean {
  return range.from < cutoff.getTime() && range.to > cutoff.getTime();
}

/**
 * The first whole hour whose raw rows retention has certainly kept: ceil to the hour of now - keep.
 * Hours before it may have lost raw rows, so a rollup must not be recomputed from them.
 */
export function rawDataHorizon(keep: Duration, now: Date): Date {
  const cutoff = cutoffAt(keep, now).getTime();
  return new Date(Math.ceil(cutoff / HOUR_MS) * HOUR_MS);
}
