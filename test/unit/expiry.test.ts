// The retention rule in one place: the cutoff, "is this range expired", the straddling test and the
// raw-data horizon rollups rely on; and boundRange, the one reading of a partition bound as a range.
import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import { boundRange } from "../../shared/partitions/bounds.ts";
import {
  cutoffAt,
  cutoffOrNone,
  isExpired,
  keepOf,
  rawDataHorizon,
  retentionCutoff,
  straddlesCutoff,
} from "../../shared/retention/expiry.ts";

const NOW = new Date("2026-03-31T10:30:00Z");
const withKeep = (keep: string) =>
  TablePolicySchema.parse({ table: "public.points", timeColumn: "ts", retention: { keep } });

describe("retention.keep is parsed once", () => {
  it("the policy carries the parsed window beside the text", () => {
    const policy = withKeep("1 month");
    expect(policy.retention?.keep).toBe("1 month");
    expect(policy.retention?.keepDuration).toEqual({ amount: 1, unit: "month" });
    expect(keepOf(policy)).toBe(policy.retention?.keepDuration);
  });
});

describe("the cutoff", () => {
  it("is now - keep in UTC, month ends clamped", () => {
    expect(cutoffAt({ amount: 1, unit: "month" }, NOW)).toEqual(new Date("2026-02-28T10:30:00Z"));
    expect(retentionCutoff(withKeep("2 days"), NOW)).toEqual(new Date("2026-03-29T10:30:00Z"));
  });

  it("is absent for a table without retention, and keepOf refuses it", () => {
    const none = TablePolicySchema.parse({ table: "public.points", timeColumn: "ts" });
    expect(cutoffOrNone(none, NOW)).toBeUndefined();
    expect(cutoffOrNone(withKeep("1 day"), NOW)).toEqual(new Date("2026-03-30T10:30:00Z"));
    expect(() => keepOf(none)).toThrow("public.points has no valid retention.keep");
  });
});

describe("isExpired and straddlesCutoff", () => {
  const cutoff = new Date("2026-02-01T00:00:00Z");
  it("a range ending at the cutoff is expired; one ending a millisecond later is not", () => {
    expect(isExpired(cutoff, cutoff)).toBe(true);
    expect(isExpired(new Date(cutoff.getTime() + 1), cutoff)).toBe(false);
  });

  it("a range straddles when it starts before the cutoff and ends after it", () => {
    const t = cutoff.getTime();
    expect(straddlesCutoff({ from: t - 1, to: t + 1 }, cutoff)).toBe(true);
    expect(straddlesCutoff({ from: Number.NEGATIVE_INFINITY, to: Number.POSITIVE_INFINITY }, cutoff)).toBe(
      true,
    );
    expect(straddlesCutoff({ from: t, to: t + 1 }, cutoff)).toBe(false);
    expect(straddlesCutoff({ from: t - 1, to: t }, cutoff)).toBe(false);
  });
});

describe("rawDataHorizon", () => {
  it("is the first whole hour at or after now - keep", () => {
    expect(rawDataHorizon({ amount: 1, unit: "day" }, NOW)).toEqual(new Date("2026-03-30T11:00:00Z"));
    const onTheHour = new Date("2026-03-31T10:00:00Z");
    expect(rawDataHorizon({ amount: 1, unit: "day" }, onTheHour)).toEqual(new Date("2026-03-30T10:00:00Z"));
  });
});

describe("boundRange", () => {
  it("reads MINVALUE and MAXVALUE as infinities, and nothing for DEFAULT or unread bounds", () => {
    const from = new Date("2026-01-01T00:00:00Z");
    expect(boundRange({ kind: "range", from, to: "MAXVALUE" })).toEqual({
      from: from.getTime(),
      to: Number.POSITIVE_INFINITY,
    });
    expect(boundRange({ kind: "range", from: "MINVALUE", to: from })).toEqual({
      from: Number.NEGATIVE_INFINITY,
      to: from.getTime(),
    });
    expect(boundRange({ kind: "default" })).toBeUndefined();
    expect(boundRange({ kind: "unsupported", text: "FOR VALUES IN (1)" })).toBeUndefined();
  });
});
