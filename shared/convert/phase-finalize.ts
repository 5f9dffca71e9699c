// Phase finalize: drop what only revert needed; after it the table is an ordinary managed
// partitioned table and revert is no longer possible.

import { EXIT } from "../config/errors.ts";
import type { ConversionDesign } from "./design.ts";
import { afterPrepareStep, executeSteps } from "./execute.ts";
import { existingRelations } from "./facts-state.ts";
import { type ConversionRecord, type PhaseContext, type PhaseOutcome, Refusal } from "./phase-context.ts";
import { finalizeSteps } from "./step-finalize.ts";

/** The objects finalize may drop: the unique constraints kept on history, the old key index. */
function finalizeCandidates(d: ConversionDesign): string[] {
  return [...d.keptOnHistory.map((k) => k.name), d.names.oldKeyIndex];
}

type FinalizeGate =
  | { kind: "already" }
  | { kind: "refused"; reason: string }
  | { kind: "run"; design: ConversionDesign };

/** Whether finalize runs, from the recorded conversion. Pure. */
function finalizeGate(
  record: ConversionRecord | null,
  stored: () => ConversionDesign | null,
  shown: string,
): FinalizeGate {
  if (record?.phase === "finalized") return { kind: "already" };
  const d = record?.phase === "swapped" ? stored() : null;
  if (!d)
    return {
      kind: "refused",
      reason: `${shown} is not swapped (${record?.phase ?? "no conversion recorded"}): nothing to finalize`,
    };
  return { kind: "run", design: d };
}

export async function finalizePhase(ctx: PhaseContext): Promise<PhaseOutcome> {
  const gate = finalizeGate(ctx.record, ctx.storedDesign, ctx.shown);
  if (gate.kind === "already") {
    ctx.log.notice("already finalized");
    return { exitCode: EXIT.ok, already: true };
  }
  if (gate.kind === "refused") throw new Refusal(gate.reason);
  const present = new Set(await existingRelations(ctx.db, ctx.table.schema, finalizeCandidates(gate.design)));
  await executeSteps(ctx, { steps: finalizeSteps(gate.design, present), afterStep: afterPrepareStep(ctx) });
  if (!ctx.options.dryRun)
    ctx.log.notice(`finalized: ${ctx.shown} is an ordinary managed partitioned table now`);
  return { exitCode: EXIT.ok };
}
