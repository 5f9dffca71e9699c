// The retention executor: applies one action. Whole partitions are removed by remove.ts (manage.ts
// hands a run's removals to removeTogether, in remove-together.ts, first, and comes here only when
// that is not possible); rows by delete-rows.ts.
import type { AuditOutcomes, RetentionContext, RetentionOutcome } from "./context.ts";
import { deleteRowsInBatches } from "./delete-rows.ts";
import type { RetentionAction } from "./plan.ts";
import { finalizeDetach, finishTogether, removeOne } from "./remove.ts";

export type { RetentionContext, RetentionOutcome } from "./context.ts";

export async function applyRetentionAction(
  ctx: RetentionContext,
  action: RetentionAction,
  known: {
    /** Where a row delete resumes. */
    startBlock: number;
    /** The end of a leftover's range, from its mark: its label keeps it. */
    leftoverTo?: Date | undefined;
  } = { startBlock: 0 },
  audit?: AuditOutcomes,
): Promise<RetentionOutcome> {
  switch (action.kind) {
    case "remove_partition":
      return await removeOne(ctx, action, audit);
    case "finalize_detach": {
      await finalizeDetach(ctx, action.partition);
      return {
        rows: 0,
        bytes: 0,
        path: "detach finalize (the marked leftover is finished by the next step or run)",
      };
    }
    case "finish_removal": {
      const finished = (path: string | undefined): RetentionOutcome => ({ rows: 0, bytes: 0, path: path! });
      const [path] = await finishTogether(
        ctx,
        [{ relation: action.partition, to: known.leftoverTo }],
        action.mode,
        audit && ((trx, done) => audit(trx, [finished(done[0])])),
      );
      return { ...finished(path), audited: audit !== undefined };
    }
    case "delete_rows":
      return await deleteRowsInBatches(ctx, action, known.startBlock);
  }
}
