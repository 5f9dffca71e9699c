import { describe, expect, it } from "vitest";
import { nextBackfillBatch, planRollup, shardFromEnv, touchedScanRanges } from "../../shared/rollups/plan.ts";

const d = (iso: string) => new Date(iso);
const NOW = d("2026-11-21T10:20:00Z");

describe("planRollup", () => {
  it("first run: hours before floor(now) are final; the whole history is rebuilt, from its first hour", () => {
    const plan = planRollup({ now: NOW, watermark: undefined, earliestRow: d("2025-01-03T07:59:59Z") });
    expect(plan.finalBefore).toEqual(d("2026-11-21T10:00:00Z"));
    expect(plan.newlyFinal).toBeNull();
    expect(plan.startBackfill).toEqual({ from: d("2025-01-03T07:00:00Z"), to: d("2026-11-21T10:00:00Z") });
  });

  it("an empty table on a first run: nothing to rebuild", () => {
    expect(planRollup({ now: NOW, watermark: undefined, earliestRow: null }).startBackfill).toBeNull();
    // rows only in the open hour: nothing final yet
    expect(
      planRollup({ now: NOW, watermark: undefined, earliestRow: d("2026-11-21T10:05:00Z") }).startBackfill,
    ).toBeNull();
  });

  it("later runs recompute exactly the hours that became final since the last run", () => {
    const watermark = { finalBefore: d("2026-11-21T07:00:00Z"), backfillNext: null, backfillTo: null };
    const plan = planRollup({ now: NOW, watermark, earliestRow: null });
    expect(plan.newlyFinal).toEqual({ from: d("2026-11-21T07:00:00Z"), to: d("2026-11-21T10:00:00Z") });
    expect(plan.startBackfill).toBeNull();
    const same = planRollup({ now: d("2026-11-21T07:59:00Z"), watermark, earliestRow: null });
    expect(same.newlyFinal).toBeNull();
  });

  it("after an outage, only the last maxNewlyFinalHours are recomputed at once; the rest becomes rebuild work", () => {
    const watermark = { finalBefore: d("2026-11-11T10:00:00Z"), backfillNext: null, backfillTo: null };
    const plan = planRollup({ now: NOW, watermark, earliestRow: null, maxNewlyFinalHours: 24 });
    expect(plan.newlyFinal).toEqual({ from: d("2026-11-20T10:00:00Z"), to: d("2026-11-21T10:00:00Z") });
    expect(plan.startBackfill).toEqual({ from: d("2026-11-11T10:00:00Z"), to: d("2026-11-20T10:00:00Z") });
    const short = planRollup({
      now: NOW,
      watermark: { ...watermark, finalBefore: d("2026-11-21T07:00:00Z") },
      earliestRow: null,
      maxNewlyFinalHours: 24,
    });
    expect(short.startBackfill).toBeNull();
  });

  it("a clock that goes backwards never un-finalizes hours", () => {
    const watermark = { finalBefore: d("2026-11-21T12:00:00Z"), backfillNext: null, backfillTo: null };
    const plan = planRollup({ now: NOW, watermark, earliestRow: null });
    expect(plan.newlyFinal).toBeNull();
    expect(plan.finalBefore).toEqual(d("2026-11-21T12:00:00Z"));
  });

  it("after a stall longer than the raw keep, newly final hours start where the last run stopped", () => {
    // Those hours were never final (no rollup row to overwrite), and retention keeps their raw rows.
    const watermark = { finalBefore: d("2026-08-01T00:00:00Z"), backfillNext: null, backfillTo: null };
    const plan = planRollup({ now: NOW, watermark, earliestRow: null, rawKeep: { amount: 90, unit: "day" } });
    expect(plan.horizon).toEqual(d("2026-08-23T11:00:00Z")); // ceil(now - 90 days)
    expect(plan.newlyFinal?.from).toEqual(d("2026-08-01T00:00:00Z"));
  });

  it("--from/--to: whole hours, clipped to final hours; refused before the horizon or when empty", () => {
    const ok = planRollup({
      now: NOW,
      watermark: undefined,
      earliestRow: null,
      rebuild: { from: d("2026-11-20T03:30:00Z"), to: d("2026-11-22T00:00:00Z") },
    });
    expect(ok.refusals).toEqual([]);
    expect(ok.startBackfill).toEqual({ from: d("2026-11-20T03:00:00Z"), to: d("2026-11-21T10:00:00Z") });
    const early = planRollup({
      now: NOW,
      watermark: undefined,
      earliestRow: null,
      rawKeep: { amount: 30, unit: "day" },
      rebuild: { from: d("2026-01-01T00:00:00Z"), to: d("2026-02-01T00:00:00Z") },
    });
    expect(early.refusals.join()).toMatch(/before the raw-data horizon/);
    expect(early.startBackfill).toBeNull();
    const empty = planRollup({
      now: NOW,
      watermark: undefined,
      earliestRow: null,
      rebuild: { from: d("2026-11-21T10:00:00Z"), to: d("2026-11-21T11:00:00Z") },
    });
    expect(empty.refusals.join()).toMatch(/no complete hour/);
  });
});

describe("nextBackfillBatch", () => {
  it("whole-hour batches up to the end, then none", () => {
    const to = d("2026-01-02T05:00:00Z");
    expect(nextBackfillBatch(d("2026-01-01T00:00:00Z"), to, 24)).toEqual({
      from: d("2026-01-01T00:00:00Z"),
      to: d("2026-01-02T00:00:00Z"),
    });
    expect(nextBackfillBatch(d("2026-01-02T00:00:00Z"), to, 24)).toEqual({
      from: d("2026-01-02T00:00:00Z"),
      to,
    });
    expect(nextBackfillBatch(to, to, 24)).toBeNull();
  });
});

describe("shardFromEnv", () => {
  it("reads Cloud Run's task count and index, and rejects nonsense", () => {
    expect(shardFromEnv({})).toEqual({ count: 1, index: 0 });
    expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: "4", CLOUD_RUN_TASK_INDEX: "3" })).toEqual({
      count: 4,
      index: 3,
    });
    expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: "4", CLOUD_RUN_TASK_INDEX: "4" })).toMatch(
      /CLOUD_RUN_TASK_INDEX/,
    );
    expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: "0" })).toMatch(/CLOUD_RUN_TASK_COUNT/);
    expect(shardFromEnv({ CLOUD_RUN_TASK_COUNT: "2x" })).toMatch(/CLOUD_RUN_TASK_COUNT/);
  });
});

describe("touchedScanRanges", () => {
  it("final hours from the horizon, minus what is recomputed whole", () => {
    const r = touchedScanRanges(d("2026-01-01T00:00:00Z"), d("2026-03-01T00:00:00Z"), [
      { from: d("2026-02-28T20:00:00Z"), to: d("2026-03-01T00:00:00Z") },
      { from: d("2026-01-10T00:00:00Z"), to: d("2026-01-20T00:00:00Z") },
    ]);
    expect(r).toEqual([
      { from: d("2026-01-01T00:00:00Z"), to: d("2026-01-10T00:00:00Z") },
      { from: d("2026-01-20T00:00:00Z"), to: d("2026-02-28T20:00:00Z") },
    ]);
    expect(touchedScanRanges(null, d("2026-03-01T00:00:00Z"), [])[0]?.from).toEqual(
      d("0001-01-01T00:00:00Z"),
    );
    expect(
      touchedScanRanges(d("2026-01-01T00:00:00Z"), d("2026-03-01T00:00:00Z"), [
        { from: d("2025-01-01T00:00:00Z"), to: d("2027-01-01T00:00:00Z") },
      ]),
    ).toEqual([]);
  });
});
