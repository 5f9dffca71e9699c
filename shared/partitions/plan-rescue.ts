// The planner's bound on a DEFAULT rescue. Pure.
//
// A rescue moves a range's rows out of DEFAULT into its new partition in the attach transaction,
// which holds ACCESS EXCLUSIVE on the parent so that no statement can miss a moved row: every reader
// and writer of the table waits for the whole move, and the move grows with the rows (after an
// outage of this job, a month of ingestion). Above the policy's maxRescueRows the run does not
// stall ingestion for that long: it leaves the range in DEFAULT (its rows stay visible and inserts
// keep landing there), makes every other partition it planned, reports CRIT, and the table's run
// ends refused (exit 2) until an operator runs the rescue deliberately, as the finding says.
import type { TablePolicy } from "../config/policy.ts";
import type { PartitionAction, PartitionFinding } from "./plan.ts";

/** maxRescueRows when the policy leaves it out: a move of about 0.7 s on the benchmark machine. */
export const DEFAULT_MAX_RESCUE_ROWS = 50_000;

export const RESCUE_RUNBOOK = "docs/runbooks/partition-manager.md (section 'A refused DEFAULT rescue')";

/**
 * `actions` without the creates that would move more than the policy's maxRescueRows rows, and one
 * CRIT finding for all of them: after a long outage every month of it is over the bound, and a
 * finding per month would say the same thing a dozen times (in the log and in the health reasons).
 */
export function refuseLargeRescues(
  policy: TablePolicy,
  actions: readonly PartitionAction[],
  findings: PartitionFinding[],
): PartitionAction[] {
  const bound = policy.maxRescueRows ?? DEFAULT_MAX_RESCUE_ROWS;
  const tooLarge = (a: PartitionAction): a is CreateAction =>
    a.kind === "create_partition" && a.defaultRows > bound;
  const refused = actions.filter(tooLarge);
  if (refused.length > 0) findings.push(refusalFinding(policy, bound, refused));
  return actions.filter((a) => !tooLarge(a));
}

type CreateAction = Extract<PartitionAction, { kind: "create_partition" }>;

function refusalFinding(
  policy: TablePolicy,
  bound: number,
  refused: readonly CreateAction[],
): PartitionFinding {
  const largest = refused.reduce((a, b) => (b.defaultRows > a.defaultRows ? b : a));
  const earliest = refused.reduce((a, b) => (b.from < a.from ? b : a));
  const latest = refused.reduce((a, b) => (b.to > a.to ? b : a));
  const what =
    refused.length === 1
      ? `not creating ${largest.partition} [${largest.from.toISOString()}, ${largest.to.toISOString()}): ${largest.defaultRows} of its rows are in the DEFAULT partition`
      : `not creating ${refused.length} partitions [${earliest.from.toISOString()}, ${latest.to.toISOString()}): their rows are in the DEFAULT partition, up to ${largest.defaultRows} for one (${largest.partition})`;
  return {
    severity: "crit",
    code: "rescue_refused",
    partition: largest.partition,
    message:
      `${what}, more than maxRescueRows (${bound}); moving them would make every reader and writer of ${policy.table} wait for the whole move. ` +
      `The rows stay in DEFAULT, visible. To move them deliberately, at a quiet time (rows keep arriving: leave room), run once: ` +
      `telemetry-jobs partition-manager --table ${policy.table} --max-rescue-rows ${suggestedBound(largest.defaultRows)}. See ${RESCUE_RUNBOOK}.`,
  };
}

/** A bound for the deliberate run: the rows seen, plus a tenth for the rows that keep arriving. */
export function suggestedBound(rows: number): number {
  return Math.ceil(rows * 1.1);
}
