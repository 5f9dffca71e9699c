// The one plan executor. Every job reads its facts, asks a pure planner for a Plan (actions,
// findings, and a refusal when a guard rail says no), and hands it here: this logs the findings and
// the plan, stops at a refusal or at --dry-run, and otherwise applies the actions in order, one at a
// time. Between actions it checks for SIGTERM; each action is audited (ok, skipped or failed) and
// counted by kind; the first failure stops the table, since later actions would meet the same
// obstacle (other tables go on: the runner isolates them). A job whose actions need more than one
// line each (convert prints every statement) writes its own records through `report`.
import type { Logger } from "../log/logger.ts";
import { TEXT } from "../log/text-view.ts";
import type { AuditAction } from "./audit.ts";
import { defaultReport, errorMessage } from "./plan-report.ts";

/** What the executor needs of its caller; the runner's TableContext is one. */
export interface PlanContext {
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Writes an audit row for one action. */
  record(action: Omit<AuditAction, "table">): Promise<void>;
}

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

/** A moment of the run that the executor logs. */
export type PlanEvent<Action> =
  | { readonly event: "plan"; readonly action: Action; readonly dryRun: boolean }
  | { readonly event: "refused"; readonly refusal: string }
  | { readonly event: "interrupted"; readonly next: Action; readonly reason: string }
  | ({ readonly event: "done"; readonly action: Action; readonly applied: Applied } & Progress)
  | ({ readonly event: "failed"; readonly action: Action; readonly error: unknown } & Progress);

/** Where an applied action stands in its plan: the terminal's `[3/12] ... 1.2 s`. */
export interface Progress {
  /** 1-based position of the action in the plan. */
  readonly index: number;
  readonly total: number;
  readonly elapsedMs: number;
}

/** One row of the plan as a terminal shows it, under the columns partition, range, rows, action. */
export interface PlanRow {
  /** The rows the action moves or removes, as the job counts them (e.g. "~1,200" for an estimate). */
  readonly rows?: string;
  /** A few words: "create (rescue)", "drop". */
  readonly action: string;
  /** The range column, when the target's from/to would misstate it (e.g. only an end is known). */
  readonly range?: string;
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
  /**
   * Writes the records of every event instead of the executor's one-line defaults (findings and
   * nothingToDo excepted), as many as it needs: e.g. each statement of a planned action.
   */
  report?(event: PlanEvent<Action>): void;
  /** Runs after each action applied and audited, before the next one (a test's fault point). */
  afterAction?(action: Action): Promise<void>;
  /** The action's row in the plan table of text logs; by default its description. */
  planRow?(action: Action): PlanRow;
  /** What the action did, for its progress line in text logs: "74,411 rows moved". */
  progressText?(action: Action, applied: Applied): string;
}

export type PlanOutcome =
  | { readonly status: "refused"; readonly error: string }
  | { readonly status: "planned"; readonly actions: Record<string, number> }
  | { readonly status: "ok" | "interrupted"; readonly actions: Record<string, number> }
  | { readonly status: "failed"; readonly actions: Record<string, number>; readonly error: string };

export async function executePlan<Action extends { readonly kind: string }, Code extends string>(
  ctx: PlanContext,
  plan: Plan<Action, Code>,
  steps: ActionSteps<Action, Code>,
  options: { readonly dryRun: boolean },
): Promise<PlanOutcome> {
  const { log } = ctx;
  // A crit finding (the run ends refused because of it) is an ERROR record, so it reads as one.
  for (const f of plan.findings)
    (f.severity === "info" ? log.info : f.severity === "crit" ? log.error : log.warn)(f.message, {
      finding: f.code,
      partition: f.partition,
      ...steps.findingFields?.(f),
      // The message says it all to a reader; the code and fields are for log queries.
      [TEXT]: f.message,
    });
  if (plan.actions.length === 0 && steps.nothingToDo) log.info(steps.nothingToDo);
  const report = steps.report ?? defaultReport(log, steps, plan.actions);
  for (const action of plan.actions) report({ event: "plan", action, dryRun: options.dryRun });
  if (plan.refusal) {
    report({ event: "refused", refusal: plan.refusal });
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
  for (const [i, action] of plan.actions.entries()) {
    if (ctx.signal.aborted) {
      report({ event: "interrupted", next: action, reason: stopReason(ctx.signal) });
      return { status: "interrupted", actions: counts };
    }
    const position = { index: i + 1, total: plan.actions.length };
    const failure = await applyOne(ctx, steps, report, action, position, () => count(action));
    if (failure !== undefined) return { status: "failed", actions: counts, error: failure };
    await steps.afterAction?.(action);
  }
  return { status: "ok", actions: counts };
}

/**
 * Why the signal stopped the plan: the reason it was aborted with, when a job stops itself (e.g.
 * rollup-hourly's time budget); otherwise SIGTERM or SIGINT, which abort without one.
 */
function stopReason(signal: AbortSignal): string {
  return typeof signal.reason === "string" ? signal.reason : "termination requested";
}

/** Applies, audits and reports one action; returns the error message when it failed. */
async function applyOne<Action extends { readonly kind: string }, Code extends string>(
  ctx: PlanContext,
  steps: ActionSteps<Action, Code>,
  report: (event: PlanEvent<Action>) => void,
  action: Action,
  position: { index: number; total: number },
  count: () => void,
): Promise<string | undefined> {
  const startedAt = new Date();
  const target = steps.target(action);
  let applied: Applied;
  try {
    applied = await steps.apply(action);
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
  } catch (error) {
    // Whatever was thrown (a driver error, or a string from a careless callee) is a failure.
    const message = errorMessage(error);
    await ctx.record({
      kind: action.kind,
      ...target,
      outcome: "failed",
      error: message,
      startedAt,
      finishedAt: new Date(),
    });
    report({ event: "failed", action, error, ...position, elapsedMs: Date.now() - startedAt.getTime() });
    return message;
  }
  // Reported once applied and audited: how it is logged cannot turn a done action into a failed one.
  report({ event: "done", action, applied, ...position, elapsedMs: Date.now() - startedAt.getTime() });
  return undefined;
}
