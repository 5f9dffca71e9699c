// Where the historical partition ends. Pure.
import type { TablePolicy } from "../config/policy.ts";
import { addIntervals, floorToInterval, isAligned } from "../partitions/time.ts";

/** The default boundary is never closer than this (hourly and daily tables). */
const MIN_BOUNDARY_MARGIN_MS = 24 * 3_600_000;

/**
 * The historical partition's upper bound: the first interval boundary at least half an interval
 * (and at least a day) after now. From prepare's CHECK step until the swap, the NOT VALID CHECK
 * rejects rows at or after it, so it must not be close: a monthly table converted on the 30th gets
 * the end of next month, an hourly one a boundary a day ahead.
 */
export function defaultBoundary(now: Date, policy: Pick<TablePolicy, "interval">): Date {
  const start = floorToInterval(now, policy.interval);
  const next = addIntervals(start, policy.interval, 1);
  const margin = Math.max((next.getTime() - start.getTime()) / 2, MIN_BOUNDARY_MARGIN_MS);
  let b = next;
  while (b.getTime() - now.getTime() < margin) b = addIntervals(b, policy.interval, 1);
  return b;
}

/** The boundary asked for (--boundary), or the default one. */
export function boundaryFor(input: {
  boundary?: Date | undefined;
  now: Date;
  policy: Pick<TablePolicy, "interval">;
}): Date {
  return input.boundary ?? defaultBoundary(input.now, input.policy);
}

/** Why an explicit --boundary cannot be used, or null. */
export function boundaryProblem(
  boundary: Date,
  now: Date,
  policy: Pick<TablePolicy, "interval">,
): string | null {
  if (!isAligned(boundary, policy.interval))
    return `--boundary ${boundary.toISOString()} is not the start of a ${policy.interval} interval (UTC); the new partitions start there`;
  if (boundary.getTime() <= now.getTime())
    return `--boundary ${boundary.toISOString()} is not in the future: rows written now would be rejected by the CHECK before the swap`;
  return null;
}
