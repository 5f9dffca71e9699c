// How the plan executor's events read when a job does not report them itself: one-line JSON
// records (Cloud Logging), and on a terminal, through TEXT hints, the plan once as a table and one
// progress line per action. Nothing here decides what runs; a rendering error never changes it.
import type { Logger } from "../log/logger.ts";
import { formatCount, progressLine, rangeText, renderTable, TEXT } from "../log/text-view.ts";
import type { ActionSteps, Applied, PlanEvent } from "./execute-plan.ts";

/**
 * The one-line records of every job that does not report its own. On a terminal (TEXT hints; JSON
 * records are the same either way) the plan reads once, as a table carried by its first record, and
 * each applied action as one progress line instead of "done: <the plan's words again>".
 */
export function defaultReport<Action extends { readonly kind: string }, Code extends string>(
  log: Logger,
  steps: ActionSteps<Action, Code>,
  actions: readonly Action[],
): (event: PlanEvent<Action>) => void {
  return (e) => {
    switch (e.event) {
      case "plan":
        log.info(`${e.dryRun ? "would " : "plan: "}${steps.describe(e.action)}`, {
          ...steps.planFields(e.action),
          [TEXT]: e.action === actions[0] ? textOf(() => planTable(steps, actions, e.dryRun)) : null,
        });
        return;
      case "refused":
        log.error(e.refusal, { refused: true });
        return;
      case "interrupted":
        log.warn(`stopping between actions: ${e.reason}`);
        return;
      case "done":
        log[steps.doneSeverity](`done: ${steps.describe(e.action)}`, {
          action: e.action.kind,
          partition: steps.target(e.action).partition,
          ...e.applied.logFields,
          [TEXT]: textOf(() =>
            progressLine(e.index, e.total, nameOf(steps, e.action), doneText(steps, e), e.elapsedMs),
          ),
        });
        return;
      case "failed":
        log.error(`failed: ${steps.describe(e.action)}`, {
          action: e.action.kind,
          partition: steps.target(e.action).partition,
          error: errorMessage(e.error),
          [TEXT]: textOf(() =>
            progressLine(
              e.index,
              e.total,
              nameOf(steps, e.action),
              `failed: ${errorMessage(e.error)}`,
              e.elapsedMs,
            ),
          ),
        });
    }
  };
}

/** What a progress line names: the partition (or relation) acted on, else the action's kind. */
function nameOf<Action extends { readonly kind: string }>(steps: ActionSteps<Action, string>, a: Action) {
  return steps.target(a).partition ?? a.kind;
}

function doneText<Action extends { readonly kind: string }>(
  steps: ActionSteps<Action, string>,
  e: { action: Action; applied: Applied },
): string {
  if (e.applied.outcome === "skipped") return "already done";
  if (steps.progressText) return steps.progressText(e.action, e.applied);
  return e.applied.rows === undefined ? "done" : `${formatCount(e.applied.rows)} rows`;
}

/** Plans longer than HEAD + TAIL actions show their first and last ones and how many lie between. */
const PLAN_TABLE_HEAD = 15;
const PLAN_TABLE_TAIL = 5;

/** The plan as a table: partition, range (in its interval's precision), rows, action. */
function planTable<Action extends { readonly kind: string }>(
  steps: ActionSteps<Action, string>,
  actions: readonly Action[],
  dryRun: boolean,
): string {
  const row = (a: Action) => {
    const { partition, from, to } = steps.target(a);
    const { rows, action, range } = steps.planRow?.(a) ?? { action: steps.describe(a) };
    return [partition ?? "", range ?? rangeText(from, to), rows ?? "", action];
  };
  const n = actions.length;
  // A rebuild of a year is hundreds of batches: the reader needs where it starts and ends.
  const shown =
    n <= PLAN_TABLE_HEAD + PLAN_TABLE_TAIL
      ? actions.map(row)
      : [
          ...actions.slice(0, PLAN_TABLE_HEAD).map(row),
          ["", `... ${formatCount(n - PLAN_TABLE_HEAD - PLAN_TABLE_TAIL)} more ...`, "", ""],
          ...actions.slice(n - PLAN_TABLE_TAIL).map(row),
        ];
  const title = `${dryRun ? "would do" : "plan:"} ${formatCount(n)} action${n === 1 ? "" : "s"}`;
  return [title, ...renderTable(["partition", "range", "rows", "action"], shown, new Set([2]))].join("\n  ");
}

/**
 * A record's terminal text, or nothing (the record then reads as its message and fields) when a
 * job's planRow or progressText throws: how a run reads must never change what it did.
 */
function textOf(render: () => string): string | undefined {
  try {
    return render();
  } catch {
    return undefined;
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
