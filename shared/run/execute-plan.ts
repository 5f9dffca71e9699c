// The one plan executor. Every job reads its facts, asks a pure planner for a Plan (actions,
// findings, and a refusal when a guard rail says no), and hands it here: this logs the findings and
// the plan, stops at a refusal or at --dry-run, and otherwise applies the actions in order, one at a
// time (or a few together, when a job applies them in one transaction). Between actions it checks
// for SIGTERM; each action is audited (ok, skipped or failed) once done and counted by kind; the first failure stops the table, since later actions would meet the same
// obstacle (other tables go on: the runner isolates them). A job whose actions need more than one
// line each (convert prints every statement) writes its own records through `report`.
import type { Kysely } from "kysely";
import type { DB } from "../db/schema.ts";
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
  /**
   * Writes the audit rows of actions applied together, in one statement (on `within`, the
   * transaction that applies them, when given); else one record each.
   */
  recordAll?(actions: readonly Omit<AuditAction, "table">[], within?: Kysely<DB>): Promise<void>;
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
  /** Its audit row was written by `apply` through auditInside, in the transaction that applied it. */
  readonly audited?: boolean;
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

/** Writes the audit rows of actions applied together, on the transaction that applies them. */
export type AuditInside<Action> = (
  within: Kysely<DB>,
  applied: readonly (readonly [Action, Applied])[],
) => Promise<void>;

/** What applyTogether did: each action and what it was applied as, and whether they are audited. */
export interface AppliedTogether<Action> {
  readonly applied: readonly (readonly [Action, Applied])[];
  readonly audited: boolean;
}

/** How a job's actions are described, audited and applied. */
export interface ActionSteps<Action extends { readonly kind: string }, Code extends string = string> {
  describe(action: Action): string;
  /** Fields of the plan's log record for this action ("plan: ..." or "would ..."). */
  planFields(action: Action): Record<string, unknown>;
  /** What the audit row and the log records name: the relation and the range acted on. */
  target(action: Action): { partition?: string; from?: Date | undefined; to?: Date | undefined };
  /**
   * Applies one action. `auditInside` writes its audit row on a transaction of the caller's (then
   * the result says `audited`: a kill leaves both or neither); else the executor writes it after.
   */
  apply(
    action: Action,
    auditInside: (within: Kysely<DB>, applied: Applied) => Promise<void>,
  ): Promise<Applied>;
  /**
   * Applies `action` together with some of the plan's later actions (`later`), e.g. in one
   * transaction: what each was applied as, `action` first; undefined when they cannot be (then
   * `apply` applies `action` alone). They are audited with one INSERT: inside the transaction that
   * applies them when it calls `auditInside` (then `audited` is true: a kill leaves either neither
   * or both), else once all are done. The executor does not apply them again when it reaches them.
   */
  applyTogether?(
    action: Action,
    later: readonly Action[],
    auditInside: AuditInside<Action>,
  ): Promise<AppliedTogether<Action> | undefined>;
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
  // Actions that an earlier one applied together with it: already done, audited and reported.
  const done = new Set<Action>();
  for (const [i, action] of plan.actions.entries()) {
    if (done.has(action)) continue;
    if (ctx.signal.aborted) {
      report({ event: "interrupted", next: action, reason: stopReason(ctx.signal) });
      return { status: "interrupted", actions: counts };
    }
    const applied = await applyNext(ctx, steps, report, plan.actions, i, count);
    if (typeof applied === "string") return { status: "failed", actions: counts, error: applied };
    for (const a of applied) done.add(a);
    for (const a of applied) await steps.afterAction?.(a);
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

/**
 * Applies, audits and reports the action at `index` (and the later ones it was applied together
 * with): the actions done, or the error message when it failed. Each is audited only once done, so
 * a kill leaves no audit row of an action that was not.
 */
async function applyNext<Action extends { readonly kind: string }, Code extends string>(
  ctx: PlanContext,
  steps: ActionSteps<Action, Code>,
  report: (event: PlanEvent<Action>) => void,
  actions: readonly Action[],
  index: number,
  count: (action: Action) => void,
): Promise<readonly Action[] | string> {
  const action = actions[index]!;
  const startedAt = new Date();
  const position = (a: Action) => ({ index: actions.indexOf(a) + 1, total: actions.length });
  const auditRows = (applied: readonly (readonly [Action, Applied])[]) => {
    const finishedAt = new Date();
    return applied.map(([a, r]) => ({
      kind: a.kind,
      ...steps.target(a),
      rows: r.rows,
      outcome: r.outcome,
      detail: r.detail,
      startedAt,
      finishedAt,
    }));
  };
  let together: AppliedTogether<Action>;
  try {
    together =
      (await steps.applyTogether?.(action, actions.slice(index + 1), (within, applied) =>
        recordAll(ctx, auditRows(applied), within),
      )) ?? (await applyOne(ctx, steps, action, auditRows));
  } catch (error) {
    // Whatever was thrown (a driver error, or a string from a careless callee) is a failure.
    const message = errorMessage(error);
    await ctx.record({
      kind: action.kind,
      ...steps.target(action),
      outcome: "failed",
      error: message,
      startedAt,
      finishedAt: new Date(),
    });
    const elapsedMs = Date.now() - startedAt.getTime();
    report({ event: "failed", action, error, ...position(action), elapsedMs });
    return message;
  }
  const { applied } = together;
  for (const [a] of applied) count(a);
  const elapsedMs = Date.now() - startedAt.getTime();
  try {
    if (!together.audited) await recordAll(ctx, auditRows(applied));
  } catch (error) {
    // The actions are done whatever became of their audit rows: they are reported done, and the
    // run fails for the audit trail, never recording a done action as failed.
    for (const [a, r] of applied) report({ event: "done", action: a, applied: r, ...position(a), elapsedMs });
    return `${applied.length} action(s) done, but their audit rows could not be written: ${errorMessage(error)}`;
  }
  // Reported once applied and audited: how it is logged cannot turn a done action into a failed one.
  for (const [a, r] of applied) report({ event: "done", action: a, applied: r, ...position(a), elapsedMs });
  return applied.map(([a]) => a);
}

/** `action` applied by itself, its audit row written inside its transaction if `apply` can. */
async function applyOne<Action extends { readonly kind: string }, Code extends string>(
  ctx: PlanContext,
  steps: ActionSteps<Action, Code>,
  action: Action,
  auditRows: (applied: readonly (readonly [Action, Applied])[]) => Parameters<PlanContext["record"]>[0][],
): Promise<AppliedTogether<Action>> {
  const applied = await steps.apply(action, (within, r) => recordAll(ctx, auditRows([[action, r]]), within));
  return { applied: [[action, applied]], audited: applied.audited === true };
}

/**
 * Writes audit rows in one statement where the context can; on `within`, a caller's transaction,
 * only through recordAll: rows written elsewhere would outlive that transaction's rollback.
 */
async function recordAll(
  ctx: PlanContext,
  rows: Parameters<PlanContext["record"]>[0][],
  within?: Kysely<DB>,
): Promise<void> {
  if (ctx.recordAll) await ctx.recordAll(rows, within);
  else if (within)
    throw new Error("this context cannot write audit rows inside a transaction (no recordAll)");
  else for (const row of rows) await ctx.record(row);
}
