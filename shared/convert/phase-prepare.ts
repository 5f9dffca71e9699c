// Phase prepare: record the conversion (first run), then build what the swap needs without
// blocking writes. Resumable: the plan skips whatever an earlier run already built.

import { EXIT } from "../config/errors.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import type { Assessment } from "./assess.ts";
import { type ConversionDesign, type ConvertInput, design } from "./design.ts";
import { afterPrepareStep, executeSteps } from "./execute.ts";
import type { TableFacts } from "./facts.ts";
import { readTableFacts } from "./facts-table.ts";
import {
  acceptedInput,
  type ConversionRecord,
  type PhaseContext,
  type PhaseOutcome,
  prepareState,
} from "./phase-context.ts";
import { assessWithClashes, phaseBoundary, refuseAsPreflight } from "./phase-preflight.ts";
import type { Step } from "./step.ts";
import { type PrepareState, prepareSteps } from "./step-prepare.ts";
import { recordStep } from "./step-record.ts";

export interface PreparePlan {
  design: ConversionDesign;
  /** Warnings to log before anything runs (a new conversion only). */
  warnings: string[];
  /** Records the conversion: a new conversion only. */
  record: Step | null;
  steps: Step[];
}

/**
 * What prepare does, from the facts and the verdict: continue the recorded conversion with its
 * stored design, or design and record a new one. Pure.
 */
export function planPrepare(args: {
  active: ConversionRecord | null;
  storedDesign: ConversionDesign | null;
  facts: TableFacts;
  prepared: PrepareState;
  input: ConvertInput;
  boundary: Date;
  verdict: Assessment;
}): PreparePlan {
  const { active, storedDesign } = args;
  const resumed = active && storedDesign ? storedDesign : null;
  const d = resumed ?? design(args.facts, { ...args.input, boundary: args.boundary });
  return {
    design: d,
    warnings: active ? [] : args.verdict.warnings,
    record: active ? null : recordStep(d),
    steps: prepareSteps(d, args.prepared),
  };
}

export async function preparePhase(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { active, log } = ctx;
  if (active?.phase === "swapped" || active?.phase === "finalized") {
    log.notice(`already ${active.phase}: nothing to prepare`);
    return { exitCode: EXIT.ok, already: true };
  }
  const storedDesign = ctx.storedDesign();
  const boundary = phaseBoundary(ctx);
  const facts = await readTableFacts(ctx.db, ctx.table, ctx.options.policy.timeColumn, boundary);
  // A resumed prepare keeps what the operator accepted when it started.
  const accepted = active && storedDesign ? acceptedInput(ctx.input, storedDesign) : ctx.input;
  const verdict = await assessWithClashes(ctx.db, facts, accepted, ctx.state, () => storedDesign);
  if (verdict.blockers.length > 0) return await refuseAsPreflight(ctx, facts, verdict, boundary);
  const plan = planPrepare({
    active,
    storedDesign,
    facts,
    prepared: prepareState(facts, ctx.state),
    input: ctx.input,
    boundary,
    verdict,
  });
  for (const w of plan.warnings) log.warn(w);
  const afterStep = afterPrepareStep(ctx);
  await executeSteps(ctx, {
    steps: plan.record ? [plan.record, ...plan.steps] : plan.steps,
    afterStep: (step) =>
      step === plan.record ? pauseAtFaultPoint("convert-after-record", log) : afterStep(step),
  });
  const d = plan.design;
  if (!ctx.options.dryRun)
    log.notice(
      `prepared: the swap will attach ${d.table} as ${d.names.history} FROM (MINVALUE) TO (${d.boundary})`,
      { boundary: d.boundary, partitions: d.partitions.map((p) => p.name) },
    );
  return { exitCode: EXIT.ok, already: plan.steps.length === 1 };
}
