// The units of work a rollup run hands the plan executor: the incremental step, then the pending
// rebuild in batches; where a dry run plans them from; how they are described and counted.
import { describe, expect, it } from "vitest";
import {
  describeRollupAction,
  planRollupWork,
  rollupActionCounts,
  startingPoint,
  watermarkAfterStart,
} from "../../shared/rollups/decide.ts";

const d = (iso: string) => new Date(iso);
const range = (from: string, to: string) => ({ from: d(from), to: d(to) });
const watermark = (finalBefore: string, next: string | null = null, to: string | null = null) => ({
  finalBefore: d(finalBefore),
  backfillNext: next === null ? null : d(next),
  backfillTo: to === null ? null : d(to),
});
const plan = {
  finalBefore: d("2026-11-21T10:00:00Z"),
  newlyFinal: range("2026-11-21T09:00:00Z", "2026-11-21T10:00:00Z"),
  horizon: null,
};

describe("planRollupWork", () => {
  it("is the incremental step alone when no rebuild is pending", () => {
    expect(planRollupWork(watermark("2026-11-21T09:00:00Z"), plan, 6)).toEqual([
      { kind: "rollup_incremental", finalBefore: plan.finalBefore, newlyFinal: plan.newlyFinal },
    ]);
  });

  it("then every batch of the pending rebuild, in order, the last one short", () => {
    const w = watermark("2026-11-21T09:00:00Z", "2026-11-20T00:00:00Z", "2026-11-20T14:00:00Z");
    const work = planRollupWork(w, plan, 6);
    expect(work.map((a) => a.kind)).toEqual([
      "rollup_incremental",
      "rollup_rebuild_batch",
      "rollup_rebuild_batch",
      "rollup_rebuild_batch",
    ]);
    expect(work.slice(1)).toEqual([
      {
        kind: "rollup_rebuild_batch",
        batch: range("2026-11-20T00:00:00Z", "2026-11-20T06:00:00Z"),
        keepExisting: false,
        hoursLeftAfter: 8,
      },
      {
        kind: "rollup_rebuild_batch",
        batch: range("2026-11-20T06:00:00Z", "2026-11-20T12:00:00Z"),
        keepExisting: false,
        hoursLeftAfter: 2,
      },
      {
        kind: "rollup_rebuild_batch",
        batch: range("2026-11-20T12:00:00Z", "2026-11-20T14:00:00Z"),
        keepExisting: false,
        hoursLeftAfter: 0,
      },
    ]);
  });

  it("batches before the raw-data horizon keep rollup rows without raw values", () => {
    const w = watermark("2026-11-21T09:00:00Z", "2026-11-20T00:00:00Z", "2026-11-20T12:00:00Z");
    const work = planRollupWork(w, { ...plan, horizon: d("2026-11-20T06:00:00Z") }, 6);
    expect(work.slice(1).map((a) => a.kind === "rollup_rebuild_batch" && a.keepExisting)).toEqual([
      true,
      false,
    ]);
  });

  it("a rebuild with nothing left plans no batch", () => {
    const w = watermark("2026-11-21T09:00:00Z", "2026-11-20T00:00:00Z", "2026-11-20T00:00:00Z");
    expect(planRollupWork(w, plan, 6)).toHaveLength(1);
  });
});

describe("watermarkAfterStart", () => {
  it("a first run plans from the starting point it saves", () => {
    const first = {
      ...plan,
      newlyFinal: null,
      startBackfill: range("2026-11-20T00:00:00Z", "2026-11-21T10:00:00Z"),
    };
    expect(watermarkAfterStart(undefined, startingPoint(undefined, false, first))).toEqual(
      watermark("2026-11-21T10:00:00Z", "2026-11-20T00:00:00Z", "2026-11-21T10:00:00Z"),
    );
  });

  it("a task whose watermark stands plans from it", () => {
    const w = watermark("2026-11-21T09:00:00Z", "2026-11-20T00:00:00Z", "2026-11-20T12:00:00Z");
    const next = { ...plan, startBackfill: null };
    expect(watermarkAfterStart(w, startingPoint(w, false, next))).toBe(w);
  });
});

describe("describing and counting the units", () => {
  it("says which hours each one recomputes", () => {
    expect(
      describeRollupAction({ kind: "rollup_incremental", finalBefore: plan.finalBefore, newlyFinal: null }),
    ).toBe("recompute the final buckets touched since the last run (final before 2026-11-21T10:00:00.000Z)");
    expect(
      describeRollupAction({
        kind: "rollup_incremental",
        finalBefore: plan.finalBefore,
        newlyFinal: plan.newlyFinal,
      }),
    ).toBe(
      "recompute the newly final hours 2026-11-21T09:00:00.000Z .. 2026-11-21T10:00:00.000Z and the final buckets touched since the last run (final before 2026-11-21T10:00:00.000Z)",
    );
    expect(
      describeRollupAction({
        kind: "rollup_rebuild_batch",
        batch: range("2026-11-20T00:00:00Z", "2026-11-20T06:00:00Z"),
        keepExisting: true,
        hoursLeftAfter: 0,
      }),
    ).toBe(
      "rebuild 2026-11-20T00:00:00.000Z .. 2026-11-20T06:00:00.000Z (before the raw-data horizon: adding and updating only)",
    );
  });

  it("counts by the names run summaries use, leaving out what did not run", () => {
    expect(rollupActionCounts({ rollup_incremental: 1, rollup_rebuild_batch: 4 })).toEqual({
      incremental: 1,
      rebuild_batch: 4,
    });
    expect(rollupActionCounts({ rollup_incremental: 1 })).toEqual({ incremental: 1 });
    expect(rollupActionCounts({})).toEqual({});
  });
});
