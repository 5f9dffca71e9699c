// The comments retention puts on what it takes out of a table, written and read here only: on a
// partition it is about to detach ("telemetry-jobs retention: removing from <table>, mode <mode>,
// range [from, to), ~N rows"), so that a killed run's leftover is found, checked and finished; and
// on a table it has detached and keeps, or moved to the archive schema ("detached from <table> at
// <instant>", "archived from <table> at <instant>"), so that an operator (and `hold`) knows whence
// it came. <table> is the policy's spelling.
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
    ? `, range ${rangeText(removed)}${removed.rowsEstimate === undefined ? "" : `, ~${removed.rowsEstimate} rows`}`
    : "";
  return `telemetry-jobs retention: removing from ${parent}, mode ${mode}${range}`;
}
/** A mark's range as the mark writes it: "[from, to)", from MINVALUE when it has none. */
export function rangeText(range: RemovedRange): string {
  return `[${range.from?.toISOString() ?? "MINVALUE"}, ${range.to.toISOString()})`;
}

// Marks written before the range was added to them have none: their range stays unknown. The
// parent's name is as the policy spells it (a lower-case identifier, schema-qualified or not);
// read as the longest that leaves a well-formed rest, it would be read whole whatever it held.
const MARKER_PATTERN =
  /^telemetry-jobs retention: removing from (.+), mode (drop|detach|archive)(?:, range \[(\S+), (\S+)\)(?:, ~(\d+) rows)?)?$/;

/** What a removal mark (removalMarker's text) says; undefined when `comment` is not one. */
export function parseRemovalMark(
  comment: string,
): { parent: string; mode: RetentionMode; range?: RemovedRange } | undefined {
  const m = MARKER_PATTERN.exec(comment);
  if (!m) return undefined;
  const [fromText, toText, rows] = [m[3], m[4], m[5]];
  const from = fromText === "MINVALUE" ? null : instant(fromText);
  const to = instant(toText);
  // A range that is not two instants (a comment edited by hand) is no range: unknown, as in a mark
  // written before ranges were added, never an Invalid Date that fails whoever formats it.
  const range =
    from !== undefined && to !== undefined
      ? { from, to, ...(rows !== undefined ? { rowsEstimate: Number(rows) } : {}) }
      : undefined;
  return { parent: m[1]!, mode: m[2] as RetentionMode, ...(range ? { range } : {}) };
}

/** The instant an ISO text names; undefined when it names none. */
function instant(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? undefined : at;
}

/** The comment on a table retention detached and keeps (mode detach), at `stamp`. */
export function detachedMarker(parent: string, stamp: string, rowsBefore?: Date): string {
  return `telemetry-jobs retention: detached from ${parent} at ${stamp}${rowsBefore ? ` (rows before ${rowsBefore.toISOString()})` : ""}`;
}

/** The comment on a table retention moved to the archive schema (mode archive), at `stamp`. */
export function archivedMarker(parent: string, stamp: string): string {
  return `telemetry-jobs retention: archived from ${parent} at ${stamp}`;
}

// The stamp is an ISO instant, without spaces: the parent is all before the last " at ".
const TAKEN_OUT_PATTERN =
  /^telemetry-jobs retention: (?:detached|archived) from (.+) at \S+(?: \(rows before \S+\))?$/;

/** The table a retention comment (any of the three above) says its table was taken out of. */
export function markedParent(comment: string): string | undefined {
  return parseRemovalMark(comment)?.parent ?? TAKEN_OUT_PATTERN.exec(comment)?.[1];
}
