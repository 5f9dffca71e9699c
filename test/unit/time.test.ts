import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addIntervals,
  floorToInterval,
  INTERVALS,
  isoWeek,
  type PartitionInterval,
} from "../../shared/partitions/time.ts";

const instant = fc.date({
  min: new Date("1990-01-01T00:00:00Z"),
  max: new Date("2100-01-01T00:00:00Z"),
  noInvalidDate: true,
});
const interval = fc.constantFrom(...INTERVALS);

describe("floorToInterval / addIntervals (UTC)", () => {
  it("the floor contains the instant and the next boundary is after it", () => {
    fc.assert(
      fc.property(instant, interval, (t, iv) => {
        const start = floorToInterval(t, iv);
        const end = addIntervals(start, iv, 1);
        expect(start.getTime()).toBeLessThanOrEqual(t.getTime());
        expect(end.getTime()).toBeGreaterThan(t.getTime());
        expect(floorToInterval(start, iv).getTime()).toBe(start.getTime());
        expect(floorToInterval(end, iv).getTime()).toBe(end.getTime());
      }),
    );
  });

  it("consecutive intervals tile time with no gap and no overlap", () => {
    fc.assert(
      fc.property(instant, interval, fc.integer({ min: 1, max: 40 }), (t, iv, n) => {
        const start = floorToInterval(t, iv);
        let cursor = start;
        for (let i = 0; i < n; i++) {
          const next = addIntervals(cursor, iv, 1);
          expect(floorToInterval(new Date(next.getTime() - 1), iv).getTime()).toBe(cursor.getTime());
          cursor = next;
        }
        expect(cursor.getTime()).toBe(addIntervals(start, iv, n).getTime());
      }),
    );
  });

  it("boundaries match PostgreSQL date_trunc semantics in UTC", () => {
    const cases: [PartitionInterval, string, string, string][] = [
      ["hourly", "2026-12-31T23:59:59.999Z", "2026-12-31T23:00:00.000Z", "2027-01-01T00:00:00.000Z"],
      ["daily", "2028-02-29T12:00:00Z", "2028-02-29T00:00:00.000Z", "2028-03-01T00:00:00.000Z"],
      ["daily", "2027-02-28T23:00:00Z", "2027-02-28T00:00:00.000Z", "2027-03-01T00:00:00.000Z"],
      // 2026-11-21 is a Saturday; ISO weeks start on Monday 2026-11-16.
      ["weekly", "2026-11-21T00:00:00Z", "2026-11-16T00:00:00.000Z", "2026-11-23T00:00:00.000Z"],
      ["weekly", "2027-01-01T05:00:00Z", "2026-12-28T00:00:00.000Z", "2027-01-04T00:00:00.000Z"],
      ["monthly", "2026-11-21T00:00:00Z", "2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"],
      ["monthly", "2028-02-29T23:59:59Z", "2028-02-01T00:00:00.000Z", "2028-03-01T00:00:00.000Z"],
      ["monthly", "2026-12-31T23:59:59Z", "2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
      ["quarterly", "2026-11-21T00:00:00Z", "2026-10-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
      ["yearly", "2026-11-21T00:00:00Z", "2026-01-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
    ];
    for (const [iv, at, from, to] of cases) {
      const start = floorToInterval(new Date(at), iv);
      expect([iv, start.toISOString()]).toEqual([iv, from]);
      expect([iv, addIntervals(start, iv, 1).toISOString()]).toEqual([iv, to]);
    }
  });

  it("monthly arithmetic crosses year ends", () => {
    const nov = new Date("2026-11-01T00:00:00Z");
    expect(addIntervals(nov, "monthly", 3).toISOString()).toBe("2027-02-01T00:00:00.000Z");
    expect(addIntervals(nov, "monthly", -11).toISOString()).toBe("2025-12-01T00:00:00.000Z");
  });

  it("ISO week numbers (week 53 and week 1 across the year end)", () => {
    expect(isoWeek(new Date("2026-12-31T00:00:00Z"))).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(new Date("2027-01-04T00:00:00Z"))).toEqual({ year: 2027, week: 1 });
    expect(isoWeek(new Date("2024-12-30T00:00:00Z"))).toEqual({ year: 2025, week: 1 });
  });
});
