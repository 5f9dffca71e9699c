// The retention planner's findings about what it keeps past the cutoff: hours the rollup has not
// made final yet, and partitions whose move into the archive schema would clash. Pure.
import { displayRelation, type Relation } from "../db/relation.ts";
import { describeRollupFrontier } from "../rollups/frontier.ts";
import type { RetentionFacts, RetentionFinding, RetentionMode, RetentionRollupFacts } from "./plan.ts";

const ROLLUP_ADVICE = "Check rollup-hourly: its last executions and their errors (docs/runbooks/rollups.md)";

/**
 * A figure of a row-delete target's rows as a message says it, "about 12000" where it is the
 * planner's estimate: all its expired rows (estimated where either part is), or those not final.
 */
export function rowsFigure(
  facts: RetentionFacts,
  relation: string,
  rows: number,
  which: "expired" | "notFinal",
): string {
  const estimates = facts.rowEstimates?.get(relation);
  const estimated = which === "notFinal" ? estimates?.notFinal : estimates?.deletable || estimates?.notFinal;
  return estimated ? `about ${rows}` : `${rows}`;
}

/** An expired partition whose upper bound is after the rollup frontier: its hours are not final. */
export function partitionNotFinal(
  rollup: RetentionRollupFacts | undefined,
  partition: string,
  from: Date | null,
  to: Date,
): RetentionFinding | undefined {
  if (!rollup) return undefined;
  const frontier = rollup.frontier.frontier;
  if (frontier !== null && to.getTime() <= frontier.getTime()) return undefined;
  return {
    severity: "warn",
    code: "rollup_not_final",
    partition,
    message: `kept ${partition} [${from?.toISOString() ?? "MINVALUE"}, ${to.toISOString()}) past its cutoff: its hours are not rolled up for good yet (${describeRollupFrontier(rollup.frontier)}). ${ROLLUP_ADVICE}; the first retention run after it has caught up removes the partition.`,
  };
}

/** Expired rows of a row-delete target kept because they are at or after the rollup frontier. */
export function rowsNotFinal(
  facts: RetentionFacts,
  relation: string,
  cutoff: Date,
  limit: Date | null,
): { finding?: RetentionFinding; kept: number } {
  const { rollup } = facts;
  const kept = rollup?.notFinalRows.get(relation) ?? 0;
  if (!rollup || kept === 0) return { kept: 0 };
  return {
    kept,
    finding: {
      severity: "warn",
      code: "rollup_not_final",
      partition: relation,
      message: `kept ${rowsFigure(facts, relation, kept, "notFinal")} rows of ${relation} older than the cutoff ${cutoff.toISOString()}: their hours are not rolled up for good yet (${describeRollupFrontier(rollup.frontier)}), so this run deletes ${limit ? `only rows before ${limit.toISOString()}` : "none"}. ${ROLLUP_ADVICE}; the first retention run after it has caught up deletes them.`,
    },
  };
}

/**
 * Archive mode moves a partition, with its indexes, into the archive schema under their own names.
 * When one is taken (another managed table of the same name in another schema archived its child
 * first), the move would fail after the detach and strand the partition: find it before anything
 * is done, and leave that partition as it is.
 */
export function archiveClash(
  retention: { archiveSchema: string },
  mode: RetentionMode,
  partition: Relation,
  facts: RetentionFacts,
): RetentionFinding | undefined {
  const shown = displayRelation(partition);
  const clashes = mode === "archive" ? facts.archiveClashes.get(shown) : undefined;
  if (!clashes || clashes.length === 0) return undefined;
  const taken = clashes.map((name) => displayRelation({ schema: retention.archiveSchema, name })).join(", ");
  return {
    severity: "warn",
    code: "archive_name_taken",
    partition: shown,
    message: `${shown} is expired, but the archive already has ${taken}, which moving it there needs (archived from another table of the same name?). ${shown} is left as it is; rename what is in the way, or give this table an archiveSchema of its own.`,
  };
}
