// The comment retention puts on a partition it is about to detach ("telemetry-jobs retention:
// removing from <table>, mode <mode>, range [from, to), ~N rows"), so that a killed run's leftover
// is found, checked and finished; written and read here only.
import type { RetentionMode } from "./plan.ts";

/** What a removal mark can say of the partition besides its parent and mode. */
export interface RemovedRange {
  /** The range it held (from null: MINVALUE), which a detached table's catalog no longer shows. */
  readonly from: Date | null;
  readonly to: Date;
  /** The planner's estimate of its rows. */
  readonly rowsEstimate?: number;
}

/**
 * Comment put on a partition before it is detached, so that a killed run's leftover is finished;
 * with the partition's range (and rows), so that what finishes it can audit and label them.
 */
export function removalMarker(parent: string, mode: RetentionMode, removed?: RemovedRange): string {
  const range = removed
    ? `, range [${removed.from?.toISOString() ?? "MINVALUE"}, ${removed.to.toISOString()})${removed.rowsEstimate === undefined ? "" : `, ~${removed.rowsEstimate} rows`}`
    : "";
  return `telemetry-jobs retention: removing from ${parent}, mode ${mode}${range}`;
}
// Marks written before the range was added to them have none: their range stays unknown. The
// parent's name is as the policy spells it, spaces and commas included: the longest that leaves a
// well-formed rest.
const MARKER_PATTERN =
  /^telemetry-jobs retention: removing from (.+), mode (drop|detach|archive)(?:, range \[(\S+), (\S+)\)(?:, ~(\d+) rows)?)?$/;

/** What a removal mark (removalMarker's text) says; undefined when `comment` is not one. */
export function parseRemovalMark(
  comment: string,
): { parent: string; mode: RetentionMode; range?: RemovedRange } | undefined {
  const m = MARKER_PATTERN.exec(comment);
  if (!m) return undefined;
  const [from, to, rows] = [m[3], m[4], m[5]];
  const range =
    from && to
      ? {
          from: from === "MINVALUE" ? null : new Date(from),
          to: new Date(to),
          ...(rows !== undefined ? { rowsEstimate: Number(rows) } : {}),
        }
      : undefined;
  return { parent: m[1]!, mode: m[2] as RetentionMode, ...(range ? { range } : {}) };
}
