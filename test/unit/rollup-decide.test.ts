// The decisions a rollup run takes besides its plan: what it saves before the incremental step,
// what that step recomputes, what the rebuild loop does next, and the figures it reports.
import { describe, expect, it } from "vitest";
import {
  backfillProgress,
  coveringRange,
  describeDryRun,
  describeStart,
  incrementalScope,
  nextBackfillStep,
  pendingRebuild,
  rollupHealth,
  startingPoint,
} from "../../shared/rollups/decide.ts";

const d = (iso: string) => new Date(iso);
const range = (from: string, to: string) => ({ from: d(from), to: d(to) });
const watermark = (finalBefore: string, next: string | null = null, to: string | null = null) => ({
  finalBefore: d(finalBefore),
  backfillNext: next === null ? null : d(next),
  backfillTo: to === null ? null : d(to),
});

describe("pendingRebuild", () => {
  it("is the range still to do, or null when there is none or it is done", () => {
    expect(pendingRebuild(undefined)).toBeNull();
    expect(pendingRebuild(watermark("2026-11-21T10:00:00Z"))).toBeNull();
    expect(
      pendingRebuild(watermark("2026-11-21T10:00:00Z", "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z")),
    ).toBeNull();
    expect(
      pendingRebuild(watermark("2026-11-21T10:00:00Z", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")),
    ).toEqual(range("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"));
  });

  it("coveringRange spans both ranges", () => {
    expect(
      coveringRange(
        range("2026-11-05T00:00:00Z", "2026-11-06T00:00:00Z"),
        range("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
      ),
    ).toEqual(range("2026-11-01T00:00:00Z", "2026-11-06T00:00:00Z"));
  });
});

describe("startingPoint", () => {
  const plan = { finalBefore: d("2026-11-21T10:00:00Z"), startBackfill: null };

  it("a task with its own watermark and no rebuild asked for saves nothing", () => {
    expect(startingPoint(watermark("2026-11-21T09:00:00Z"), false, plan)).toBeNull();
  });

  it("a first run saves the plan's finalBefore and the history rebuild", () => {
    const history = range("2025-01-03T07:00:00Z", "2026-11-21T10:00:00Z");
    expect(startingPoint(undefined, false, { ...plan, startBackfill: history })).toEqual({
      finalBefore: d("2026-11-21T10:00:00Z"),
      rebuild: history,
      scheduled: true,
      merged: false,
    });
    expect(startingPoint(undefined, false, plan)).toEqual({
      finalBefore: d("2026-11-21T10:00:00Z"),
      rebuild: null,
      scheduled: false,
      merged: false,
    });
  });

  it("an inherited start keeps the older layout's finalBefore and its pending rebuild", () => {
    const w = watermark("2026-11-20T00:00:00Z", "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z");
    expect(startingPoint(w, true, plan)).toEqual({
      finalBefore: d("2026-11-20T00:00:00Z"),
      rebuild: range("2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z"),
      scheduled: false,
      merged: true,
    });
  });

  it("a rebuild asked for while another is pending covers both", () => {
    const w = watermark("2026-11-21T09:00:00Z", "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z");
    const asked = range("2026-11-10T00:00:00Z", "2026-11-12T00:00:00Z");
    expect(startingPoint(w, false, { ...plan, startBackfill: asked })).toEqual({
      finalBefore: d("2026-11-21T09:00:00Z"),
      rebuild: range("2026-11-01T00:00:00Z", "2026-11-12T00:00:00Z"),
      scheduled: true,
      merged: true,
    });
  });
});

describe("incrementalScope", () => {
  const plan = {
    finalBefore: d("2026-11-21T10:00:00Z"),
    horizon: d("2026-11-01T00:00:00Z"),
    newlyFinal: range("2026-11-21T07:00:00Z", "2026-11-21T10:00:00Z"),
  };

  it("scans for touched buckets outside the newly final hours and the pending rebuild", () => {
    const w = watermark("2026-11-21T07:00:00Z", "2026-11-05T00:00:00Z", "2026-11-06T00:00:00Z");
    expect(incrementalScope(w, plan)).toEqual({
      pending: range("2026-11-05T00:00:00Z", "2026-11-06T00:00:00Z"),
      newlyFinal: plan.newlyFinal,
      ranges: [
        range("2026-11-01T00:00:00Z", "2026-11-05T00:00:00Z"),
        range("2026-11-06T00:00:00Z", "2026-11-21T07:00:00Z"),
      ],
    });
  });

  it("recomputes no hours whole when the saved watermark is already at the plan's finalBefore", () => {
    // A first run saved the plan's finalBefore before the step: nothing became final since.
    const scope = incrementalScope(watermark("2026-11-21T10:00:00Z"), plan);
    expect(scope.newlyFinal).toBeNull();
    expect(scope.ranges).toEqual([range("2026-11-01T00:00:00Z", "2026-11-21T10:00:00Z")]);
  });
});

describe("nextBackfillStep", () => {
  const o = {
    batchHours: 24,
    horizon: d("2026-11-02T00:00:00Z"),
    aborted: false,
    elapsedMs: 0,
    budgetMs: 60_000,
  };

  it("nothing pending, then done", () => {
    expect(nextBackfillStep(watermark("2026-11-21T10:00:00Z"), o)).toEqual({ kind: "none" });
    const done = watermark("2026-11-21T10:00:00Z", "2026-11-03T00:00:00Z", "2026-11-03T00:00:00Z");
    expect(nextBackfillStep(done, { ...o, aborted: true })).toEqual({ kind: "complete" });
  });

  it("stops between batches on termination, then at the time budget", () => {
    const w = watermark("2026-11-21T10:00:00Z", "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z");
    expect(nextBackfillStep(w, { ...o, aborted: true, elapsedMs: 90_000 })).toEqual({ kind: "interrupted" });
    expect(nextBackfillStep(w, { ...o, elapsedMs: 90_000 })).toEqual({ kind: "out_of_time" });
  });

  it("a batch of whole hours; before the horizon it keeps rollup rows without raw values", () => {
    const w = watermark("2026-11-21T10:00:00Z", "2026-11-01T00:00:00Z", "2026-11-03T06:00:00Z");
    expect(nextBackfillStep(w, o)).toEqual({
      kind: "batch",
      batch: range("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
      keepExisting: true,
      hoursLeftAfter: 30,
    });
    const later = watermark("2026-11-21T10:00:00Z", "2026-11-02T00:00:00Z", "2026-11-03T06:00:00Z");
    expect(nextBackfillStep(later, o)).toMatchObject({ keepExisting: false, hoursLeftAfter: 6 });
    expect(nextBackfillStep(later, { ...o, horizon: null })).toMatchObject({ keepExisting: false });
  });
});

describe("figures and messages", () => {
  it("progress: rate and time left from the hours done so far", () => {
    expect(
      backfillProgress({ hoursDone: 10, hoursLeft: 20, samples: 5000, buckets: 40, elapsedMs: 5000 }),
    ).toEqual({
      hoursDone: 10,
      hoursLeft: 20,
      samplesPerSecond: 1000,
      buckets: 40,
      etaSeconds: 10,
    });
  });

  it("health: lag to finalBefore, pending rebuild hours, the step's counts", () => {
    const after = watermark("2026-11-21T10:00:00Z", "2026-11-01T00:00:00Z", "2026-11-01T05:00:00Z");
    expect(
      rollupHealth(
        after,
        d("2026-11-21T10:20:00Z"),
        { lateRows: 3, changedBuckets: 2, unsettledTransactions: 1 },
        "present",
      ),
    ).toEqual({
      finalBefore: "2026-11-21T10:00:00.000Z",
      rollupLagSeconds: 1200,
      rebuildPendingHours: 5,
      lateRows: 3,
      changedBuckets: 2,
      changeTracking: "present",
      unsettledTransactions: 1,
    });
    // A clock behind finalBefore reports no negative lag.
    expect(
      rollupHealth(
        after,
        d("2026-11-21T09:00:00Z"),
        { lateRows: 0, changedBuckets: 0, unsettledTransactions: 0 },
        "x",
      ),
    ).toMatchObject({ rollupLagSeconds: 0 });
  });

  it("the opening line and the dry run's line", () => {
    const shard = { index: 0, count: 2 };
    const plan = {
      finalBefore: d("2026-11-21T10:00:00Z"),
      newlyFinal: range("2026-11-21T07:00:00Z", "2026-11-21T10:00:00Z"),
      startBackfill: range("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
    };
    expect(describeStart("public.t_hourly", shard, undefined, false, plan)).toBe(
      "first run for public.t_hourly (shard 1/2)",
    );
    expect(describeStart("public.t_hourly", shard, watermark("2026-11-21T07:00:00Z"), true, plan)).toBe(
      "hours before 2026-11-21T10:00:00.000Z are final; shard 1/2 (first run of this task layout: starting from the older layout's state)",
    );
    expect(describeDryRun(plan, 4, 1)).toBe(
      "would recompute 3 newly final hours and the buckets of 4 newly visible rows and of 1 (group, hour) buckets with updated or deleted rows, then rebuild 2026-11-01T00:00:00.000Z .. 2026-11-02T00:00:00.000Z",
    );
    expect(describeDryRun({ newlyFinal: null, startBackfill: null }, 0, 0)).toBe(
      "would recompute the buckets of 0 newly visible rows and of 0 (group, hour) buckets with updated or deleted rows",
    );
  });
});
