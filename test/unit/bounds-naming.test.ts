import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type TablePolicy, TablePolicySchema } from "../../shared/config/policy.ts";
import { boundLiteral, parsePartitionBound } from "../../shared/partitions/bounds.ts";
import type { ChildPartition, DefaultBucket, TableCatalog } from "../../shared/partitions/catalog.ts";
import { assessHealth } from "../../shared/partitions/health.ts";
import {
  defaultNamingTemplate,
  partitionName,
  requiredPlaceholders,
} from "../../shared/partitions/naming.ts";
import {
  addIntervals,
  floorToInterval,
  INTERVALS,
  type PartitionInterval,
} from "../../shared/partitions/time.ts";

const range = (from: string, to: string) => `FOR VALUES FROM (${from}) TO (${to})`;

describe("parsePartitionBound (pg_get_expr output)", () => {
  it("timestamptz bounds as printed in a UTC session", () => {
    expect(
      parsePartitionBound("FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')"),
    ).toEqual({
      kind: "range",
      from: new Date("2026-11-01T00:00:00Z"),
      to: new Date("2026-12-01T00:00:00Z"),
    });
  });

  it("timestamp (without time zone) bounds are read as UTC", () => {
    expect(parsePartitionBound("FOR VALUES FROM ('2026-01-01 00:00:00') TO ('2026-02-01 00:00:00')")).toEqual(
      {
        kind: "range",
        from: new Date("2026-01-01T00:00:00Z"),
        to: new Date("2026-02-01T00:00:00Z"),
      },
    );
  });

  it("non-UTC offsets in the forms PostgreSQL prints them (+05:30, -03)", () => {
    const b = parsePartitionBound(range("'2026-11-01 05:30:00+05:30'", "'2026-11-30 21:00:00-03'"));
    expect(b).toEqual({
      kind: "range",
      from: new Date("2026-11-01T00:00:00Z"),
      to: new Date("2026-12-01T00:00:00Z"),
    });
    const c = parsePartitionBound(range("'2026-11-01 05:45:00+05:45'", "'2026-12-01 00:00:00+00'"));
    expect(c.kind === "range" && c.from).toEqual(new Date("2026-11-01T00:00:00Z"));
  });

  it("MINVALUE and MAXVALUE", () => {
    expect(parsePartitionBound("FOR VALUES FROM (MINVALUE) TO ('2026-01-01 00:00:00+00')")).toEqual({
      kind: "range",
      from: "MINVALUE",
      to: new Date("2026-01-01T00:00:00Z"),
    });
    expect(parsePartitionBound("FOR VALUES FROM ('2030-01-01 00:00:00+00') TO (MAXVALUE)")).toEqual({
      kind: "range",
      from: new Date("2030-01-01T00:00:00Z"),
      to: "MAXVALUE",
    });
  });

  it("microsecond fractions are kept to the millisecond and the bound is flagged inexact", () => {
    const b = parsePartitionBound(range("'2026-11-01 00:00:00.123456+00'", "'2026-11-01 00:00:00.9+00'"));
    expect(b).toEqual({
      kind: "range",
      from: new Date("2026-11-01T00:00:00.123Z"),
      to: new Date("2026-11-01T00:00:00.900Z"),
      inexact: "from",
    });
    // Which side: retention reads an inexact upper bound as ending a millisecond later.
    expect(
      parsePartitionBound(range("'2026-11-01 00:00:00+00'", "'2026-12-01 00:00:00.0005+00'")),
    ).toMatchObject({
      inexact: "to",
    });
    expect(
      parsePartitionBound(range("'2026-11-01 00:00:00.0001+00'", "'2026-12-01 00:00:00.0005+00'")),
    ).toMatchObject({ inexact: "both" });
    // Trailing zeros below the millisecond are exact.
    expect(
      parsePartitionBound(range("'2026-11-01 00:00:00.123000+00'", "'2026-12-01 00:00:00+00'")),
    ).not.toHaveProperty("inexact");
  });

  it("DEFAULT", () => {
    expect(parsePartitionBound("DEFAULT")).toEqual({ kind: "default" });
  });

  it("fractional seconds", () => {
    expect(
      parsePartitionBound("FOR VALUES FROM ('2026-11-01 00:00:00.5+00') TO ('2026-11-01 00:00:01.25+00')"),
    ).toEqual({
      kind: "range",
      from: new Date("2026-11-01T00:00:00.500Z"),
      to: new Date("2026-11-01T00:00:01.250Z"),
    });
  });

  it("bounds it cannot interpret are unsupported, with the original text", () => {
    for (const text of [
      "FOR VALUES IN ('eu', 'us')",
      "FOR VALUES WITH (modulus 4, remainder 0)",
      "FOR VALUES FROM ('2026-01-01 00:00:00+00', 1) TO ('2026-02-01 00:00:00+00', 1)",
      "FOR VALUES FROM (1000) TO (2000)",
      "FOR VALUES FROM ('-infinity') TO ('2026-01-01 00:00:00+00')",
      "FOR VALUES FROM ('2026-13-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')",
      "",
    ]) {
      expect(parsePartitionBound(text)).toEqual({ kind: "unsupported", text });
    }
  });
});

describe("boundLiteral", () => {
  it("writes an explicit UTC offset for timestamptz and none for timestamp", () => {
    const t = new Date("2026-11-01T00:00:00Z");
    expect(boundLiteral(t, "timestamptz")).toBe("2026-11-01 00:00:00.000+00");
    expect(boundLiteral(t, "timestamp")).toBe("2026-11-01 00:00:00.000");
  });

  it("round-trips through parsePartitionBound for both key types", () => {
    const instant = fc.date({
      min: new Date("1000-01-01T00:00:00Z"),
      max: new Date("9999-12-31T23:59:59.999Z"),
      noInvalidDate: true,
    });
    fc.assert(
      fc.property(
        instant,
        instant,
        fc.constantFrom("timestamptz", "timestamp") as fc.Arbitrary<"timestamptz" | "timestamp">,
        (a, b, keyType) => {
          const text = range(`'${boundLiteral(a, keyType)}'`, `'${boundLiteral(b, keyType)}'`);
          expect(parsePartitionBound(text)).toEqual({ kind: "range", from: a, to: b });
        },
      ),
    );
  });
});

describe("partitionName", () => {
  const T = "telemetry_points";

  it("renders the default template of every interval", () => {
    const cases: [PartitionInterval, string, string][] = [
      ["hourly", "2026-11-21T07:00:00Z", "telemetry_points_p2026112107"],
      ["daily", "2026-01-05T00:00:00Z", "telemetry_points_p20260105"],
      ["weekly", "2026-11-16T00:00:00Z", "telemetry_points_p2026w47"],
      ["monthly", "2026-11-01T00:00:00Z", "telemetry_points_p202611"],
      ["quarterly", "2026-10-01T00:00:00Z", "telemetry_points_p2026q4"],
      ["quarterly", "2027-01-01T00:00:00Z", "telemetry_points_p2027q1"],
      ["yearly", "2026-01-01T00:00:00Z", "telemetry_points_p2026"],
    ];
    for (const [iv, start, name] of cases) {
      expect([iv, partitionName(defaultNamingTemplate(iv), T, new Date(start))]).toEqual([iv, name]);
    }
  });

  it("weekly names use the ISO year and week, including week 53 and week 1 across year ends", () => {
    const weekly = defaultNamingTemplate("weekly");
    expect(partitionName(weekly, T, new Date("2026-12-28T00:00:00Z"))).toBe("telemetry_points_p2026w53");
    expect(partitionName(weekly, T, new Date("2027-01-04T00:00:00Z"))).toBe("telemetry_points_p2027w01");
    expect(partitionName(weekly, T, new Date("2020-12-28T00:00:00Z"))).toBe("telemetry_points_p2020w53");
    // Monday 2024-12-30 starts ISO week 1 of 2025, although its calendar year is 2024.
    expect(partitionName(weekly, T, new Date("2024-12-30T00:00:00Z"))).toBe("telemetry_points_p2025w01");
  });

  it("custom templates: {table}_y{YYYY}m{MM}, and every placeholder at once", () => {
    expect(partitionName("{table}_y{YYYY}m{MM}", T, new Date("2026-03-01T00:00:00Z"))).toBe(
      "telemetry_points_y2026m03",
    );
    expect(
      partitionName("{table}_{YYYY}_{MM}_{DD}_{HH}_q{Q}_{IYYY}w{WW}", "t", new Date("2027-01-01T05:00:00Z")),
    ).toBe("t_2027_01_01_05_q1_2026w53");
  });

  it("names are computed in UTC, whatever the machine's time zone", () => {
    const saved = process.env.TZ;
    process.env.TZ = "Asia/Kolkata"; // UTC+05:30: 23:00 UTC on Dec 31 is 04:30 on Jan 1 there
    try {
      expect(new Date(2026, 11, 31).getTimezoneOffset()).toBe(-330); // the zone change took effect
      expect(partitionName("{table}_p{YYYY}{MM}{DD}{HH}", T, new Date("2026-12-31T23:00:00Z"))).toBe(
        "telemetry_points_p2026123123",
      );
      expect(partitionName("{table}_p{IYYY}w{WW}", T, new Date("2026-12-27T23:00:00Z"))).toBe(
        "telemetry_points_p2026w52",
      );
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it("default templates contain the placeholders their interval requires", () => {
    for (const iv of INTERVALS) {
      for (const p of requiredPlaceholders(iv)) expect(defaultNamingTemplate(iv)).toContain(p);
    }
  });

  it("default templates give distinct names to consecutive intervals", () => {
    fc.assert(
      fc.property(
        fc.date({
          min: new Date("1990-01-01T00:00:00Z"),
          max: new Date("2100-01-01T00:00:00Z"),
          noInvalidDate: true,
        }),
        fc.constantFrom(...INTERVALS),
        (t, iv) => {
          const template = defaultNamingTemplate(iv);
          const names = new Set<string>();
          let cursor = floorToInterval(t, iv);
          for (let i = 0; i < 60; i++) {
            names.add(partitionName(template, T, cursor));
            cursor = addIntervals(cursor, iv, 1);
          }
          expect(names.size).toBe(60);
        },
      ),
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe("assessHealth", () => {
  const NOW = new Date("2026-11-21T10:00:00Z");
  const policy = (o: Record<string, unknown> = {}): TablePolicy =>
    TablePolicySchema.parse({ table: "telemetry_points", timeColumn: "recorded_at", ...o });

  function monthly(isoMonth: string): ChildPartition {
    const from = new Date(`${isoMonth}-01T00:00:00Z`);
    const to = addIntervals(from, "monthly", 1);
    return {
      schema: "public",
      name: partitionName("{table}_p{YYYY}{MM}", "telemetry_points", from),
      bound: { kind: "range", from, to },
      boundText: `FOR VALUES FROM ('${boundLiteral(from, "timestamptz")}') TO ('${boundLiteral(to, "timestamptz")}')`,
      rowEstimate: 100,
      bytes: 1000,
      detachPending: false,
    };
  }

  function catalog(children: ChildPartition[], buckets: DefaultBucket[] = [], nullKeyRows = 0): TableCatalog {
    return {
      table: { schema: "public", name: "telemetry_points" },
      oid: 1,
      keyColumn: "recorded_at",
      keyType: "timestamptz",
      children,
      defaultPartition: {
        schema: "public",
        name: "telemetry_points_default",
        bound: { kind: "default" },
        boundText: "DEFAULT",
        rowEstimate: 0,
        bytes: 500,
        detachPending: false,
      },
      defaultBuckets: buckets,
      defaultNullKeyRows: nullKeyRows,
      columns: ["recorded_at"],
    };
  }

  const ready = ["2026-11", "2026-12", "2027-01", "2027-02"];

  it("OK when the current interval and the premake buffer exist and DEFAULT is empty", () => {
    const h = assessHealth(policy(), catalog(ready.map(monthly)), NOW);
    expect(h.verdict).toBe("OK");
    expect(h.reasons).toEqual([]);
    expect(h).toMatchObject({
      table: "public.telemetry_points",
      partitions: 4,
      coveredFrom: "2026-11-01T00:00:00.000Z",
      coveredTo: "2027-03-01T00:00:00.000Z",
      futureBufferIntervals: 3,
      defaultRows: 0,
      missingIntervals: 0,
      totalBytes: 4500,
      totalRowsEstimate: 400,
    });
  });

  it("CRIT when the current interval has no partition, even if the future ones exist", () => {
    const h = assessHealth(policy(), catalog(["2026-12", "2027-01", "2027-02"].map(monthly)), NOW);
    expect(h.verdict).toBe("CRIT");
    expect(h.reasons[0]).toMatch(/^CRIT: no partition for the current monthly interval/);
    expect(h.futureBufferIntervals).toBe(0);
    expect(h.missingIntervals).toBe(1);
  });

  it("CRIT for an empty table", () => {
    const h = assessHealth(policy(), catalog([]), NOW);
    expect(h.verdict).toBe("CRIT");
    expect(h.coveredFrom).toBeNull();
    expect(h.coveredTo).toBeNull();
    expect(h.missingIntervals).toBe(4);
  });

  it("WARN when DEFAULT holds rows (dated or NULL-keyed)", () => {
    const dated = assessHealth(
      policy(),
      catalog(ready.map(monthly), [{ start: new Date("2027-06-01T00:00:00Z"), rows: 4 }]),
      NOW,
    );
    expect(dated.verdict).toBe("WARN");
    expect(dated.defaultRows).toBe(4);
    expect(dated.reasons).toContain("WARN: 4 rows in the DEFAULT partition");

    const nulls = assessHealth(policy(), catalog(ready.map(monthly), [], 2), NOW);
    expect(nulls.verdict).toBe("WARN");
    expect(nulls.defaultRows).toBe(2);
  });

  it("CRIT wins over WARN", () => {
    const h = assessHealth(
      policy(),
      catalog(["2026-12"].map(monthly), [{ start: new Date("2026-11-01T00:00:00Z"), rows: 9 }]),
      NOW,
    );
    expect(h.verdict).toBe("CRIT");
    expect(h.reasons.some((r) => r.startsWith("WARN: 9 rows in the DEFAULT"))).toBe(true);
  });

  it("DEFAULT rows of a past interval count as DEFAULT rows, not as a missing interval", () => {
    const h = assessHealth(
      policy(),
      catalog(ready.map(monthly), [{ start: new Date("2026-10-01T00:00:00Z"), rows: 3 }]),
      NOW,
    );
    expect(h.missingIntervals).toBe(0);
    expect(h.reasons).toEqual(["WARN: 3 rows in the DEFAULT partition"]);
  });

  it("WARN when the premade buffer is short", () => {
    const h = assessHealth(policy(), catalog(["2026-11", "2026-12"].map(monthly)), NOW);
    expect(h.verdict).toBe("WARN");
    expect(h.futureBufferIntervals).toBe(1);
    expect(h.missingIntervals).toBe(2);
  });

  it("WARN when the policy wants a DEFAULT partition and there is none", () => {
    const h = assessHealth(policy(), { ...catalog(ready.map(monthly)), defaultPartition: undefined }, NOW);
    expect(h.verdict).toBe("WARN");
    expect(h.reasons).toEqual(["WARN: no DEFAULT partition: out-of-range rows are rejected"]);
    const off = assessHealth(
      policy({ defaultPartition: false }),
      { ...catalog(ready.map(monthly)), defaultPartition: undefined },
      NOW,
    );
    expect(off.verdict).toBe("OK");
  });
});
