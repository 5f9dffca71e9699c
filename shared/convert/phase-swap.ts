// Phase swap: check once more that the table is as prepare left it, then run the one short swap
// transaction. A dry run before (or in the middle of) prepare shows the swap prepare is heading for.

import { EXIT } from "../config/errors.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type Assessment, assess } from "./assess.ts";
import { type ConversionDesign, type ConvertInput, design } from "./design.ts";
import { executeStep } from "./execute.ts";
import type { ConversionState, TableFacts } from "./facts.ts";
import { readTableFacts } from "./facts-table.ts";
import {
  acceptedInput,
  type PhaseContext,
  type PhaseOutcome,
  prepareState,
  Refusal,
} from "./phase-context.ts";
import { refuseAsPreflight } from "./phase-preflight.ts";
import type { Step } from "./step.ts";
import { type PrepareState, prepareSteps } from "./step-prepare.ts";
import { swapStep } from "./step-swap.ts";

/** Warn when the boundary is closer than this: inserts past it fail on the CHECK until the swap. */
const BOUNDARY_WARNING_MS = 3_600_000;

/** What changed on the table since prepare designed the partitioned table from it. */
export function designDrift(facts: TableFacts, d: ConversionDesign): string[] {
  const out: string[] = [];
  const now = facts.columns.filter((c) => !c.generated).map((c) => c.name);
  const added = now.filter((c) => !d.columns.includes(c));
  const removed = d.columns.filter((c) => !now.includes(c));
  if (added.length > 0) out.push(`columns added: ${added.join(", ")}`);
  if (removed.length > 0) out.push(`columns dropped: ${removed.join(", ")}`);
  const ours = new Set([d.names.newKeyIndex, d.names.oldKeyIndex]);
  const expected = new Set(d.parentIndexes.filter((i) => !i.replacesKey).map((i) => i.original));
  const kept = new Set(d.keptOnHistory.map((k) => k.name));
  const present = facts.indexes.map((i) => i.name).filter((n) => !ours.has(n));
  const newIndexes = present.filter((n) => !expected.has(n) && !kept.has(n) && n !== d.primaryKey?.name);
  const goneIndexes = [...expected].filter((n) => !present.includes(n));
  if (newIndexes.length > 0) out.push(`indexes created: ${newIndexes.join(", ")}`);
  if (goneIndexes.length > 0) out.push(`indexes dropped: ${goneIndexes.join(", ")}`);
  return out;
}

export type SwapPlan =
  | { kind: "blocked"; verdict: Assessment }
  | { kind: "refused"; reason: string; warnings: string[] }
  | { kind: "swap"; warnings: string[]; step: Step };

/**
 * The swap of a prepared conversion, from the facts read just now: refused when the table took a
 * view or foreign key since prepare (it would silently follow the table to the historical
 * partition), when it changed shape, or when prepare is not complete. Pure.
 */
export function planSwap(args: {
  shown: string;
  facts: TableFacts;
  stored: ConversionDesign;
  state: ConversionState;
  input: ConvertInput;
  prepared: PrepareState;
  boundary: Date;
  nowMs: number;
}): SwapPlan {
  const { facts, stored, boundary } = args;
  const verdict = assess(facts, acceptedInput(args.input, stored), args.state);
  if (verdict.blockers.length > 0) return { kind: "blocked", verdict };
  const drift = designDrift(facts, stored);
  if (drift.length > 0)
    return {
      kind: "refused",
      warnings: [],
      reason:
        `${args.shown} changed since prepare (${drift.join("; ")}); the prepared partitioned table no longer matches it. ` +
        "Run `migrate convert revert` (it removes what prepare built), then prepare again",
    };
  const warnings: string[] = [];
  const left = boundary.getTime() - args.nowMs;
  if (left < BOUNDARY_WARNING_MS)
    warnings.push(
      left <= 0
        ? `the boundary ${boundary.toISOString()} has passed: inserts dated after it fail on the CHECK until this swap commits`
        : `the boundary ${boundary.toISOString()} is ${Math.round(left / 60_000)} min away: inserts dated after it will fail on the CHECK until the swap`,
    );
  const missing = prepareSteps(stored, args.prepared).filter((s) => s.id !== "prepared");
  if (missing.length > 0)
    return {
      kind: "refused",
      warnings,
      reason: `prepare is not complete (${missing.map((s) => s.id).join(", ")}): run \`migrate convert prepare\` again`,
    };
  // The facts were read just now: rollup-hourly may have installed its triggers since prepare.
  return { kind: "swap", warnings, step: swapStep(stored, facts.changeTriggers) };
}

export async function swapPhase(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { active, log, options, shown } = ctx;
  if (active?.phase === "swapped" || active?.phase === "finalized") {
    log.notice(`already ${active.phase}`);
    return { exitCode: EXIT.ok, already: true };
  }
  const storedDesign = active?.phase === "prepared" ? ctx.storedDesign() : null;
  if (active?.phase !== "prepared" || !storedDesign) {
    if (options.dryRun && (options.phase === "all" || active?.phase === "preparing"))
      return await previewSwap(ctx);
    throw new Refusal(
      `${shown} is not prepared (${active?.phase ?? "no conversion recorded"}): run \`migrate convert prepare\` first`,
    );
  }
  const facts = await readTableFacts(ctx.db, ctx.table, options.policy.timeColumn, active.boundary);
  const plan = planSwap({
    shown,
    facts,
    stored: storedDesign,
    state: ctx.state,
    input: ctx.input,
    prepared: prepareState(facts, ctx.state),
    boundary: active.boundary,
    nowMs: Date.now(),
  });
  if (plan.kind === "blocked") return await refuseAsPreflight(ctx, facts, plan.verdict, active.boundary);
  for (const w of plan.warnings) log.warn(w);
  if (plan.kind === "refused") throw new Refusal(plan.reason);
  await pauseAtFaultPoint("convert-before-swap", log);
  const outcome = await executeStep(ctx, plan.step);
  if (options.dryRun) return { exitCode: EXIT.ok, report: outcome };
  if (!options.policy.partitioned)
    log.warn(
      `the policy still says "partitioned": false for ${shown}: remove it now, or retention refuses the table and partition-manager ignores it`,
    );
  log.notice(
    `swapped in ${outcome.durationMs} ms (${outcome.attempts} attempt${outcome.attempts === 1 ? "" : "s"}): ${shown} is partitioned`,
    { event: "convert_swap", durationMs: outcome.durationMs, attempts: outcome.attempts },
  );
  return { exitCode: EXIT.ok, report: outcome };
}

/** --dry-run before the conversion is prepared: the swap as the design stands now. */
async function previewSwap(ctx: PhaseContext): Promise<PhaseOutcome> {
  const facts = await readTableFacts(ctx.db, ctx.table, ctx.options.policy.timeColumn, null);
  const d = ctx.storedDesign() ?? design(facts, ctx.input);
  await executeStep(ctx, swapStep(d, facts.changeTriggers));
  return { exitCode: EXIT.ok };
}
