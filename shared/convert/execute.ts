// How a phase of `migrate convert` runs its steps: through the plan executor every job uses
// (shared/run/execute-plan.ts), which stops at a refusal or at --dry-run, checks for SIGTERM
// between steps and stops at the first failure. Convert writes its own records: with --dry-run,
// each step and every statement it would run; otherwise each step's title as it starts (apply.ts)
// and "done: <step> (<ms> ms)" when it ends. A failed step is not logged here: its error goes up
// to the command, which reports it once; a refusal is reported in full by the phase's report().
import type { ActionSteps, PlanEvent } from "../run/execute-plan.ts";
import { executePlan } from "../run/execute-plan.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { logDryRun, runStep, type StepOutcome } from "./apply.ts";
import type { PhaseContext } from "./phase-context.ts";
import type { Step } from "./step.ts";

export interface StepsPlan {
  readonly steps: readonly Step[];
  /** Set when the phase must not run: why, and how to report it (the full preflight report). */
  readonly refusal?: { readonly reason: string; report(): void };
  /** Where a test may stop the process after a step (shared/run/fault-points.ts). */
  readonly afterStep?: (step: Step) => Promise<void>;
}

/** refused: nothing ran (no outcomes). Otherwise each step's outcome, in order (zero in a dry run). */
export interface StepsResult {
  readonly refused: boolean;
  readonly outcomes: StepOutcome[];
}

/**
 * Runs the steps in order. Throws what a failed step threw, and, when SIGTERM came between two
 * steps, an error naming the next one (the same command again continues from there).
 */
export async function executeSteps(ctx: PhaseContext, plan: StepsPlan): Promise<StepsResult> {
  const outcomes = new Map<Step, StepOutcome>();
  const stopped: Stopped = {};
  const steps: ActionSteps<Step> = {
    describe: (step) => step.title,
    planFields: (step) => ({ step: step.id }),
    target: () => ({}),
    apply: async (step) => {
      const outcome = await runStep(ctx.exec, step);
      outcomes.set(step, outcome);
      return { outcome: "ok", detail: {}, logFields: {} };
    },
    doneSeverity: "info",
    report: (event) => reportStep(ctx, plan, event, { outcomes, stopped }),
    ...(plan.afterStep ? { afterAction: plan.afterStep } : {}),
  };
  const done = await executePlan(
    // Convert writes no job_actions rows: its record is its telemetry_jobs.conversions row, which
    // the steps themselves move from phase to phase, in the transaction that does the work.
    { log: ctx.log, signal: ctx.signal, record: async () => {} },
    { actions: plan.steps, findings: [], ...(plan.refusal ? { refusal: plan.refusal.reason } : {}) },
    steps,
    { dryRun: ctx.options.dryRun },
  );
  switch (done.status) {
    case "refused":
      return { refused: true, outcomes: [] };
    case "failed":
      throw stopped.error;
    case "interrupted":
      throw new Error(
        `stopped before step ${stopped.next?.id} (signal); run the same command again to continue`,
      );
    case "planned":
    case "ok":
      return { refused: false, outcomes: plan.steps.map((s) => outcomes.get(s) ?? NOT_RUN) };
  }
}

/** Runs one step on its own (no fault point after it); its outcome. */
export async function executeStep(ctx: PhaseContext, step: Step): Promise<StepOutcome> {
  return (await executeSteps(ctx, { steps: [step] })).outcomes[0] ?? NOT_RUN;
}

/** A step's outcome in a dry run, which runs nothing. */
const NOT_RUN: StepOutcome = { rows: [], attempts: 0, durationMs: 0 };

/** What stopped the run, kept for executeSteps to throw. */
interface Stopped {
  error?: unknown;
  next?: Step;
}

/** Convert's records of each event of the run. */
function reportStep(
  ctx: PhaseContext,
  plan: StepsPlan,
  event: PlanEvent<Step>,
  run: { outcomes: ReadonlyMap<Step, StepOutcome>; stopped: Stopped },
): void {
  const { stopped } = run;
  switch (event.event) {
    case "plan":
      if (event.dryRun) logDryRun(ctx.log, event.action);
      return;
    case "refused":
      plan.refusal?.report();
      return;
    case "interrupted":
      stopped.next = event.next;
      return;
    case "failed":
      stopped.error = event.error;
      return;
    case "done": {
      const { durationMs, attempts, rows } = run.outcomes.get(event.action) ?? NOT_RUN;
      ctx.log.info(`done: ${event.action.id} (${durationMs} ms)`, {
        step: event.action.id,
        durationMs,
        attempts,
        rows,
      });
    }
  }
}

/** The fault point after each step of prepare, finalize and abandon, named by the step's id. */
export function afterPrepareStep(ctx: PhaseContext): (step: Step) => Promise<void> {
  return (step) => pauseAtFaultPoint("convert-after-prepare-step", ctx.log, step.id);
}
