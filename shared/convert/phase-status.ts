// Phase status: where the conversion stands. Read-only.

import { EXIT } from "../config/errors.ts";
import type { PhaseContext, PhaseOutcome } from "./phase-context.ts";

export async function statusPhase(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { record, state, shown } = ctx;
  ctx.log.notice(
    record
      ? `conversion of ${shown}: ${record.phase}, boundary ${record.boundary.toISOString()}`
      : `no conversion of ${shown} recorded`,
    {
      event: "convert_status",
      phase: record?.phase ?? null,
      boundary: record?.boundary ?? null,
      state: { ...state, record: undefined },
    },
  );
  return { exitCode: EXIT.ok, report: record };
}
