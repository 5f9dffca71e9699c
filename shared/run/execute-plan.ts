// The one plan executor. Every job reads its facts, asks a pure planner for a Plan (actions,
// findings, and a refusal when a guard rail says no), and hands it here: this logs the findings and
// the plan, stops at a refusal or at --dry-run, and otherwise applies the actions in order, one at a
// time. Between actions it checks for SIGTERM; each action is audited (ok, skipped or failed) and
// counted by kind; the first failure stops the table, since later actions would meet the same
// obstacle (other tables go on: the runner isolates them).
import type { TableContext } from "./runner.ts";

/** Something a planner noticed and reports without acting on it. */
export interface Finding<Code extends string = string> {
  readonly severity: "info" | "warn" | "crit";
  readonly code: Code;
  readonly message: string;
  /** The partition (or relation) it is about, as displayRelation renders it. */
  readonly partition?: string;
}

/** What every planner returns. */
export interface Plan<Action, Code extends string = string> {
  readonly actions: readonly Action[];
  readonly findings: readonly Finding<Code>[];
  /** Why the run must not go ahead (a guard rail; exit 2); undefined when it may. */
  readonly refusal?: string;
}

/** What applying one action did. */
export interface Applied {
  readonly rows?: number;
  /** skipped: it was already done (by an earlier or a concurrent run). */
  readonly outcome: "ok" | "skipped";
  /** The audit row's detail. */
  readonly detail: Record<string, unknown>;
  /** Fields of the "done: ..." log record, after action and partition. */
  readonly logFields: Record<string, unknown>;
}

/** How a job's actions are described, audited and applied. */
export interface ActionSteps<Action extends { readonly kind: string }, Code extends string = string> {
  describe(action: Action): string;
  /** Fields of the plan's log record for this action ("plan: ..." or "would ..."). */
  planFields(action: Action): Record<string, unknown>;
  /** What the audit row and the log records name: the relation and the range acted on. */
  target(action: Action): { partition?: string; from?: Date | undefined; to?: Date | undefined };
  apply(action: Action): Promise<Applied>;
  /** Extra fields of a finding's log record. */
  findingFields?(finding: Finding<Code>): Record<string, unknown>;
  /** Logged when the plan has no action; nothing when unset. */
  nothingToDo?: string;
  /** Severity of the "done: ..." records. */
  doneSeverity: "info" | "notice";
}

export type PlanOutcome =
  | { readonly status: "refused"; readonly error: string }
  | { readonly status: "planned"; readonly actions: Record<string, number> }
  | { readonly status: "ok" | "interrupted"; readonly actions: Record<string, number> }
  | { readonly status: "failed"; readonly actions: Record<string, number>; readonly error: string };

export async function executePlan<Action extends { readonly kind: string }, Code extends string>(
  ctx: TableContext,
  plan: Plan<Action, Code>,
  steps: ActionSteps<Action, Code>,
  options: { readonly dryRun: boolean },
): Promise<PlanOutcome> {
  const { log } = ctx;
  for (const f of plan.findings)
    (f.severity === "info" ? log.info : log.warn)(f.message, {
      finding: f.code,
      partition: f.partition,
      ...steps.findingFields?.(f),
    });
  if (plan.actions.length === 0 && steps.nothingToDo) log.info(steps.nothingToDo);
  for (const a of plan.actions)
    log.info(`${options.dryRun ? "would " : "plan: "}${steps.describe(a)}`, steps.planFields(a));
  if (plan.refusal) {
    log.error(plan.refusal, { refused: true });
    return { status: "refused", error: plan.refusal };
  }
  const counts: Record<string, number> = {};
  const count = (a: Action) => {
    counts[a.kind] = (counts[a.kind] ?? 0) + 1;
  };
  if (options.dryRun) {
    for (const a of plan.actions) count(a);
    return { status: "planned", actions: counts };
  }
  for (const action of plan.actions) {
    if (ctx.signal.aborted) {
      log.warn("stopping between actions: termination requested");
      return { status: "interrupted", actions: counts };
    }
    const failure = await applyOne(ctx, steps, action, () => count(action));
    if (failure !== undefined) return { status: "failed", actions: counts, error: failure };
  }
  return { status: "ok", actions: counts };
}

/** Applies, audits and logs one action; returns the error message when it failed. */
async function applyOne<Action extends { readonly kind: string }, Code extends string>(
  ctx: TableContext,
  steps: ActionSteps<Action, Code>,
  action: Action,
  count: () => void,
): Promise<string | undefined> {
  const startedAt = new Date();
  const target = steps.target(action);
  try {
    const applied = await steps.apply(action);
    count();
    await ctx.record({
      kind: action.kind,
      ...target,
      rows: applied.rows,
      outcome: applied.outcome,
      detail: applied.detail,
      startedAt,
      finishedAt: new Date(),
    });
    ctx.log[steps.doneSeverity](`done: ${steps.describe(action)}`, {
      action: action.kind,
      partition: target.partition,
      ...applied.logFields,
    });
    return undefined;
  } catch (error) {
    const message = (error as Error).message;
    await ctx.record({
      kind: action.kind,
      ...target,
      outcome: "failed",
      error: message,
      startedAt,
      finishedAt: new Date(),
    });
    ctx.log.error(`failed: ${steps.describe(action)}`, {
      action: action.kind,
      partition: target.partition,
      error: message,
    });
    return message;
  }
}
