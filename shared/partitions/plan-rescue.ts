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

/** `actions` without the creates that would move more than the policy's maxRescueRows rows. */
export function refuseLargeRescues(
  policy: TablePolicy,
  actions: readonly PartitionAction[],
  findings: PartitionFinding[],
): PartitionAction[] {
  const bound = policy.maxRescueRows ?? DEFAULT_MAX_RESCUE_ROWS;
  return actions.filter((a) => {
    if (a.kind !== "create_partition" || a.defaultRows <= bound) return true;
    findings.push({
      severity: "crit",
      code: "rescue_refused",
      partition: a.partition,
      message:
        `not creating ${a.partition} [${a.from.toISOString()}, ${a.to.toISOString()}): ${a.defaultRows} of its rows are in the DEFAULT partition, ` +
        `more than maxRescueRows (${bound}); moving them would make every reader and writer of ${policy.table} wait for the whole move. ` +
        `The rows stay in DEFAULT, visible. To move them deliberately, at a quiet time, run once with "maxRescueRows": ${a.defaultRows} (or more) in this table's policy: ` +
        `telemetry-jobs partition-manager --table ${policy.table} --config <that policy file>. See ${RESCUE_RUNBOOK}.`,
    });
    return false;
  });
}
