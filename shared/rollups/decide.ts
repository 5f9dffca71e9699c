// The decisions of one rollup run besides its plan (plan.ts), as pure functions of the saved
// watermark, the plan and the clock: what a run saves before its first step, the units of work it
// hands the plan executor (the incremental step, the rebuild's batches), what the incremental step
// covers, and the figures and messages the run reports. No database, no Date.now(): manage.ts,
// incremental.ts and backfill.ts carry the decisions out.
import {
  HOUR_MS,
  type HourRange,
  nextBackfillBatch,
  type RollupPlan,
  touchedScanRanges,
  type Watermark,
} from "./plan.ts";

const iso = (d: Date) => d.toISOString();

/** Whole hours in a range. */
export function hoursIn(range: HourRange): number {
  return (range.to.getTime() - range.from.getTime()) / HOUR_MS;
}

/** The rebuild a watermark still has to do, [backfillNext, backfillTo); null when there is none. */
export function pendingRebuild(w: Watermark | undefined): HourRange | null {
  return w?.backfillNext && w.backfillTo && w.backfillNext < w.backfillTo
    ? { from: w.backfillNext, to: w.backfillTo }
    : null;
}

/** The smallest range covering both. */
export function coveringRange(a: HourRange, b: HourRange): HourRange {
  return { from: a.from < b.from ? a.from : b.from, to: a.to > b.to ? a.to : b.to };
}

/** What a run saves before its incremental step, so the rebuild it schedules resumes after a kill. */
export interface StartingPoint {
  finalBefore: Date;
  /** The rebuild to save as pending; null for none. */
  rebuild: HourRange | null;
  /** The plan asked for a rebuild: the run says it is scheduled. */
  scheduled: boolean;
  /** That rebuild was merged with one already pending. */
  merged: boolean;
}

/**
 * The starting point to save now, or null when the saved watermark stands as it is. A first run
 * (or the first run of a new task layout) saves its state at once; a rebuild asked for while another
 * is pending covers both: dropping the pending one would leave its hours never rolled up (their
 * rows are already in the saved snapshot, never "new" again).
 */
export function startingPoint(
  watermark: Watermark | undefined,
  inherited: boolean,
  plan: Pick<RollupPlan, "finalBefore" | "startBackfill">,
): StartingPoint | null {
  if (watermark && !inherited && !plan.startBackfill) return null;
  const pending = pendingRebuild(watermark);
  const rebuild =
    plan.startBackfill && pending
      ? coveringRange(plan.startBackfill, pending)
      : (plan.startBackfill ?? pending);
  return {
    finalBefore: watermark ? watermark.finalBefore : plan.finalBefore,
    rebuild,
    scheduled: rebuild !== null && plan.startBackfill !== null,
    merged: pending !== null,
  };
}

/** What the incremental step recomputes, given the watermark saved before it. */
export interface IncrementalScope {
  /** A rebuild still pending: its hours are left to the rebuild. */
  pending: HourRange | null;
  /** Hours recomputed whole: those that became final since the saved watermark. */
  newlyFinal: HourRange | null;
  /** Where newly visible rows touch buckets recomputed one by one (touchedScanRanges). */
  ranges: HourRange[];
}

export function incrementalScope(
  saved: Watermark,
  plan: Pick<RollupPlan, "finalBefore" | "horizon" | "newlyFinal">,
): IncrementalScope {
  const pending = pendingRebuild(saved);
  const newlyFinal = saved.finalBefore < plan.finalBefore ? plan.newlyFinal : null;
  const ranges = touchedScanRanges(plan.horizon, plan.finalBefore, [
    ...(pending ? [pending] : []),
    ...(newlyFinal ? [newlyFinal] : []),
  ]);
  return { pending, newlyFinal, ranges };
}

/** The rebuild loop's next move. */
export type BackfillStep =
  /** No rebuild is pending. */
  | { kind: "none" }
  /** The pending range is done: clear it. */
  | { kind: "complete" }
  /** Termination was requested: stop between batches; the next run resumes. */
  | { kind: "interrupted" }
  /** The time budget is spent: stop; the next run resumes. */
  | { kind: "out_of_time" }
  /**
   * Recompute one batch of whole hours. Raw rows before the horizon may already be gone (the
   * source's retention): a batch there only adds and updates buckets, it never deletes rollup
   * rows (a rebuild that ran for days can reach the horizon).
   */
  | { kind: "batch"; batch: HourRange; keepExisting: boolean; hoursLeftAfter: number };

export function nextBackfillStep(
  w: Watermark,
  o: { batchHours: number; horizon: Date | null; aborted: boolean; elapsedMs: number; budgetMs: number },
): BackfillStep {
  if (!w.backfillNext || !w.backfillTo) return { kind: "none" };
  const batch = nextBackfillBatch(w.backfillNext, w.backfillTo, o.batchHours);
  if (!batch) return { kind: "complete" };
  if (o.aborted) return { kind: "interrupted" };
  if (o.elapsedMs > o.budgetMs) return { kind: "out_of_time" };
  return {
    kind: "batch",
    batch,
    keepExisting: o.horizon !== null && batch.from < o.horizon,
    hoursLeftAfter: hoursIn({ from: batch.to, to: w.backfillTo }),
  };
}

/** One unit of a rollup run's work, as the plan executor carries it out; its kind is the audit row's. */
export type RollupAction =
  | {
      /** The incremental step: one REPEATABLE READ transaction (incrementalScope says what it covers). */
      readonly kind: "rollup_incremental";
      readonly finalBefore: Date;
      readonly newlyFinal: HourRange | null;
    }
  | {
      /** One batch of the rebuild, its own transaction with the watermark's progress. */
      readonly kind: "rollup_rebuild_batch";
      readonly batch: HourRange;
      readonly keepExisting: boolean;
      readonly hoursLeftAfter: number;
    };

/**
 * A run's work once its starting point is saved (`saved`): the incremental step, then every batch
 * of the pending rebuild, in order, as nextBackfillStep walks it when there is time. The executor
 * stops between them on termination or at the time budget; the next run plans what is left.
 */
export function planRollupWork(
  saved: Watermark,
  plan: Pick<RollupPlan, "finalBefore" | "newlyFinal" | "horizon">,
  batchHours: number,
): RollupAction[] {
  const actions: RollupAction[] = [
    { kind: "rollup_incremental", finalBefore: plan.finalBefore, newlyFinal: plan.newlyFinal },
  ];
  const walk = {
    aborted: false,
    elapsedMs: 0,
    budgetMs: Number.POSITIVE_INFINITY,
    batchHours,
    horizon: plan.horizon,
  };
  for (let w = saved; ; ) {
    const step = nextBackfillStep(w, walk);
    if (step.kind !== "batch") return actions;
    const { batch, keepExisting, hoursLeftAfter } = step;
    actions.push({ kind: "rollup_rebuild_batch", batch, keepExisting, hoursLeftAfter });
    w = { ...w, backfillNext: batch.to };
  }
}

/**
 * The watermark the run's work starts from: the starting point it saves first (startingPoint), or
 * the saved one when it stands as it is. A dry run plans from it without saving it.
 */
export function watermarkAfterStart(
  watermark: Watermark | undefined,
  point: StartingPoint | null,
): Watermark {
  if (!point) {
    if (!watermark) throw new Error("a first run always saves its starting point");
    return watermark;
  }
  return {
    finalBefore: point.finalBefore,
    backfillNext: point.rebuild?.from ?? null,
    backfillTo: point.rebuild?.to ?? null,
  };
}

/** What the plan's log lines say of an action ("plan: ...", "would ...", "done: ..."). */
export function describeRollupAction(a: RollupAction): string {
  if (a.kind === "rollup_rebuild_batch")
    return `rebuild ${iso(a.batch.from)} .. ${iso(a.batch.to)}${a.keepExisting ? " (before the raw-data horizon: adding and updating only)" : ""}`;
  const hours = a.newlyFinal
    ? `the newly final hours ${iso(a.newlyFinal.from)} .. ${iso(a.newlyFinal.to)} and `
    : "";
  return `recompute ${hours}the final buckets touched since the last run (final before ${iso(a.finalBefore)})`;
}

/** The report's action counts, by the names run summaries have always used. */
export function rollupActionCounts(done: Record<string, number>): Record<string, number> {
  const counts: Record<string, number> = {};
  if (done.rollup_incremental) counts.incremental = done.rollup_incremental;
  if (done.rollup_rebuild_batch) counts.rebuild_batch = done.rollup_rebuild_batch;
  return counts;
}

/** The rebuild's progress figures, for its periodic log line. */
export function backfillProgress(p: {
  hoursDone: number;
  hoursLeft: number;
  samples: number;
  buckets: number;
  elapsedMs: number;
}): { hoursDone: number; hoursLeft: number; samplesPerSecond: number; buckets: number; etaSeconds: number } {
  const seconds = p.elapsedMs / 1000;
  return {
    hoursDone: p.hoursDone,
    hoursLeft: p.hoursLeft,
    samplesPerSecond: Math.round(p.samples / seconds),
    buckets: p.buckets,
    etaSeconds: Math.round(p.hoursLeft * (seconds / p.hoursDone)),
  };
}

/** The table's health figures at the end of a run. */
export function rollupHealth(
  after: Watermark,
  now: Date,
  step: { lateRows: number; changedBuckets: number; unsettledTransactions: number },
  changeTracking: string,
): Record<string, unknown> {
  const pending = pendingRebuild(after);
  return {
    finalBefore: iso(after.finalBefore),
    rollupLagSeconds: Math.max(0, Math.round((now.getTime() - after.finalBefore.getTime()) / 1000)),
    rebuildPendingHours: pending ? hoursIn(pending) : 0,
    lateRows: step.lateRows,
    changedBuckets: step.changedBuckets,
    changeTracking,
    unsettledTransactions: step.unsettledTransactions,
  };
}

/** The run's opening line: where the watermark stands, or that this is a first run. */
export function describeStart(
  target: string,
  shard: { index: number; count: number },
  watermark: Watermark | undefined,
  inherited: boolean,
  plan: Pick<RollupPlan, "finalBefore">,
): string {
  const of = `${shard.index + 1}/${shard.count}`;
  if (!watermark) return `first run for ${target} (shard ${of})`;
  const layout = inherited ? " (first run of this task layout: starting from the older layout's state)" : "";
  return `hours before ${iso(plan.finalBefore)} are final; shard ${of}${layout}`;
}

/** What a dry run would do. */
export function describeDryRun(
  plan: Pick<RollupPlan, "newlyFinal" | "startBackfill">,
  newRows: number,
  changedBuckets: number,
): string {
  const hours = plan.newlyFinal ? `${hoursIn(plan.newlyFinal)} newly final hours and ` : "";
  const rebuild = plan.startBackfill
    ? `, then rebuild ${iso(plan.startBackfill.from)} .. ${iso(plan.startBackfill.to)}`
    : "";
  return `would recompute ${hours}the buckets of ${newRows} newly visible rows and of ${changedBuckets} (group, hour) buckets with updated or deleted rows${rebuild}`;
}
