// The plan executor as rollup-hourly and adoption use it. The executor audits and logs a failed
// action and returns its message; these jobs have always let the error itself go up (the runner
// reports the table failed, with the driver's error as its cause), so the failure is thrown again
// as it was thrown. A plan of theirs never carries a refusal (they refuse before planning actions).
import {
  type ActionSteps,
  executePlan,
  type Plan,
  type PlanContext,
  type PlanOutcome,
} from "../run/execute-plan.ts";

/** What a plan run that did not fail came to: planned (a dry run), ok, or interrupted by SIGTERM. */
export type PlanRun = Extract<PlanOutcome, { status: "planned" | "ok" | "interrupted" }>;

export async function executePlanOrThrow<Action extends { readonly kind: string }>(
  ctx: PlanContext,
  plan: Plan<Action>,
  steps: ActionSteps<Action>,
  options: { readonly dryRun: boolean },
): Promise<PlanRun> {
  let failure: unknown;
  const remembering: ActionSteps<Action> = {
    ...steps,
    apply: async (action, auditInside) => {
      try {
        return await steps.apply(action, auditInside);
      } catch (error) {
        failure = error;
        throw error;
      }
    },
  };
  const outcome = await executePlan(ctx, plan, remembering, options);
  if (outcome.status === "failed") throw failure ?? new Error(outcome.error);
  if (outcome.status === "refused") throw new Error(outcome.error);
  return outcome;
}

/** How many actions a plan run carried out (or planned, in a dry run). */
export function actionsDone(run: PlanRun): number {
  return Object.values(run.actions).reduce((a, b) => a + b, 0);
}
