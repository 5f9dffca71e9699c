// The partition planner's first step: what the existing children are. Each child is a range it
// can reason about (aligned to the policy's interval, or a historical FROM (MINVALUE) partition),
// or something it reports and leaves alone (a bound it cannot read, a misaligned range, a detach
// left pending). Pure.
import { displayRelation } from "../db/relation.ts";
import { type BoundRange, boundRange } from "./bounds.ts";
import type { ChildPartition, TableCatalog } from "./catalog.ts";
import type { PartitionFinding } from "./plan.ts";
import { addIntervals, floorToInterval, type PartitionInterval } from "./time.ts";

export interface RangedChild {
  readonly child: ChildPartition;
  readonly range: BoundRange;
}

export interface ChildrenSeen {
  /** Children with a range bound, whatever their alignment. */
  readonly ranged: readonly RangedChild[];
  /** Names of the historical children: FROM (MINVALUE) TO (an interval start). */
  readonly historical: ReadonlySet<string>;
}

/** Reads the children's bounds; findings about them are appended to `findings`, in catalog order. */
export function readChildren(
  table: string,
  catalog: TableCatalog,
  interval: PartitionInterval,
  findings: PartitionFinding[],
): ChildrenSeen {
  const ranged: RangedChild[] = [];
  const historical = new Set<string>();
  for (const child of catalog.children) {
    if (child.detachPending) {
      findings.push({
        severity: "warn",
        code: "detach_pending",
        partition: child.name,
        message: `${child.name} has an interrupted DETACH CONCURRENTLY; finish it with ALTER TABLE ${table} DETACH PARTITION ${displayRelation(child)} FINALIZE (retention does this)`,
      });
    }
    const range = boundRange(child.bound);
    if (!range) {
      findings.push({
        severity: "warn",
        code: "unsupported_bound",
        partition: child.name,
        message: `${child.name} has a bound this tool does not interpret (${child.boundText}); left untouched`,
      });
      continue;
    }
    ranged.push({ child, range });
    if (isHistorical(range, interval)) {
      historical.add(child.name);
      // FROM (MINVALUE) TO (an interval start): what `migrate convert` attaches. Expected, not a
      // problem; retention drops it whole once its upper bound is past the cutoff.
      findings.push({
        severity: "info",
        code: "historical_child",
        partition: child.name,
        message: `${child.name} holds everything before ${new Date(range.to).toISOString()} (a historical partition); retention drops it whole once that is past the cutoff`,
      });
    } else if (!isAligned(child, range, interval)) {
      findings.push({
        severity: "warn",
        code: "misaligned_child",
        partition: child.name,
        message: `${child.name} (${child.boundText}) is not one ${interval} interval; left untouched, and nothing is created over its range`,
      });
    }
  }
  return { ranged, historical };
}

/** Exactly one interval, with bounds a Date holds exactly. */
function isAligned(child: ChildPartition, range: BoundRange, interval: PartitionInterval): boolean {
  return (
    child.bound.kind === "range" &&
    !child.bound.inexact &&
    Number.isFinite(range.from) &&
    Number.isFinite(range.to) &&
    floorToInterval(new Date(range.from), interval).getTime() === range.from &&
    addIntervals(new Date(range.from), interval, 1).getTime() === range.to
  );
}

function isHistorical(range: BoundRange, interval: PartitionInterval): boolean {
  return (
    range.from === Number.NEGATIVE_INFINITY &&
    Number.isFinite(range.to) &&
    floorToInterval(new Date(range.to), interval).getTime() === range.to
  );
}

/** Whether an existing child already covers [start, to): the same range, or inside a historical one. */
export function coveredBy(
  overlapping: readonly RangedChild[],
  historical: ReadonlySet<string>,
  start: number,
  to: number,
): boolean {
  if (overlapping.some(({ range }) => range.from === start && range.to === to)) return true; // exists
  // Inside a historical partition (a converted table, before its boundary): covered, not a conflict.
  return overlapping.some(
    ({ child }) =>
      historical.has(child.name) &&
      child.bound.kind === "range" &&
      child.bound.to instanceof Date &&
      child.bound.to.getTime() >= to,
  );
}
