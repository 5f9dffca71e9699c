// The partition planner, bounds, naming, interval arithmetic and health at their edges: exact
// findings (severity and message), boundaries such as a child ending exactly at the retention
// cutoff or exactly MAX_CREATES_PER_RUN creates, MAXVALUE and unsupported bounds.
import { describe, expect, it } from "vitest";
import { type TablePolicy, TablePolicySchema } from "../../shared/config/policy.ts";
import { type BoundValue, parsePartitionBound } from "../../shared/partitions/bounds.ts";
import type { ChildPartition, DefaultBucket, TableCatalog } from "../../shared/partitions/catalog.ts";
import { assessHealth } from "../../shared/partitions/health.ts";
import {
  DEFAULT_PARTITION_MARKER,
  partitionName,
  requiredPlaceholders,
} from "../../shared/partitions/naming.ts";
import {
  MAX_CREATES_PER_RUN,
  MAX_GAP_SCAN_INTERVALS,
  type PartitionPlan,
  planPartitions,
} from "../../shared/partitions/plan.ts";
import {
  addIntervals,
  assertNever,
  floorToInterval,
  type PartitionInterval,
} from "../../shared/partitions/time.ts";

const TABLE = "telemetry_points";
const NOW = new Date("2026-11-21T10:00:00Z");
const utc = (iso: string) => new Date(iso);

function policy(overrides: Record<string, unknown> = {}): TablePolicy {
  return TablePolicySchema.parse({ table: TABLE, timeColumn: "ts", ...overrides });
}

function child(
  name: string,
  from: BoundValue,
  to: BoundValue,
  extra: Partial<ChildPartition> = {},
): ChildPartition {
  return {
    schema: "public",
    name,
    bound: { kind: "range", from, to },
    boundText: `FOR VALUES FROM (${String(from instanceof Date ? from.toISOString() : from)}) TO (${String(to instanceof Date ? to.toISOString() : to)})`,
    rowEstimate: 10,
    bytes: 100,
    detachPending: false,
    ...extra,
  };
}

function aligned(interval: PartitionInterval, start: Date): ChildPartition {
  return child(
    partitionName(policy({ interval }).naming, TABLE, start),
    start,
    addIntervals(start, interval, 1),
  );
}
const month = (m: string) => aligned("monthly", utc(`${m}-01T00:00:00Z`));

function catalog(
  children: ChildPartition[],
  buckets: DefaultBucket[] = [],
  withDefault = true,
): TableCatalog {
  return {
    table: { schema: "public", name: TABLE },
    oid: 1,
    keyColumn: "ts",
    keyType: "timestamptz",
    children,
    defaultPartition: withDefault
      ? {
          schema: "public",
          name: `${TABLE}_default`,
          bound: { kind: "default" },
          boundText: "DEFAULT",
          rowEstimate: 0,
          bytes: 50,
          detachPending: false,
        }
      : undefined,
    defaultBuckets: buckets,
    defaultNullKeyRows: 0,
    columns: ["ts"],
  };
}

const creates = (p: PartitionPlan) =>
  p.actions.flatMap((a) => (a.kind === "create_partition" ? [`${a.partition} ${a.reason}`] : []));
const ready = ["2026-11", "2026-12", "2027-01", "2027-02"].map(month);

describe("planPartitions: findings, exactly", () => {
  it("unsupported bound and pending detach are warnings naming the child", () => {
    const odd: ChildPartition = {
      ...month("2025-01"),
      name: "odd",
      bound: { kind: "unsupported", text: "FOR VALUES IN (1)" },
      boundText: "FOR VALUES IN (1)",
    };
    const pending = { ...month("2025-02"), detachPending: true };
    const p = planPartitions(policy(), catalog([...ready, odd, pending]), NOW);
    expect(p.findings).toEqual([
      {
        severity: "warn",
        code: "unsupported_bound",
        partition: "odd",
        message: "odd has a bound this tool does not interpret (FOR VALUES IN (1)); left untouched",
      },
      expect.objectContaining({
        severity: "warn",
        code: "detach_pending",
        partition: "telemetry_points_p202502",
      }),
    ]);
  });

  it("a child one interval long that starts mid-interval is misaligned; a historical child is info", () => {
    const shifted = child("shifted", utc("2026-10-15T00:00:00Z"), utc("2026-11-15T00:00:00Z"));
    const p = planPartitions(policy(), catalog([shifted]), NOW);
    expect(p.findings).toContainEqual({
      severity: "warn",
      code: "misaligned_child",
      partition: "shifted",
      message: `shifted (${shifted.boundText}) is not one monthly interval; left untouched, and nothing is created over its range`,
    });
    const halfDay = child("half", utc("2026-11-19T12:00:00Z"), utc("2026-11-20T12:00:00Z"));
    const daily = planPartitions(policy({ interval: "daily" }), catalog([halfDay]), NOW);
    expect(daily.findings.filter((f) => f.code === "misaligned_child").map((f) => f.partition)).toEqual([
      "half",
    ]);
    const hist = child("hist", "MINVALUE", utc("2026-11-01T00:00:00Z"));
    const h = planPartitions(policy(), catalog([hist, ...ready]), NOW);
    expect(h.findings).toEqual([
      {
        severity: "info",
        code: "historical_child",
        partition: "hist",
        message:
          "hist holds everything before 2026-11-01T00:00:00.000Z (a historical partition); retention drops it whole once that is past the cutoff",
      },
    ]);
  });

  it("a child open to MAXVALUE covers every later interval: nothing is created there", () => {
    const open = child("open", utc("2026-12-01T00:00:00Z"), "MAXVALUE");
    const p = planPartitions(policy(), catalog([month("2026-11"), open]), NOW);
    expect(creates(p)).toEqual([]);
    expect(p.findings.map((f) => f.code)).toEqual([
      "misaligned_child",
      "range_conflict",
      "range_conflict",
      "range_conflict",
    ]);
  });

  it("a gap over a misaligned child is left alone silently; a premade interval over it is a range conflict", () => {
    const twoMonths = child("two", utc("2026-08-01T00:00:00Z"), utc("2026-10-01T00:00:00Z"));
    const gapOnly = planPartitions(policy(), catalog([month("2026-07"), twoMonths, ...ready]), NOW);
    expect(gapOnly.findings.map((f) => f.code)).toEqual(["misaligned_child"]);
    expect(creates(gapOnly)).toEqual(["telemetry_points_p202610 gap"]);
    const overPremake = child("over", utc("2026-12-15T00:00:00Z"), utc("2027-01-15T00:00:00Z"));
    const conflict = planPartitions(
      policy(),
      catalog([month("2026-11"), overPremake, month("2027-02")]),
      NOW,
    );
    expect(conflict.findings.filter((f) => f.code === "range_conflict")).toEqual([
      {
        severity: "warn",
        code: "range_conflict",
        partition: "telemetry_points_p202612",
        message:
          "cannot create telemetry_points_p202612 [2026-12-01T00:00:00.000Z, 2027-01-01T00:00:00.000Z): it overlaps over",
      },
      {
        severity: "warn",
        code: "range_conflict",
        partition: "telemetry_points_p202701",
        message:
          "cannot create telemetry_points_p202701 [2027-01-01T00:00:00.000Z, 2027-02-01T00:00:00.000Z): it overlaps over",
      },
    ]);
  });

  it("DEFAULT rows over two overlapping children name both", () => {
    const a = child("a", utc("2026-06-10T00:00:00Z"), utc("2026-06-20T00:00:00Z"));
    const b = child("b", utc("2026-06-20T00:00:00Z"), utc("2026-07-10T00:00:00Z"));
    const p = planPartitions(
      policy(),
      catalog([a, b, ...ready], [{ start: utc("2026-06-01T00:00:00Z"), rows: 3 }]),
      NOW,
    );
    expect(p.findings.map((f) => f.code)).toEqual(["misaligned_child", "misaligned_child", "range_conflict"]); // not "beyond premake"
    expect(p.findings.find((f) => f.partition === "telemetry_points_p202606")?.message).toBe(
      "cannot create telemetry_points_p202606 [2026-06-01T00:00:00.000Z, 2026-07-01T00:00:00.000Z): it overlaps a, b",
    );
  });

  it("a taken name is a warning naming the holder's bound", () => {
    const squatter = child(
      "telemetry_points_p202612",
      utc("2030-01-01T00:00:00Z"),
      utc("2030-02-01T00:00:00Z"),
    );
    const p = planPartitions(policy(), catalog([month("2026-11"), squatter]), NOW);
    expect(p.findings.find((f) => f.code === "name_conflict")).toEqual({
      severity: "warn",
      code: "name_conflict",
      partition: "telemetry_points_p202612",
      message: `cannot create [2026-12-01T00:00:00.000Z, 2027-01-01T00:00:00.000Z) as telemetry_points_p202612: that name is taken by a partition with ${squatter.boundText}`,
    });
  });

  it("NULL keys in DEFAULT are a warning; expired DEFAULT rows are info", () => {
    const nulls = { ...catalog(ready), defaultNullKeyRows: 4 };
    expect(planPartitions(policy(), nulls, NOW).findings).toEqual([
      {
        severity: "warn",
        code: "default_null_keys",
        message: "4 rows in the DEFAULT partition have a NULL ts; no range partition can hold them",
      },
    ]);
    const old = catalog(ready, [{ start: utc("2026-01-01T00:00:00Z"), rows: 2 }]);
    expect(planPartitions(policy({ retention: { keep: "6 months" } }), old, NOW).findings).toEqual([
      {
        severity: "info",
        code: "default_rows_expired",
        message:
          "2 rows in the DEFAULT partition are older than the retention cutoff 2026-05-21T10:00:00.000Z: no partition is made for them; retention deletes them",
      },
    ]);
  });
});

describe("planPartitions: the retention cutoff", () => {
  it("an interval ending exactly at the cutoff is expired: its DEFAULT rows stay for retention", () => {
    const now = utc("2026-03-01T00:00:00Z"); // keep 1 month: cutoff 2026-02-01, the end of January
    const p = planPartitions(
      policy({ retention: { keep: "1 month" } }),
      catalog([month("2026-02"), month("2026-03")], [{ start: utc("2026-01-31T23:00:00Z"), rows: 1 }]),
      now,
    );
    expect(creates(p)).toEqual([
      "telemetry_points_p202604 premake",
      "telemetry_points_p202605 premake",
      "telemetry_points_p202606 premake",
    ]);
    expect(p.findings.map((f) => f.code)).toEqual(["default_rows_expired"]);
  });

  it("holes between expired children are not filled", () => {
    const p = planPartitions(
      policy({ retention: { keep: "6 months" } }),
      catalog([month("2025-01"), month("2025-03"), month("2026-06"), ...ready]),
      NOW,
    );
    expect(creates(p).filter((c) => c.includes("2025"))).toEqual([]);
    expect(creates(p)).toContain("telemetry_points_p202605 gap");
  });
});

describe("planPartitions: limits", () => {
  const hourly = (overrides: Record<string, unknown> = {}) =>
    policy({ interval: "hourly", premake: 3, ...overrides });
  const current = floorToInterval(NOW, "hourly");

  it(`a span of exactly ${MAX_GAP_SCAN_INTERVALS} intervals is walked; one more is reported`, () => {
    const walk = (back: number) =>
      planPartitions(hourly(), catalog([aligned("hourly", addIntervals(current, "hourly", -back))]), NOW);
    const walked = walk(MAX_GAP_SCAN_INTERVALS - 4);
    expect(walked.findings.map((f) => f.code)).toEqual(["creation_capped"]);
    const tooLong = walk(MAX_GAP_SCAN_INTERVALS - 3);
    expect(tooLong.findings.map((f) => f.code)).toEqual(["gap_span_too_large"]);
    expect(tooLong.findings[0]).toEqual({
      severity: "warn",
      code: "gap_span_too_large",
      message: `the partitions span more than ${MAX_GAP_SCAN_INTERVALS} hourly intervals (${addIntervals(current, "hourly", 3 - MAX_GAP_SCAN_INTERVALS).toISOString()} to ${addIntervals(current, "hourly", 3).toISOString()}); gaps were not filled`,
    });
  });

  it(`exactly ${MAX_CREATES_PER_RUN} creates are not capped; more are, with or without DEFAULT rows`, () => {
    const back = (n: number) => aligned("hourly", addIntervals(current, "hourly", -n));
    // the current hour + 3 premade + the gap hours up to a child `n` hours back
    const exact = planPartitions(hourly(), catalog([back(MAX_CREATES_PER_RUN - 3)]), NOW);
    expect(exact.actions).toHaveLength(MAX_CREATES_PER_RUN);
    expect(exact.findings).toEqual([]);
    const over = planPartitions(hourly(), catalog([back(MAX_CREATES_PER_RUN + 7)]), NOW);
    expect(over.actions).toHaveLength(MAX_CREATES_PER_RUN);
    expect(over.findings).toEqual([
      {
        severity: "warn",
        code: "creation_capped",
        message: `${MAX_CREATES_PER_RUN + 10} partitions are needed; this run creates the ${MAX_CREATES_PER_RUN} most urgent and later runs continue`,
      },
    ]);
    const withRows = planPartitions(
      hourly(),
      catalog([back(MAX_CREATES_PER_RUN + 7)], [{ start: addIntervals(current, "hourly", -50), rows: 1 }]),
      NOW,
    );
    expect(withRows.findings[0]?.message).toBe(
      `${MAX_CREATES_PER_RUN + 10} partitions are needed; this run creates the ${MAX_CREATES_PER_RUN} most urgent and later runs continue (the oldest row in DEFAULT is from ${addIntervals(current, "hourly", -50).toISOString()}: if that is a bad device clock, delete it rather than partition back to it)`,
    );
  });
});

describe("planPartitions: DEFAULT rows beyond the premake horizon", () => {
  it("are reported unless an existing child starts at their interval; rows in a premade interval are not", () => {
    const far = utc("2027-06-01T00:00:00Z");
    const farther = utc("2027-09-01T00:00:00Z");
    const buckets = [
      { start: utc("2027-02-10T00:00:00Z"), rows: 1 }, // the last premade month: created now
      { start: far, rows: 2 },
      { start: farther, rows: 5 },
    ];
    const later = child("later", utc("2027-12-15T00:00:00Z"), "MAXVALUE"); // after the rows: takes none of them
    const p = planPartitions(
      policy(),
      catalog([month("2026-11"), aligned("monthly", far), later], buckets),
      NOW,
    );
    expect(p.findings).toEqual([
      expect.objectContaining({ code: "misaligned_child", partition: "later" }),
      {
        severity: "warn",
        code: "default_rows_beyond_horizon",
        message:
          "5 rows in the DEFAULT partition are dated after 2027-03-01T00:00:00.000Z (beyond premake; device clock skew?); they stay there until their interval is premade",
      },
    ]);
    const inside = child("inside", utc("2027-08-15T00:00:00Z"), utc("2027-09-15T00:00:00Z"));
    const covered = planPartitions(
      policy(),
      catalog([month("2026-11"), inside], [{ start: farther, rows: 5 }]),
      NOW,
    );
    expect(covered.findings.map((f) => f.code)).toEqual(["misaligned_child"]);
    // The last premade month overlapped by a child that starts mid-month: a conflict, its rows stay.
    const midFeb = child("midfeb", utc("2027-02-15T00:00:00Z"), utc("2027-03-15T00:00:00Z"));
    const conflicted = planPartitions(
      policy(),
      catalog(
        [month("2026-11"), month("2026-12"), month("2027-01"), midFeb],
        [{ start: utc("2027-02-01T00:00:00Z"), rows: 2 }],
      ),
      NOW,
    );
    expect(conflicted.findings.map((f) => f.code)).toEqual(["misaligned_child", "range_conflict"]);
  });
});

describe("parsePartitionBound: forms and anchors", () => {
  const range = (from: string, to: string) => `FOR VALUES FROM (${from}) TO (${to})`;

  it("date-only literals, casts, offsets without a colon, spaces inside the parentheses", () => {
    expect(parsePartitionBound(range("'2026-01-01'", "'2026-02-01'"))).toEqual({
      kind: "range",
      from: utc("2026-01-01T00:00:00Z"),
      to: utc("2026-02-01T00:00:00Z"),
    });
    expect(
      parsePartitionBound(
        range("'2026-01-01 00:00:00'::timestamp without time zone", "'2026-02-01 05:30:00+0530'"),
      ),
    ).toEqual({ kind: "range", from: utc("2026-01-01T00:00:00Z"), to: utc("2026-02-01T00:00:00Z") });
    expect(parsePartitionBound(range(" MINVALUE ", " '2026-02-01 00:00:00+00' "))).toEqual({
      kind: "range",
      from: "MINVALUE",
      to: utc("2026-02-01T00:00:00Z"),
    });
  });

  it("anything around the bound, or one side it cannot read, makes it unsupported", () => {
    for (const text of [
      `x${range("'2026-01-01'", "'2026-02-01'")}`,
      `${range("'2026-01-01'", "'2026-02-01'")} x`,
      range("x'2026-01-01'", "'2026-02-01'"),
      range("'2026-01-01'x", "'2026-02-01'"),
      range("'2026-01-01'::Timestamp", "'2026-02-01'"),
      range("'2026-01-01'::", "'2026-02-01'"),
      range("'2026-01-01'", "'2026-02-31x'"),
      range("'2026-01-01'", "'2026-13-01'"),
    ])
      expect(parsePartitionBound(text), text).toEqual({ kind: "unsupported", text });
  });

  it("a bound without an offset is UTC whatever the process time zone", () => {
    const saved = process.env.TZ;
    process.env.TZ = "America/New_York";
    try {
      expect(new Date(2026, 0, 1).getTimezoneOffset()).toBe(300);
      expect(parsePartitionBound(range("'2026-01-01 00:00:00'", "'2026-02-01'"))).toEqual({
        kind: "range",
        from: utc("2026-01-01T00:00:00Z"),
        to: utc("2026-02-01T00:00:00Z"),
      });
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});

describe("naming and interval arithmetic", () => {
  it("required placeholders per interval", () => {
    expect(requiredPlaceholders("hourly")).toEqual(["{YYYY}", "{MM}", "{DD}", "{HH}"]);
    expect(requiredPlaceholders("daily")).toEqual(["{YYYY}", "{MM}", "{DD}"]);
    expect(requiredPlaceholders("weekly")).toEqual(["{IYYY}", "{WW}"]);
    expect(requiredPlaceholders("monthly")).toEqual(["{YYYY}", "{MM}"]);
    expect(requiredPlaceholders("quarterly")).toEqual(["{YYYY}", "{Q}"]);
    expect(requiredPlaceholders("yearly")).toEqual(["{YYYY}"]);
  });

  it("the DEFAULT partition marker (a comment other versions read) is fixed text", () => {
    expect(DEFAULT_PARTITION_MARKER).toBe("telemetry-jobs: DEFAULT partition");
  });

  it("invalid dates and impossible intervals throw", () => {
    expect(() => floorToInterval(new Date(Number.NaN), "daily")).toThrow(
      new RangeError("floorToInterval: invalid date"),
    );
    expect(() => floorToInterval(NOW, "fortnightly" as PartitionInterval)).toThrow(
      "unexpected value: fortnightly",
    );
    expect(() => addIntervals(NOW, "fortnightly" as PartitionInterval, 1)).toThrow(
      "unexpected value: fortnightly",
    );
    expect(() => assertNever("x" as never)).toThrow("unexpected value: x");
  });
});

describe("assessHealth: edges", () => {
  it("CRIT stays CRIT when warnings follow", () => {
    const h = assessHealth(policy(), catalog([], [{ start: utc("2026-11-02T00:00:00Z"), rows: 3 }]), NOW);
    expect(h.verdict).toBe("CRIT");
    expect(h.reasons).toEqual([
      "CRIT: no partition for the current monthly interval: new rows go to DEFAULT or fail",
      "WARN: 3 rows in the DEFAULT partition",
      "WARN: 4 interval(s) missing a partition (gaps or premake)",
    ]);
  });

  it("the premade buffer: below two is 'only N', below premake is 'N of M'", () => {
    const one = assessHealth(policy(), catalog(ready.slice(0, 2)), NOW);
    expect(one.reasons).toEqual([
      "WARN: only 1 future partition(s) ready (premake 3)",
      "WARN: 2 interval(s) missing a partition (gaps or premake)",
    ]);
    const two = assessHealth(policy(), catalog(ready.slice(0, 3)), NOW);
    expect(two.reasons).toEqual([
      "WARN: 2 of 3 premade partitions ready",
      "WARN: 1 interval(s) missing a partition (gaps or premake)",
    ]);
    expect(assessHealth(policy({ premake: 1 }), catalog(ready.slice(0, 2)), NOW).verdict).toBe("OK");
    expect(assessHealth(policy({ premake: 1 }), catalog(ready.slice(0, 1)), NOW).reasons[0]).toBe(
      "WARN: only 0 future partition(s) ready (premake 1)",
    );
  });

  it("warnings of the plan are reasons; info findings are not", () => {
    const hist = child("hist", "MINVALUE", utc("2026-11-01T00:00:00Z"));
    expect(assessHealth(policy(), catalog([hist, ...ready]), NOW)).toMatchObject({
      verdict: "OK",
      reasons: [],
      coveredFrom: null,
      coveredTo: "2027-03-01T00:00:00.000Z",
    });
    const shifted = child("shifted", utc("2027-03-15T00:00:00Z"), utc("2027-04-15T00:00:00Z"));
    const h = assessHealth(policy(), catalog([...ready, shifted]), NOW);
    expect(h.verdict).toBe("WARN");
    expect(h.reasons).toEqual([
      `WARN: shifted (${shifted.boundText}) is not one monthly interval; left untouched, and nothing is created over its range`,
    ]);
  });

  it("a child from MINVALUE to MAXVALUE covers now; an unsupported bound covers nothing", () => {
    const all = child("all", "MINVALUE", "MAXVALUE");
    expect(assessHealth(policy(), catalog([all]), NOW)).toMatchObject({
      futureBufferIntervals: 10_000,
      coveredFrom: null,
      coveredTo: null,
    });
    const odd: ChildPartition = { ...month("2026-11"), bound: { kind: "unsupported", text: "?" } };
    expect(assessHealth(policy(), catalog([odd]), NOW).verdict).toBe("CRIT");
  });

  it("children listed out of order still give the covered span from the oldest to the newest", () => {
    const h = assessHealth(policy(), catalog([ready[2]!, ready[0]!, ready[3]!, ready[1]!]), NOW);
    expect(h).toMatchObject({
      verdict: "OK",
      coveredFrom: "2026-11-01T00:00:00.000Z",
      coveredTo: "2027-03-01T00:00:00.000Z",
    });
  });
});
