import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type TablePolicy, TablePolicySchema } from "../../shared/config/policy.ts";
import type { BoundValue, PartitionBound } from "../../shared/partitions/bounds.ts";
import type { ChildPartition, DefaultBucket, TableCatalog } from "../../shared/partitions/catalog.ts";
import { assessHealth } from "../../shared/partitions/health.ts";
import { partitionName } from "../../shared/partitions/naming.ts";
import {
  defaultPartitionName,
  MAX_CREATES_PER_RUN,
  type PartitionAction,
  type PartitionPlan,
  planPartitions,
} from "../../shared/partitions/plan.ts";
import { GUARD_MIN_DEFAULT_ROWS } from "../../shared/partitions/plan-guard.ts";
import { DEFAULT_MAX_RESCUE_ROWS } from "../../shared/partitions/plan-rescue.ts";
import {
  addIntervals,
  floorToInterval,
  INTERVALS,
  type PartitionInterval,
} from "../../shared/partitions/time.ts";

// ---------------------------------------------------------------------------------------------
// Hand-built catalog snapshots (what readCatalog would return), so the planner runs without a database.

const TABLE = "telemetry_points";
const NOW = new Date("2026-11-21T10:00:00Z");
const utc = (iso: string) => new Date(iso);

function policy(overrides: Record<string, unknown> = {}): TablePolicy {
  return TablePolicySchema.parse({ table: TABLE, timeColumn: "recorded_at", ...overrides });
}

/** A bound value as pg_get_expr prints it for timestamptz in a UTC session. */
function pgText(v: BoundValue): string {
  if (v === "MINVALUE" || v === "MAXVALUE") return v;
  return `'${v
    .toISOString()
    .replace("T", " ")
    .replace(/\.000Z$/, "+00")}'`;
}

interface ChildOptions {
  detachPending?: boolean;
  bound?: PartitionBound;
  boundText?: string;
}

function child(name: string, from: BoundValue, to: BoundValue, opts: ChildOptions = {}): ChildPartition {
  return {
    schema: "public",
    name,
    bound: opts.bound ?? { kind: "range", from, to },
    boundText: opts.boundText ?? `FOR VALUES FROM (${pgText(from)}) TO (${pgText(to)})`,
    rowEstimate: 0,
    bytes: 8192,
    detachPending: opts.detachPending ?? false,
  };
}

/** The aligned child the planner itself would create for the interval starting at `start`. */
function alignedChild(interval: PartitionInterval, start: Date, template?: string): ChildPartition {
  const naming = template ?? policy({ interval }).naming;
  return child(partitionName(naming, TABLE, start), start, addIntervals(start, interval, 1));
}

function monthlyChild(isoMonth: string): ChildPartition {
  return alignedChild("monthly", utc(`${isoMonth}-01T00:00:00Z`));
}

interface CatalogOptions {
  children?: ChildPartition[];
  withDefault?: boolean;
  buckets?: DefaultBucket[];
  nullKeyRows?: number;
}

function catalog(opts: CatalogOptions = {}): TableCatalog {
  const withDefault = opts.withDefault ?? true;
  return {
    table: { schema: "public", name: TABLE },
    oid: 16_384,
    keyColumn: "recorded_at",
    keyType: "timestamptz",
    children: opts.children ?? [],
    defaultPartition: withDefault
      ? {
          schema: "public",
          name: `${TABLE}_default`,
          bound: { kind: "default" },
          boundText: "DEFAULT",
          rowEstimate: 0,
          bytes: 8192,
          detachPending: false,
        }
      : undefined,
    defaultBuckets: opts.buckets ?? [],
    defaultNullKeyRows: opts.nullKeyRows ?? 0,
    columns: ["device_id", "recorded_at", "metrics"],
  };
}

type CreateAction = Extract<PartitionAction, { kind: "create_partition" }>;

function creates(plan: PartitionPlan): CreateAction[] {
  return plan.actions.filter((a): a is CreateAction => a.kind === "create_partition");
}

function summary(plan: PartitionPlan) {
  return creates(plan).map((a) => ({
    partition: a.partition,
    from: a.from.toISOString(),
    to: a.to.toISOString(),
    reason: a.reason,
    defaultRows: a.defaultRows,
  }));
}

const codes = (plan: PartitionPlan) => plan.findings.map((f) => f.code);

/** The catalog after applying a plan: every created range becomes a real child. */
function applied(before: TableCatalog, plan: PartitionPlan): TableCatalog {
  const made = creates(plan).map((a) => child(a.partition, a.from, a.to));
  return {
    ...before,
    children: [...before.children, ...made],
    defaultBuckets: [],
    defaultPartition:
      before.defaultPartition ??
      (plan.actions.some((a) => a.kind === "create_default_partition")
        ? catalog({ withDefault: true }).defaultPartition
        : undefined),
  };
}

// ---------------------------------------------------------------------------------------------

describe("planPartitions: premake", () => {
  it("an empty monthly table at 2026-11-21 gets Nov 2026 .. Feb 2027, current interval first", () => {
    const plan = planPartitions(policy({ premake: 3 }), catalog(), NOW);
    expect(plan.table).toBe("public.telemetry_points");
    expect(plan.findings).toEqual([]);
    expect(plan.actions.every((a) => a.kind === "create_partition" && a.table === plan.table)).toBe(true);
    expect(summary(plan)).toEqual([
      {
        partition: "telemetry_points_p202611",
        from: "2026-11-01T00:00:00.000Z",
        to: "2026-12-01T00:00:00.000Z",
        reason: "premake",
        defaultRows: 0,
      },
      {
        partition: "telemetry_points_p202612",
        from: "2026-12-01T00:00:00.000Z",
        to: "2027-01-01T00:00:00.000Z",
        reason: "premake",
        defaultRows: 0,
      },
      {
        partition: "telemetry_points_p202701",
        from: "2027-01-01T00:00:00.000Z",
        to: "2027-02-01T00:00:00.000Z",
        reason: "premake",
        defaultRows: 0,
      },
      {
        partition: "telemetry_points_p202702",
        from: "2027-02-01T00:00:00.000Z",
        to: "2027-03-01T00:00:00.000Z",
        reason: "premake",
        defaultRows: 0,
      },
    ]);
  });

  it("planning again with those children present yields nothing to do", () => {
    const first = planPartitions(policy(), catalog(), NOW);
    const second = planPartitions(policy(), applied(catalog(), first), NOW);
    expect(second.actions).toEqual([]);
    expect(second.findings).toEqual([]);
  });

  it("only the missing future intervals are created when some exist", () => {
    const plan = planPartitions(
      policy(),
      catalog({ children: [monthlyChild("2026-11"), monthlyChild("2026-12")] }),
      NOW,
    );
    expect(summary(plan).map((a) => [a.partition, a.reason])).toEqual([
      ["telemetry_points_p202701", "premake"],
      ["telemetry_points_p202702", "premake"],
    ]);
  });

  it("premake 0 creates only the current interval, on an exact boundary too", () => {
    const plan = planPartitions(policy({ premake: 0 }), catalog(), utc("2026-12-01T00:00:00Z"));
    expect(summary(plan).map((a) => a.partition)).toEqual(["telemetry_points_p202612"]);
  });

  it("future intervals come after the current one, in ascending order", () => {
    const plan = planPartitions(policy({ interval: "daily", premake: 5 }), catalog(), NOW);
    expect(summary(plan).map((a) => a.from)).toEqual([
      "2026-11-21T00:00:00.000Z",
      "2026-11-22T00:00:00.000Z",
      "2026-11-23T00:00:00.000Z",
      "2026-11-24T00:00:00.000Z",
      "2026-11-25T00:00:00.000Z",
      "2026-11-26T00:00:00.000Z",
    ]);
  });
});

describe("planPartitions: gaps", () => {
  it("holes between existing children are filled with reason gap, nearest to now first", () => {
    const plan = planPartitions(
      policy(),
      catalog({
        children: ["2026-08", "2026-11", "2026-12", "2027-01", "2027-02"].map(monthlyChild),
      }),
      NOW,
    );
    expect(plan.findings).toEqual([]);
    expect(summary(plan)).toEqual([
      {
        partition: "telemetry_points_p202610",
        from: "2026-10-01T00:00:00.000Z",
        to: "2026-11-01T00:00:00.000Z",
        reason: "gap",
        defaultRows: 0,
      },
      {
        partition: "telemetry_points_p202609",
        from: "2026-09-01T00:00:00.000Z",
        to: "2026-10-01T00:00:00.000Z",
        reason: "gap",
        defaultRows: 0,
      },
    ]);
  });

  it("a hole inside the premake window keeps reason premake; one beyond it is a gap", () => {
    const plan = planPartitions(
      policy(),
      catalog({ children: ["2026-11", "2027-01", "2027-02", "2027-05"].map(monthlyChild) }),
      NOW,
    );
    expect(summary(plan).map((a) => [a.partition, a.reason])).toEqual([
      ["telemetry_points_p202612", "premake"],
      ["telemetry_points_p202703", "gap"],
      ["telemetry_points_p202704", "gap"],
    ]);
  });

  it("a span too long to walk is reported", () => {
    const start = utc("2020-01-01T00:00:00Z");
    const plan = planPartitions(
      policy({ interval: "hourly", premake: 0 }),
      catalog({ children: [alignedChild("hourly", start)] }),
      NOW,
    );
    expect(codes(plan)).toContain("gap_span_too_large");
    // Reported as not filled, and indeed not filled.
    expect(plan.actions.filter((a) => a.kind === "create_partition" && a.reason === "gap")).toEqual([]);
  });
});

describe("planPartitions: DEFAULT partition rows", () => {
  const current = ["2026-11", "2026-12", "2027-01", "2027-02"].map(monthlyChild);

  it("rows of a past interval without a child are rescued into a new child", () => {
    const plan = planPartitions(
      policy(),
      catalog({ children: current, buckets: [{ start: utc("2026-10-01T00:00:00Z"), rows: 42 }] }),
      NOW,
    );
    expect(plan.findings).toEqual([]);
    expect(summary(plan)).toEqual([
      {
        partition: "telemetry_points_p202610",
        from: "2026-10-01T00:00:00.000Z",
        to: "2026-11-01T00:00:00.000Z",
        reason: "rescue",
        defaultRows: 42,
      },
    ]);
  });

  it("a rescue further back also fills the holes up to the existing children", () => {
    const plan = planPartitions(
      policy(),
      catalog({ children: current, buckets: [{ start: utc("2026-08-01T00:00:00Z"), rows: 3 }] }),
      NOW,
    );
    expect(summary(plan).map((a) => [a.partition, a.reason, a.defaultRows])).toEqual([
      ["telemetry_points_p202610", "gap", 0],
      ["telemetry_points_p202609", "gap", 0],
      ["telemetry_points_p202608", "rescue", 3],
    ]);
  });

  it("with retention, nothing is (re)created over ranges wholly before the cutoff: expired DEFAULT rows are left to retention", () => {
    // keep 60 days at NOW: cutoff in September; a detached August partition must not come back.
    const withRetention = policy({ retention: { keep: "60 days", mode: "detach" } });
    const plan = planPartitions(
      withRetention,
      catalog({
        children: current,
        buckets: [
          { start: utc("2020-03-01T00:00:00Z"), rows: 1 },
          { start: utc("2026-08-01T00:00:00Z"), rows: 3 },
          { start: utc("2026-10-01T00:00:00Z"), rows: 5 },
        ],
      }),
      NOW,
    );
    // August is expired (its rows are left to retention) and does not stretch the gap fill down to it.
    expect(summary(plan).map((a) => [a.partition, a.reason, a.defaultRows])).toEqual([
      ["telemetry_points_p202610", "rescue", 5],
    ]);
    expect(codes(plan)).toContain("default_rows_expired");
    expect(plan.findings.find((f) => f.code === "default_rows_expired")?.message).toMatch(/^4 rows/);
  });

  it("one ancient expired DEFAULT row does not switch off gap filling (hourly, keep 7 days)", () => {
    const hourly = policy({ interval: "hourly", premake: 2, retention: { keep: "7 days" } });
    const hours = [-3, -2, 0, 1, 2].map((h) =>
      alignedChild("hourly", new Date(Date.UTC(2026, 10, 21, 10 + h))),
    );
    const plan = planPartitions(
      hourly,
      catalog({ children: hours, buckets: [{ start: utc("1970-01-01T05:00:00Z"), rows: 1 }] }),
      NOW,
    );
    expect(summary(plan).map((a) => [a.from, a.reason])).toEqual([["2026-11-21T09:00:00.000Z", "gap"]]);
    expect(codes(plan)).toEqual(["default_rows_expired"]);
  });

  it("rows in the current and premade intervals ride along with the premake creates", () => {
    const plan = planPartitions(
      policy(),
      catalog({
        buckets: [
          { start: utc("2026-11-01T00:00:00Z"), rows: 7 },
          { start: utc("2027-02-01T00:00:00Z"), rows: 2 }, // the last premade interval: within horizon
        ],
      }),
      NOW,
    );
    expect(plan.findings).toEqual([]);
    expect(summary(plan).map((a) => [a.partition, a.reason, a.defaultRows])).toEqual([
      ["telemetry_points_p202611", "premake", 7],
      ["telemetry_points_p202612", "premake", 0],
      ["telemetry_points_p202701", "premake", 0],
      ["telemetry_points_p202702", "premake", 2],
    ]);
  });

  it("bucket starts are floored to the policy interval", () => {
    const plan = planPartitions(
      policy(),
      catalog({ children: current, buckets: [{ start: utc("2026-10-17T13:00:00Z"), rows: 1 }] }),
      NOW,
    );
    expect(summary(plan).map((a) => [a.from, a.reason, a.defaultRows])).toEqual([
      ["2026-10-01T00:00:00.000Z", "rescue", 1],
    ]);
  });

  it("rows beyond the premake horizon are reported and left in DEFAULT", () => {
    const plan = planPartitions(
      policy(),
      catalog({
        children: current,
        buckets: [
          { start: utc("2027-03-01T00:00:00Z"), rows: 5 },
          { start: utc("2031-07-01T00:00:00Z"), rows: 6 },
        ],
      }),
      NOW,
    );
    expect(plan.actions).toEqual([]);
    expect(plan.findings).toHaveLength(1);
    const [finding] = plan.findings;
    expect(finding?.code).toBe("default_rows_beyond_horizon");
    expect(finding?.severity).toBe("warn");
    expect(finding?.message).toContain("11 rows");
    expect(finding?.message).toContain("2027-03-01T00:00:00.000Z");
  });

  it("rows with a NULL key are reported", () => {
    const plan = planPartitions(policy(), catalog({ children: current, nullKeyRows: 3 }), NOW);
    expect(plan.actions).toEqual([]);
    expect(plan.findings).toHaveLength(1);
    expect(plan.findings[0]?.code).toBe("default_null_keys");
    expect(plan.findings[0]?.message).toMatch(/^3 rows .* NULL recorded_at/);
  });
});

describe("planPartitions: children it will not touch", () => {
  it("a two-month child is misaligned, and nothing is created over its range", () => {
    const twoMonths = child(
      "telemetry_points_p202611",
      utc("2026-11-01T00:00:00Z"),
      utc("2027-01-01T00:00:00Z"),
    );
    const plan = planPartitions(policy(), catalog({ children: [twoMonths] }), NOW);
    const misaligned = plan.findings.filter((f) => f.code === "misaligned_child");
    expect(misaligned).toHaveLength(1);
    expect(misaligned[0]?.partition).toBe("telemetry_points_p202611");
    expect(misaligned[0]?.message).toContain(twoMonths.boundText);
    const made = creates(plan);
    expect(made.map((a) => a.partition)).toEqual(["telemetry_points_p202701", "telemetry_points_p202702"]);
    for (const a of made) {
      expect(a.to.getTime() <= Date.parse("2026-11-01T00:00:00Z") || a.from >= utc("2027-01-01")).toBe(true);
    }
    // The premade intervals it blocks are reported, not silently dropped.
    expect(
      plan.findings
        .filter((f) => f.code === "range_conflict")
        .map((f) => f.partition)
        .sort(),
    ).toEqual(["telemetry_points_p202611", "telemetry_points_p202612"]);
  });

  it("a child that starts mid-interval is misaligned", () => {
    const shifted = child("odd", utc("2026-10-15T00:00:00Z"), utc("2026-11-15T00:00:00Z"));
    const plan = planPartitions(policy(), catalog({ children: [shifted] }), NOW);
    expect(codes(plan)).toContain("misaligned_child");
    expect(creates(plan).map((a) => a.partition)).not.toContain("telemetry_points_p202611");
    expect(creates(plan).map((a) => a.partition)).toContain("telemetry_points_p202612");
  });

  it("a MINVALUE child ending on an interval start is historical (info); it neither blocks premake nor starts a gap walk", () => {
    const old = child("telemetry_points_history", "MINVALUE", utc("2026-11-01T00:00:00Z"));
    const plan = planPartitions(policy(), catalog({ children: [old] }), NOW);
    expect(plan.findings.map((f) => [f.code, f.severity])).toEqual([["historical_child", "info"]]);
    expect(summary(plan).map((a) => [a.partition, a.reason])).toEqual([
      ["telemetry_points_p202611", "premake"],
      ["telemetry_points_p202612", "premake"],
      ["telemetry_points_p202701", "premake"],
      ["telemetry_points_p202702", "premake"],
    ]);
  });

  it("intervals inside a historical partition (a converted table before its boundary) are covered, not conflicts", () => {
    const history = child("telemetry_points_history", "MINVALUE", utc("2027-01-01T00:00:00Z"));
    const plan = planPartitions(policy(), catalog({ children: [history, monthlyChild("2027-01")] }), NOW);
    expect(plan.findings.map((f) => f.code)).toEqual(["historical_child"]);
    expect(summary(plan).map((a) => a.partition)).toEqual(["telemetry_points_p202702"]);
  });

  it("a MINVALUE child that ends inside an interval is misaligned, and that interval is a conflict", () => {
    const old = child("telemetry_points_history", "MINVALUE", utc("2026-11-15T00:00:00Z"));
    const plan = planPartitions(policy(), catalog({ children: [old] }), NOW);
    expect(codes(plan)).toEqual(["misaligned_child", "range_conflict"]);
  });

  it("a child with a bound the tool does not interpret is reported and left alone", () => {
    const listChild = child("telemetry_points_list", "MINVALUE", "MAXVALUE", {
      bound: { kind: "unsupported", text: "FOR VALUES IN ('x')" },
      boundText: "FOR VALUES IN ('x')",
    });
    const plan = planPartitions(
      policy(),
      catalog({ children: [listChild, ...["2026-11", "2026-12", "2027-01", "2027-02"].map(monthlyChild)] }),
      NOW,
    );
    expect(plan.actions).toEqual([]);
    expect(plan.findings.map((f) => [f.code, f.partition])).toEqual([
      ["unsupported_bound", "telemetry_points_list"],
    ]);
  });

  it("a name taken by a child with another range is a name_conflict, not a create", () => {
    // Named like December 2026 but holding October 2026.
    const misnamed = child(
      "telemetry_points_p202612",
      utc("2026-10-01T00:00:00Z"),
      utc("2026-11-01T00:00:00Z"),
    );
    const plan = planPartitions(policy(), catalog({ children: [misnamed] }), NOW);
    expect(plan.findings.map((f) => [f.code, f.partition])).toEqual([
      ["name_conflict", "telemetry_points_p202612"],
    ]);
    expect(plan.findings[0]?.message).toContain(misnamed.boundText);
    expect(summary(plan).map((a) => a.partition)).toEqual([
      "telemetry_points_p202611",
      "telemetry_points_p202701",
      "telemetry_points_p202702",
    ]);
  });

  it("an interrupted DETACH CONCURRENTLY is reported with the FINALIZE command", () => {
    const pending = alignedChild("monthly", utc("2026-01-01T00:00:00Z"));
    const plan = planPartitions(
      policy(),
      catalog({
        children: [
          { ...pending, detachPending: true },
          ...["2026-11", "2026-12", "2027-01", "2027-02"].map(monthlyChild),
        ],
      }),
      NOW,
    );
    const f = plan.findings.filter((x) => x.code === "detach_pending");
    expect(f).toHaveLength(1);
    expect(f[0]?.partition).toBe("telemetry_points_p202601");
    expect(f[0]?.message).toContain(
      "ALTER TABLE public.telemetry_points DETACH PARTITION public.telemetry_points_p202601 FINALIZE",
    );
  });
});

describe("planPartitions: the DEFAULT partition itself", () => {
  const full = ["2026-11", "2026-12", "2027-01", "2027-02"].map(monthlyChild);

  it("is created when the policy wants one and the table has none, after the children", () => {
    const plan = planPartitions(policy(), catalog({ withDefault: false }), NOW);
    expect(plan.actions).toHaveLength(5);
    expect(plan.actions.at(-1)).toEqual({
      kind: "create_default_partition",
      table: "public.telemetry_points",
      partition: "telemetry_points_default",
    });
    const alone = planPartitions(policy(), catalog({ withDefault: false, children: full }), NOW);
    expect(alone.actions).toEqual([
      {
        kind: "create_default_partition",
        table: "public.telemetry_points",
        partition: "telemetry_points_default",
      },
    ]);
  });

  it("is not created when it exists or when the policy turns it off", () => {
    expect(planPartitions(policy(), catalog({ children: full }), NOW).actions).toEqual([]);
    expect(
      planPartitions(
        policy({ defaultPartition: false }),
        catalog({ withDefault: false, children: full }),
        NOW,
      ).actions,
    ).toEqual([]);
  });

  it("its name fits in 63 characters for a long table name", () => {
    const long = "t".repeat(63);
    expect(defaultPartitionName(long)).toBe(`${"t".repeat(55)}_default`);
    expect(defaultPartitionName(long)).toHaveLength(63);
    expect(defaultPartitionName("telemetry_points")).toBe("telemetry_points_default");
  });
});

// ---------------------------------------------------------------------------------------------

describe("planPartitions: properties", () => {
  const instant = fc.date({
    min: new Date("2000-01-01T00:00:00Z"),
    max: new Date("2090-01-01T00:00:00Z"),
    noInvalidDate: true,
  });
  const interval = fc.constantFrom(...INTERVALS);
  /** Offsets, in intervals from the current one, of the children that already exist. */
  const existingOffsets = fc.uniqueArray(fc.integer({ min: -15, max: 45 }), { maxLength: 25 });

  it("premake is covered exactly, nothing overlaps, holes are filled, and a second plan is empty", () => {
    fc.assert(
      fc.property(
        instant,
        interval,
        fc.integer({ min: 0, max: 30 }),
        existingOffsets,
        fc.boolean(),
        (now, iv, premake, offsets, withDefault) => {
          const pol = policy({ interval: iv, premake });
          const current = floorToInterval(now, iv);
          const existing = offsets.map((k) => alignedChild(iv, addIntervals(current, iv, k)));
          const before = catalog({ children: existing, withDefault });
          const plan = planPartitions(pol, before, now);

          expect(plan.findings).toEqual([]);
          const made = creates(plan);
          for (const a of made) {
            expect(floorToInterval(a.from, iv).getTime()).toBe(a.from.getTime());
            expect(a.to.getTime()).toBe(addIntervals(a.from, iv, 1).getTime());
            expect(a.partition).toBe(partitionName(pol.naming, TABLE, a.from));
            expect(a.reason === "premake" || a.reason === "gap").toBe(true);
          }
          expect(plan.actions.filter((a) => a.kind === "create_default_partition")).toHaveLength(
            withDefault ? 0 : 1,
          );

          // Created + existing ranges never overlap, and together they are one contiguous run.
          const ranges = [
            ...existing.map((c) => {
              const b = c.bound as { from: Date; to: Date };
              return { from: b.from.getTime(), to: b.to.getTime() };
            }),
            ...made.map((a) => ({ from: a.from.getTime(), to: a.to.getTime() })),
          ].sort((a, b) => a.from - b.from);
          for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.from).toBe(ranges[i - 1]!.to);

          // Every interval from floor(now) to floor(now)+premake has exactly one partition.
          for (let i = 0; i <= premake; i++) {
            const start = addIntervals(current, iv, i).getTime();
            expect(ranges.filter((r) => r.from === start)).toHaveLength(1);
          }

          // The current interval, when missing, is created first.
          if (!offsets.includes(0)) expect((plan.actions[0] as CreateAction).from).toEqual(current);

          // Idempotence: with the plan applied, there is nothing left to do.
          const again = planPartitions(pol, applied(before, plan), now);
          expect(again.actions).toEqual([]);
          expect(again.findings).toEqual([]);
        },
      ),
    );
  });

  it("the plan does not depend on the order of the catalog's children", () => {
    fc.assert(
      fc.property(instant, interval, existingOffsets, (now, iv, offsets) => {
        const current = floorToInterval(now, iv);
        const existing = offsets.map((k) => alignedChild(iv, addIntervals(current, iv, k)));
        const pol = policy({ interval: iv });
        const a = planPartitions(pol, catalog({ children: existing }), now);
        const b = planPartitions(pol, catalog({ children: [...existing].reverse() }), now);
        expect(b).toEqual(a);
      }),
    );
  });
});

describe("planPartitions: regressions", () => {
  it("rows a gap partition will take are not reported as stranded beyond the horizon", () => {
    const children = ["2026-11", "2026-12", "2027-01", "2027-02", "2027-06"].map(monthlyChild);
    const plan = planPartitions(
      policy(),
      catalog({ children, buckets: [{ start: utc("2027-04-01T00:00:00Z"), rows: 5 }] }),
      NOW,
    );
    expect(creates(plan).find((a) => a.partition === "telemetry_points_p202704")).toMatchObject({
      reason: "gap",
      defaultRows: 5,
    });
    expect(codes(plan)).not.toContain("default_rows_beyond_horizon");
  });

  it("one DEFAULT row from 1970 does not plan decades of partitions in one run", () => {
    const plan = planPartitions(
      policy(),
      catalog({ buckets: [{ start: utc("1970-01-01T00:00:00Z"), rows: 1 }] }),
      NOW,
    );
    expect(plan.actions.filter((a) => a.kind === "create_partition").length).toBe(MAX_CREATES_PER_RUN);
    const capped = plan.findings.find((f) => f.code === "creation_capped");
    expect(capped?.message).toContain("1970-01-01T00:00:00.000Z");
    // The most urgent first: the current month and the premade ones are never the ones deferred.
    expect(
      creates(plan)
        .slice(0, 4)
        .map((a) => a.reason),
    ).toEqual(["premake", "premake", "premake", "premake"]);
  });

  it("a child whose bound has microseconds is not mistaken for an aligned one", () => {
    const odd = child("telemetry_points_odd", utc("2026-11-01T00:00:00Z"), utc("2026-12-01T00:00:00Z"), {
      bound: {
        kind: "range",
        from: utc("2026-11-01T00:00:00Z"),
        to: utc("2026-12-01T00:00:00Z"),
        inexact: "from",
      },
      boundText: "FOR VALUES FROM ('2026-11-01 00:00:00.000001+00') TO ('2026-12-01 00:00:00+00')",
    });
    const plan = planPartitions(policy(), catalog({ children: [odd] }), NOW);
    expect(codes(plan)).toContain("misaligned_child");
  });
});

describe("the DEFAULT guard (prove far-future ranges absent before attaching them)", () => {
  // 200,000 rows dated 2031 (beyond any premake horizon): they stay in DEFAULT.
  const farRows = [{ start: utc("2031-01-01T00:00:00Z"), rows: GUARD_MIN_DEFAULT_ROWS * 2 }];
  const kinds = (plan: PartitionPlan) =>
    plan.actions.map((a) => (a.kind === "create_partition" ? a.partition : a.kind));

  it("covers the ranges that start more than a day ahead, before their creates, and is dropped last", () => {
    const plan = planPartitions(policy({ premake: 3 }), catalog({ buckets: farRows }), NOW);
    expect(kinds(plan)).toEqual([
      "telemetry_points_p202611",
      "guard_default",
      "telemetry_points_p202612",
      "telemetry_points_p202701",
      "telemetry_points_p202702",
      "drop_default_guard",
    ]);
    const guard = plan.actions.find((a) => a.kind === "guard_default");
    expect(guard?.kind === "guard_default" && guard.ranges.map((r) => r.from.toISOString())).toEqual([
      "2026-12-01T00:00:00.000Z",
      "2027-01-01T00:00:00.000Z",
      "2027-02-01T00:00:00.000Z",
    ]);
  });

  it("leaves out a range that starts within a day, and a range whose rows are in DEFAULT", () => {
    const late = new Date("2026-11-30T12:00:00Z");
    const buckets = [{ start: utc("2027-01-01T00:00:00Z"), rows: 5 }, ...farRows];
    const plan = planPartitions(policy({ premake: 3 }), catalog({ buckets }), late);
    const guard = plan.actions.find((a) => a.kind === "guard_default");
    // December starts in 12 hours; January has rows in DEFAULT (a rescue); February is guarded.
    expect(guard?.kind === "guard_default" && guard.ranges.map((r) => r.from.toISOString())).toEqual([
      "2027-02-01T00:00:00.000Z",
    ]);
  });

  it("is not planned beside a small DEFAULT, whose scan costs less than the guard's locks", () => {
    const small = [{ start: utc("2031-01-01T00:00:00Z"), rows: GUARD_MIN_DEFAULT_ROWS - 1 }];
    const plan = planPartitions(policy({ premake: 3 }), catalog({ buckets: small }), NOW);
    expect(kinds(plan).filter((k) => k.includes("guard"))).toEqual([]);
  });

  it("drops a guard an earlier run left, also when it plans none", () => {
    const left = { ...catalog({ children: [monthlyChild("2026-11")] }), defaultGuard: true };
    expect(kinds(planPartitions(policy({ premake: 0 }), left, NOW))).toEqual(["drop_default_guard"]);
  });

  // A guard left by a run that failed or was stopped may name a range that has begun since: every
  // insert of a current row would be refused. Dropped last, it stayed whenever a create before it
  // failed; dropped first, only a failure of that drop itself can keep it.
  it("drops a guard an earlier run left first, before any create, and its own guard last", () => {
    const left = { ...catalog({ buckets: farRows }), defaultGuard: true };
    const plan = planPartitions(policy({ premake: 3 }), left, NOW);
    expect(kinds(plan)).toEqual([
      "drop_default_guard",
      "telemetry_points_p202611",
      "guard_default",
      "telemetry_points_p202612",
      "telemetry_points_p202701",
      "telemetry_points_p202702",
      "drop_default_guard",
    ]);
    const drops = plan.actions.filter((a) => a.kind === "drop_default_guard");
    expect(drops.map((a) => a.kind === "drop_default_guard" && a.leftover)).toEqual([true, false]);
  });

  it("drops a leftover guard first also when it plans creates and no guard of its own", () => {
    const left = { ...catalog({ children: [monthlyChild("2026-11")] }), defaultGuard: true };
    const plan = planPartitions(policy({ premake: 1 }), left, NOW);
    expect(kinds(plan)).toEqual(["drop_default_guard", "telemetry_points_p202612"]);
  });
});

describe("health while a DEFAULT guard is in place", () => {
  const ready = ["2026-11", "2026-12", "2027-01", "2027-02"].map(monthlyChild);

  it("is WARN, naming the constraint, the DEFAULT partition and the runbook section", () => {
    expect(assessHealth(policy(), catalog({ children: ready }), NOW).verdict).toBe("OK");
    const h = assessHealth(policy(), { ...catalog({ children: ready }), defaultGuard: true }, NOW);
    expect(h.verdict).toBe("WARN");
    expect(h.reasons).toEqual([
      expect.stringMatching(
        /^WARN: constraint telemetry_jobs_default_guard is still on public\.telemetry_points_default .*refuses.*next run drops it first.*docs\/runbooks\/partition-manager\.md.*The DEFAULT guard/,
      ),
    ]);
  });
});

describe("a rescue above maxRescueRows", () => {
  const november = [{ start: utc("2026-11-03T00:00:00Z"), rows: DEFAULT_MAX_RESCUE_ROWS + 1 }];

  it("is left out with a CRIT finding naming the command; the rest of the plan stays", () => {
    const plan = planPartitions(policy({ premake: 1 }), catalog({ buckets: november }), NOW);
    expect(creates(plan).map((a) => a.partition)).toEqual(["telemetry_points_p202612"]);
    const refused = plan.findings.filter((f) => f.code === "rescue_refused");
    expect(refused.map((f) => [f.severity, f.partition])).toEqual([["crit", "telemetry_points_p202611"]]);
    expect(refused[0]?.message).toContain(
      `telemetry-jobs partition-manager --table public.${TABLE} --max-rescue-rows ${Math.ceil((DEFAULT_MAX_RESCUE_ROWS + 1) * 1.1)}.`,
    );
  });

  it("an outage's worth of months over the bound is one finding, naming the largest", () => {
    const months = ["2026-08-03", "2026-09-03", "2026-10-03", "2026-11-03"].map((d, i) => ({
      start: utc(`${d}T00:00:00Z`),
      rows: DEFAULT_MAX_RESCUE_ROWS + 1 + i * 10,
    }));
    const plan = planPartitions(policy({ premake: 1 }), catalog({ buckets: months }), NOW);
    const refused = plan.findings.filter((f) => f.code === "rescue_refused");
    expect(refused).toHaveLength(1);
    expect(refused[0]?.partition).toBe("telemetry_points_p202611");
    expect(refused[0]?.message).toContain(
      `not creating 4 partitions [2026-08-01T00:00:00.000Z, 2026-12-01T00:00:00.000Z): their rows are in the DEFAULT partition, up to ${DEFAULT_MAX_RESCUE_ROWS + 31} for one (telemetry_points_p202611)`,
    );
    expect(refused[0]?.message).toContain(
      `--max-rescue-rows ${Math.ceil((DEFAULT_MAX_RESCUE_ROWS + 31) * 1.1)}.`,
    );
    expect(creates(plan).map((a) => a.partition)).toEqual(["telemetry_points_p202612"]);
  });

  it("goes ahead up to the bound, and the policy can raise it", () => {
    const at = [{ start: november[0]!.start, rows: DEFAULT_MAX_RESCUE_ROWS }];
    expect(codes(planPartitions(policy({ premake: 1 }), catalog({ buckets: at }), NOW))).not.toContain(
      "rescue_refused",
    );
    const raised = planPartitions(
      policy({ premake: 1, maxRescueRows: DEFAULT_MAX_RESCUE_ROWS + 1 }),
      catalog({ buckets: november }),
      NOW,
    );
    expect(creates(raised).map((a) => [a.partition, a.defaultRows])).toEqual([
      ["telemetry_points_p202611", DEFAULT_MAX_RESCUE_ROWS + 1],
      ["telemetry_points_p202612", 0],
    ]);
  });
});
