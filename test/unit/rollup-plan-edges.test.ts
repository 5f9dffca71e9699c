// planRollup, touchedScanRanges and shardFromEnv at their boundaries: equal instants, ranges that
// touch without overlapping, a rebuild merged with the overflow of an outage, malformed task env.
import { describe, expect, it } from "vitest";
import { planRollup, shardFromEnv, touchedScanRanges } from "../../shared/rollups/plan.ts";

const t = (iso: string) => new Date(`2026-06-01T${iso}:00:00Z`);
const d = (iso: string) => new Date(iso);
const wm = (finalBefore: Date, backfill: [Date, Date] | null = null) => ({
  finalBefore,
  backfillNext: backfill?.[0] ?? null,
  backfillTo: backfill?.[1] ?? null,
});

describe("planRollup: newly final hours", () => {
  it("none when the saved finalBefore is the current one", () => {
    const p = planRollup({ now: d("2026-06-01T10:30:00Z"), watermark: wm(t("10")), earliestRow: null });
    expect(p).toEqual({
      newlyFinal: null,
      finalBefore: t("10"),
      horizon: null,
      startBackfill: null,
      refusals: [],
    });
  });

  it("newly final hours start where the last run stopped, before the raw-data horizon too", () => {
    const now = d("2026-06-03T10:30:00Z");
    const stalled = planRollup({
      now,
      watermark: wm(d("2026-06-01T00:00:00Z")),
      earliestRow: null,
      rawKeep: { amount: 1, unit: "day" },
    });
    expect(stalled.horizon).toEqual(d("2026-06-02T11:00:00Z"));
    expect(stalled.newlyFinal).toEqual({ from: d("2026-06-01T00:00:00Z"), to: d("2026-06-03T10:00:00Z") });
    const recent = planRollup({
      now,
      watermark: wm(d("2026-06-03T08:00:00Z")),
      earliestRow: null,
      rawKeep: { amount: 1, unit: "day" },
    });
    expect(recent.newlyFinal).toEqual({ from: d("2026-06-03T08:00:00Z"), to: d("2026-06-03T10:00:00Z") });
  });

  it("the horizon is now minus the keep, rounded up to the hour", () => {
    const p = planRollup({
      now: d("2026-06-01T10:00:00Z"),
      watermark: wm(t("05")),
      earliestRow: null,
      rawKeep: { amount: 1, unit: "hour" },
    });
    expect(p.horizon).toEqual(t("09"));
    expect(p.newlyFinal).toEqual({ from: t("05"), to: t("10") });
    const odd = planRollup({
      now: d("2026-06-02T10:20:00Z"),
      watermark: wm(t("10")),
      earliestRow: null,
      rawKeep: { amount: 1, unit: "day" },
    });
    expect(odd.horizon).toEqual(t("11"));
  });

  it("exactly maxNewlyFinalHours newly final hours stay in the incremental step; one more overflows", () => {
    const exact = planRollup({
      now: d("2026-06-01T10:30:00Z"),
      watermark: wm(t("04")),
      earliestRow: null,
      maxNewlyFinalHours: 6,
    });
    expect(exact.newlyFinal).toEqual({ from: t("04"), to: t("10") });
    expect(exact.finalBefore).toEqual(t("10"));
    expect(exact.startBackfill).toBeNull();
    const over = planRollup({
      now: d("2026-06-01T10:30:00Z"),
      watermark: wm(t("03")),
      earliestRow: null,
      maxNewlyFinalHours: 6,
    });
    expect(over.newlyFinal).toEqual({ from: t("04"), to: t("10") });
    expect(over.startBackfill).toEqual({ from: t("03"), to: t("04") });
    const unlimited = planRollup({
      now: d("2026-06-01T10:30:00Z"),
      watermark: wm(t("03")),
      earliestRow: null,
    });
    expect(unlimited.newlyFinal).toEqual({ from: t("03"), to: t("10") });
    expect(unlimited.startBackfill).toBeNull();
  });

  it("an outage's overflow and an explicit rebuild become one rebuild covering both", () => {
    const inside = planRollup({
      now: d("2026-06-01T10:30:00Z"),
      watermark: wm(t("02")),
      earliestRow: null,
      maxNewlyFinalHours: 2,
      rebuild: { from: t("00"), to: t("05") },
    });
    expect(inside.newlyFinal).toEqual({ from: t("08"), to: t("10") });
    expect(inside.startBackfill).toEqual({ from: t("00"), to: t("08") });
    const around = planRollup({
      now: d("2026-06-01T10:30:00Z"),
      watermark: wm(t("02")),
      earliestRow: null,
      maxNewlyFinalHours: 2,
      rebuild: { from: t("03"), to: t("09") },
    });
    expect(around.startBackfill).toEqual({ from: t("02"), to: t("09") });
    const refused = planRollup({
      now: d("2026-06-01T10:30:00Z"),
      watermark: wm(t("02")),
      earliestRow: null,
      maxNewlyFinalHours: 2,
      rebuild: { from: t("11"), to: t("12") },
    });
    expect(refused.refusals).toHaveLength(1);
    expect(refused.startBackfill).toBeNull();
  });
});

describe("planRollup: --from/--to", () => {
  it("a --to at finalBefore or later is clipped to it; one before it is kept (ceiled to the hour)", () => {
    const base = { now: d("2026-06-01T10:30:00Z"), watermark: wm(t("10")), earliestRow: null };
    expect(planRollup({ ...base, rebuild: { from: t("02"), to: t("10") } }).startBackfill).toEqual({
      from: t("02"),
      to: t("10"),
    });
    expect(planRollup({ ...base, rebuild: { from: t("02"), to: t("11") } }).startBackfill).toEqual({
      from: t("02"),
      to: t("10"),
    });
    expect(
      planRollup({ ...base, rebuild: { from: t("02"), to: d("2026-06-01T06:10:00Z") } }).startBackfill,
    ).toEqual({ from: t("02"), to: t("07") });
  });

  it("a --from exactly at the horizon is allowed", () => {
    const p = planRollup({
      now: d("2026-06-02T10:00:00Z"),
      watermark: wm(d("2026-06-02T10:00:00Z")),
      earliestRow: null,
      rawKeep: { amount: 1, unit: "day" },
      rebuild: { from: t("10"), to: t("12") },
    });
    expect(p.refusals).toEqual([]);
    expect(p.startBackfill).toEqual({ from: t("10"), to: t("12") });
  });
});

describe("touchedScanRanges", () => {
  it("an excluded range that only touches a scanned range leaves it whole", () => {
    const before = touchedScanRanges(t("04"), t("10"), [{ from: t("01"), to: t("04") }]);
    expect(before).toEqual([{ from: t("04"), to: t("10") }]);
    const after = touchedScanRanges(t("04"), t("10"), [{ from: t("10"), to: t("12") }]);
    expect(after).toEqual([{ from: t("04"), to: t("10") }]);
  });

  it("an excluded range sharing an end with the scanned one leaves no empty piece", () => {
    expect(touchedScanRanges(t("04"), t("10"), [{ from: t("04"), to: t("06") }])).toEqual([
      { from: t("06"), to: t("10") },
    ]);
    expect(touchedScanRanges(t("04"), t("10"), [{ from: t("08"), to: t("10") }])).toEqual([
      { from: t("04"), to: t("08") },
    ]);
    expect(touchedScanRanges(t("04"), t("10"), [{ from: t("04"), to: t("10") }])).toEqual([]);
  });

  it("pieces come sorted whatever the order of the exclusions; no horizon scans from the year 1", () => {
    expect(
      touchedScanRanges(null, t("10"), [
        { from: t("07"), to: t("08") },
        { from: t("02"), to: t("03") },
      ]),
    ).toEqual([
      { from: d("0001-01-01T00:00:00Z"), to: t("02") },
      { from: t("03"), to: t("07") },
      { from: t("08"), to: t("10") },
    ]);
    expect(touchedScanRanges(t("10"), t("10"), [])).toEqual([]);
  });
});

describe("shardFromEnv: malformed values", () => {
  it("count and index must be plain whole numbers; count at most 10000", () => {
    expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: "10000", CLOUD_RUN_TASK_INDEX: "9999" })).toEqual({
      count: 10000,
      index: 9999,
    });
    expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: "12", CLOUD_RUN_TASK_INDEX: "11" })).toEqual({
      count: 12,
      index: 11,
    });
    for (const count of ["10001", "x2", "2x", "1e1", " 2", "0", "-1", "99999999999999999"])
      expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: count }), count).toBe(
        `CLOUD_RUN_TASK_COUNT must be a whole number from 1 to 10000, got "${count}"`,
      );
    for (const index of ["x1", "1x", "1e0", "-0", "0.0"])
      expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: "12", CLOUD_RUN_TASK_INDEX: index }), index).toBe(
        `CLOUD_RUN_TASK_INDEX must be a whole number below CLOUD_RUN_TASK_COUNT (12), got "${index}"`,
      );
  });
});
