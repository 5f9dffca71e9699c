import { describe, expect, it } from "vitest";
import {
  approximateMs,
  formatDuration,
  parseDuration,
  subtractDuration,
} from "../../shared/config/duration.ts";

const at = (iso: string) => new Date(iso);

describe("parseDuration", () => {
  it("reads a whole number and a unit, singular or plural, any case, spaces around", () => {
    expect(parseDuration("90 days")).toEqual({ amount: 90, unit: "day" });
    expect(parseDuration("1 day")).toEqual({ amount: 1, unit: "day" });
    expect(parseDuration("24months")).toEqual({ amount: 24, unit: "month" });
    expect(parseDuration("  2 Years ")).toEqual({ amount: 2, unit: "year" });
    expect(parseDuration("3 WEEKS")).toEqual({ amount: 3, unit: "week" });
    expect(parseDuration("12 hours")).toEqual({ amount: 12, unit: "hour" });
    expect(parseDuration("999999 hours")).toEqual({ amount: 999999, unit: "hour" });
  });

  it("refuses anything else", () => {
    for (const text of [
      "",
      "days",
      "90",
      "x90 days",
      "90 days ago",
      "90 dayss",
      "1.5 days",
      "-1 day",
      "1000000 hours",
      "90 days!",
      "90 minutes",
    ])
      expect(parseDuration(text), text).toBeUndefined();
  });
});

describe("formatDuration", () => {
  it("says the unit in the singular for one, in the plural otherwise", () => {
    expect(formatDuration({ amount: 1, unit: "day" })).toBe("1 day");
    expect(formatDuration({ amount: 12, unit: "hour" })).toBe("12 hours");
    expect(formatDuration({ amount: 0, unit: "month" })).toBe("0 months");
  });
});

describe("subtractDuration (UTC)", () => {
  const t = at("2026-03-31T10:20:30.456Z");

  it("hours, days and weeks are fixed lengths", () => {
    expect(subtractDuration(t, { amount: 5, unit: "hour" })).toEqual(at("2026-03-31T05:20:30.456Z"));
    expect(subtractDuration(t, { amount: 2, unit: "day" })).toEqual(at("2026-03-29T10:20:30.456Z"));
    expect(subtractDuration(t, { amount: 2, unit: "week" })).toEqual(at("2026-03-17T10:20:30.456Z"));
  });

  it("months and years are calendar units; month ends clamp", () => {
    expect(subtractDuration(t, { amount: 1, unit: "month" })).toEqual(at("2026-02-28T10:20:30.456Z"));
    expect(subtractDuration(t, { amount: 3, unit: "month" })).toEqual(at("2025-12-31T10:20:30.456Z"));
    expect(subtractDuration(t, { amount: 14, unit: "month" })).toEqual(at("2025-01-31T10:20:30.456Z"));
    expect(subtractDuration(t, { amount: 1, unit: "year" })).toEqual(at("2025-03-31T10:20:30.456Z"));
    expect(subtractDuration(t, { amount: 2, unit: "year" })).toEqual(at("2024-03-31T10:20:30.456Z"));
    expect(subtractDuration(at("2028-02-29T00:00:00Z"), { amount: 1, unit: "year" })).toEqual(
      at("2027-02-28T00:00:00Z"),
    );
    expect(subtractDuration(at("2026-05-15T00:00:00Z"), { amount: 2, unit: "month" })).toEqual(
      at("2026-03-15T00:00:00Z"),
    );
  });
});

describe("approximateMs", () => {
  it("a day is 86.4e6 ms; a week 7 days, a month 28 days, a year 365 days", () => {
    const day = 86_400_000;
    expect(approximateMs({ amount: 3, unit: "hour" })).toBe(3 * 3_600_000);
    expect(approximateMs({ amount: 2, unit: "day" })).toBe(2 * day);
    expect(approximateMs({ amount: 2, unit: "week" })).toBe(14 * day);
    expect(approximateMs({ amount: 2, unit: "month" })).toBe(56 * day);
    expect(approximateMs({ amount: 2, unit: "year" })).toBe(730 * day);
  });
});
