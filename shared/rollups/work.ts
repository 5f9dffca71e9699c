// A rollup run's units of work through the plan executor: the incremental step, then the pending
// rebuild's batches (planRollupWork, decide.ts). The executor logs the plan, stops at --dry-run,
// audits each unit and stops at the first failure. It stops between units when its signal says so;
// the signal given it is this run's own, raised after a unit (afterAction) when nextBackfillStep
// says the rebuild must stop (termination requested, or the time budget spent), as the rebuild
// loop has always decided between batches. A SIGTERM in the middle of the incremental step
// therefore still lets the step finish and save its snapshot.
import type { Kysely } from "kysely";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { formatCount, instantText } from "../log/text-view.ts";
import type { ActionSteps } from "../run/execute-plan.ts";
import { applyRebuildBatch, finishRebuild, rebuildTotals } from "./backfill.ts";
import {
  describeRollupAction,
  hoursIn,
  nextBackfillStep,
  planRollupWork,
  type RollupAction,
  rollupActionCounts,
} from "./decide.ts";
import { applyIncremental, type IncrementalStep } from "./incremental.ts";
import type { RollupPlan, Watermark } from "./plan.ts";
import { executePlanOrThrow } from "./plan-run.ts";
import type { RollupContext, RollupTask } from "./source.ts";
import type { SavedWatermark } from "./watermark.ts";

export interface RollupWork {
  status: "ok" | "interrupted";
  /** By the names run summaries use: incremental, rebuild_batch. */
  actions: Record<string, number>;
  step: IncrementalStep;
  /** Rows of the rebuilt hours skipped because their group is NULL. */
  rebuildNullGroupRows: number;
}

/** The run's work from its saved starting point, carried out by the plan executor. */
export async function runRollupWork(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  start: { saved: SavedWatermark; plan: RollupPlan; inherited: boolean },
): Promise<RollupWork> {
  const { rollup } = task.source;
  const stop = new AbortController();
  let stopped: "interrupted" | "out_of_time" | undefined;
  let step: IncrementalStep | undefined;
  let progress: Watermark = start.saved;
  const totals = rebuildTotals(Date.now());
  // After each unit (applied and audited): would the rebuild loop go on to another batch?
  const check = () => {
    const next = nextBackfillStep(progress, {
      batchHours: rollup.backfillBatchHours,
      horizon: start.plan.horizon,
      aborted: ctx.signal.aborted,
      elapsedMs: Date.now() - totals.started,
      budgetMs: rollup.timeBudgetMs,
    });
    if (next.kind !== "interrupted" && next.kind !== "out_of_time") return;
    stopped = next.kind;
    stop.abort(next.kind === "out_of_time" ? "the rollup's time budget is spent" : "termination requested");
  };
  const steps: ActionSteps<RollupAction> = {
    ...rollupSteps(task, async (action) => {
      if (action.kind === "rollup_rebuild_batch")
        return await applyRebuildBatch(db, ctx, task, action, totals);
      const done = await applyIncremental(db, ctx, task, start);
      step = done.step;
      // The rebuild's time budget counts from the end of the incremental step.
      totals.started = Date.now();
      totals.lastProgress = totals.started;
      return done.applied;
    }),
    afterAction: async (action) => {
      if (action.kind === "rollup_rebuild_batch") progress = { ...progress, backfillNext: action.batch.to };
      check();
    },
  };
  const actions = planRollupWork(start.saved, start.plan, rollup.backfillBatchHours);
  const executor = { ...ctx, log: batchesAtDebug(ctx.log), signal: stop.signal };
  const run = await executePlanOrThrow(executor, { actions, findings: [] }, steps, { dryRun: false });
  if (!step) throw new Error("the incremental step is the first action of every rollup plan");
  await finishRebuild(db, ctx, task, stopped ?? "done", totals);
  return {
    status: stopped === "interrupted" ? "interrupted" : "ok",
    actions: rollupActionCounts(run.actions),
    step,
    rebuildNullGroupRows: totals.nullGroupRows,
  };
}

/**
 * What a dry run would do from the watermark it would start from: the executor lists the units
 * ("would ...") and applies none.
 */
export async function listRollupWork(
  ctx: RollupContext,
  task: RollupTask,
  from: Watermark,
  plan: RollupPlan,
): Promise<void> {
  const actions = planRollupWork(from, plan, task.source.rollup.backfillBatchHours);
  const steps = rollupSteps(task, async () => {
    throw new Error("a dry run applies nothing");
  });
  await executePlanOrThrow({ ...ctx, log: batchesAtDebug(ctx.log) }, { actions, findings: [] }, steps, {
    dryRun: true,
  });
}

/**
 * The table's log, with the executor's records of each rebuild batch ("plan: rebuild ...",
 * "done: rebuild ...", "would rebuild ...") at DEBUG: a first run over months of history has
 * hundreds of batches, and the rebuild's own lines (its progress every few seconds, where it
 * stopped, that it is complete) already say what it does. Every other record is as logged.
 */
function batchesAtDebug(log: Logger): Logger {
  const quiet =
    (at: Logger["info"]): Logger["info"] =>
    (message, fields) =>
      (fields?.action === "rollup_rebuild_batch" ? log.debug : at)(message, fields);
  return { ...log, info: quiet(log.info), notice: quiet(log.notice) };
}

/** How the executor describes, audits and applies a rollup run's units. */
function rollupSteps(task: RollupTask, apply: ActionSteps<RollupAction>["apply"]): ActionSteps<RollupAction> {
  const target = task.source.rollup.target;
  return {
    describe: describeRollupAction,
    planFields: (a) =>
      a.kind === "rollup_rebuild_batch"
        ? { action: a.kind, from: a.batch.from, to: a.batch.to }
        : { action: a.kind, finalBefore: a.finalBefore },
    // The audit rows name the target, and the hours: the batch's, or the incremental step's new
    // finalBefore.
    target: (a) =>
      a.kind === "rollup_rebuild_batch"
        ? { partition: target, from: a.batch.from, to: a.batch.to }
        : { partition: target, to: a.finalBefore },
    apply,
    doneSeverity: "info",
    // On a terminal: the plan table's words, and what each unit's progress line says it did.
    planRow: (a) => ({
      // The incremental step's target has only an end (its new finalBefore): it does not start at
      // MINVALUE, as a range with an open start would read.
      ...(a.kind === "rollup_rebuild_batch" ? {} : { range: `final before ${instantText(a.finalBefore)}` }),
      action:
        a.kind === "rollup_rebuild_batch"
          ? `rebuild${a.keepExisting ? " (before the raw-data horizon)" : ""}`
          : `recompute ${a.newlyFinal ? `${hoursIn(a.newlyFinal)} newly final hours and ` : ""}touched buckets`,
    }),
    progressText: (_a, applied) =>
      `${formatCount(Number(applied.logFields.buckets ?? 0))} buckets recomputed`,
  };
}
