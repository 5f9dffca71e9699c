// The retention executor: applies one action. Whole partitions are removed by remove.ts (manage.ts
// hands a run's removals to removeTogether first, and comes here only when that is not possible);
// rows by delete-rows.ts.
import type { RetentionContext, RetentionOutcome } from "./context.ts";
import { deleteRowsInBatches } from "./delete-rows.ts";
import type { RetentionAction } from "./plan.ts";
import { finalizeDetach, finishTogether, removeOne } from "./remove.ts";

export type { RetentionContext, RetentionOutcome } from "./context.ts";

export async function applyRetentionAction(
  ctx: RetentionContext,
  action: RetentionAction,
  resume: { startBlock: number } = { startBlock: 0 },
): Promise<RetentionOutcome> {
  switch (action.kind) {
    case "remove_partition":
      return await removeOne(ctx, action);
    case "finalize_detach": {
      await finalizeDetach(ctx, action.partition);
      return {
        rows: 0,
        bytes: 0,
        path: "detach finalize (the marked leftover is finished by the next step or run)",
      };
    }
    case "finish_removal": {
      const [path] = await finishTogether(ctx, [{ relation: action.partition }], action.mode);
      return { rows: 0, bytes: 0, path: path! };
    }
    case "delete_rows":
      return await deleteRowsInBatches(ctx, action, resume.startBlock);
  }
}
