// Retention of a rolled-up table never removes raw rows of hours the rollup has not made final: the
// frontier rule (from the watermark rows rollup-hourly saves) and how the planner applies it.
import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import type { TableCatalog } from "../../shared/partitions/catalog.ts";
import { planRetention, type RetentionFacts, rowDeleteLimit } from "../../shared/retention/plan.ts";
import { type RollupFrontier, rollupFrontier, type WatermarkRow } from "../../shared/rollups/frontier.ts";

const d = (iso: string) => new Date(iso);
const TARGET = "public.telemetry_rollups_hourly";
const row = (shardCount: number, finalBefore: string, backfill?: [string, string]): WatermarkRow => ({
  shardCount,
  finalBefore: d(finalBefore),
  backfillNext: backfill ? d(backfill[0]) : null,
  backfillTo: backfill ? d(backfill[1]) : null,
});

describe("rollupFrontier: how far the rollups are final", () => {
  it("no watermark yet: nothing is final", () => {
    expect(rollupFrontier(TARGET, [])).toEqual({
      target: TARGET,
      frontier: null,
      finalBefore: null,
      pendingRebuild: null,
    });
  });

  it("one task: its final_before", () => {
    expect(rollupFrontier(TARGET, [row(1, "2026-06-04T00:00:00Z")]).frontier).toEqual(
      d("2026-06-04T00:00:00Z"),
    );
  });

  it("a layout whose tasks have not all run counts for nothing", () => {
    expect(
      rollupFrontier(TARGET, [row(3, "2026-06-04T00:00:00Z"), row(3, "2026-06-04T00:00:00Z")]).frontier,
    ).toBe(null);
  });

  it("a complete layout: the smallest final_before of its tasks", () => {
    const f = rollupFrontier(TARGET, [row(2, "2026-06-04T00:00:00Z"), row(2, "2026-06-03T05:00:00Z")]);
    expect(f.frontier).toEqual(d("2026-06-03T05:00:00Z"));
  });

  it("while a new layout is incomplete, the old complete one decides", () => {
    const f = rollupFrontier(TARGET, [
      row(1, "2026-06-02T00:00:00Z"),
      row(4, "2026-06-09T00:00:00Z"),
      row(4, "2026-06-09T00:00:00Z"),
    ]);
    expect(f.frontier).toEqual(d("2026-06-02T00:00:00Z"));
  });

  it("two complete layouts (the moment before the old one is dropped): the smaller of both", () => {
    const f = rollupFrontier(TARGET, [
      row(1, "2026-06-02T00:00:00Z"),
      row(2, "2026-06-09T00:00:00Z"),
      row(2, "2026-06-08T00:00:00Z"),
    ]);
    expect(f.frontier).toEqual(d("2026-06-02T00:00:00Z"));
  });

  it("a pending rebuild: its hours are not final, the frontier is where it resumes", () => {
    const f = rollupFrontier(TARGET, [
      row(2, "2026-06-09T00:00:00Z", ["2026-06-05T00:00:00Z", "2026-06-06T00:00:00Z"]),
      row(2, "2026-06-09T00:00:00Z", ["2026-06-05T12:00:00Z", "2026-06-07T00:00:00Z"]),
    ]);
    expect(f).toEqual({
      target: TARGET,
      frontier: d("2026-06-05T00:00:00Z"),
      finalBefore: d("2026-06-09T00:00:00Z"),
      pendingRebuild: { from: d("2026-06-05T00:00:00Z"), to: d("2026-06-07T00:00:00Z") },
    });
  });

  it("a finished rebuild (next = to), or one pending in an incomplete layout, does not hold it back", () => {
    const f = rollupFrontier(TARGET, [
      row(1, "2026-06-09T00:00:00Z", ["2026-06-07T00:00:00Z", "2026-06-07T00:00:00Z"]),
      row(2, "2026-06-09T00:00:00Z", ["2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z"]),
    ]);
    expect(f.frontier).toEqual(d("2026-06-09T00:00:00Z"));
    expect(f.pendingRebuild).toBe(null);
  });
});

describe("rowDeleteLimit", () => {
  const cutoff = d("2026-06-09T00:00:00Z");
  const at = (frontier: string | null): RollupFrontier => ({
    target: TARGET,
    frontier: frontier ? d(frontier) : null,
    finalBefore: frontier ? d(frontier) : null,
    pendingRebuild: null,
  });
  it("is the cutoff without a rollup, or when the frontier is later", () => {
    expect(rowDeleteLimit(cutoff, undefined)).toEqual(cutoff);
    expect(rowDeleteLimit(cutoff, at("2026-06-12T00:00:00Z"))).toEqual(cutoff);
  });
  it("is the frontier when it is earlier; null when nothing is final", () => {
    expect(rowDeleteLimit(cutoff, at("2026-06-04T00:00:00Z"))).toEqual(d("2026-06-04T00:00:00Z"));
    expect(rowDeleteLimit(cutoff, at(null))).toBe(null);
  });
});

// keep 3 days at 2026-06-12: cutoff 2026-06-09. Daily children June 1..10, a DEFAULT partition.
const NOW = d("2026-06-12T00:00:00Z");
const retention = { keep: "3 days", maxDropsPerRun: 3, exactCutoff: true };
const rolled = TablePolicySchema.parse({
  table: "public.points",
  timeColumn: "ts",
  interval: "daily",
  retention,
  rollup: {},
});
const notRolled = TablePolicySchema.parse({
  table: "public.points",
  timeColumn: "ts",
  interval: "daily",
  retention,
});

function child(day: number, to = day + 1) {
  const iso = (n: number) => `2026-06-${String(n).padStart(2, "0")}T00:00:00Z`;
  return {
    schema: "public",
    name: `points_p202606${String(day).padStart(2, "0")}`,
    bound: { kind: "range" as const, from: d(iso(day)), to: d(iso(to)) },
    boundText: `FOR VALUES FROM ('${iso(day)}') TO ('${iso(to)}')`,
    rowEstimate: 100,
    bytes: 8192,
    detachPending: false,
  };
}

function catalogOf(children: ReturnType<typeof child>[]): TableCatalog {
  return {
    table: { schema: "public", name: "points" },
    oid: 1,
    keyColumn: "ts",
    keyType: "timestamptz",
    children,
    defaultPartition: {
      schema: "public",
      name: "points_default",
      bound: { kind: "default" },
      boundText: "DEFAULT",
      rowEstimate: 50,
      bytes: 8192,
      detachPending: false,
    },
    defaultBuckets: [],
    defaultNullKeyRows: 0,
    columns: ["ts"],
  };
}

const frontierAt = (iso: string | null): RollupFrontier => ({
  target: TARGET,
  frontier: iso ? d(iso) : null,
  finalBefore: iso ? d(iso) : null,
  pendingRebuild: null,
});

function facts(over: Partial<RetentionFacts> = {}): RetentionFacts {
  const children = [7, 8, 9].map((n) => child(n)); // June 7 and 8 expired, June 9 not
  return {
    table: "public.points",
    catalog: catalogOf(children),
    childHasRows: new Map(children.map((c) => [`public.${c.name}`, true])),
    expiredRows: new Map([["public.points_default", 50]]),
    unfinishedRemovals: [],
    holds: [],
    archiveClashes: new Map(),
    rollup: undefined,
    ...over,
  };
}

const removed = (plan: ReturnType<typeof planRetention>) =>
  plan.actions.flatMap((a) => (a.kind === "remove_partition" ? [a.partition.name] : []));
const deletes = (plan: ReturnType<typeof planRetention>) =>
  plan.actions.flatMap((a) =>
    a.kind === "delete_rows"
      ? [{ relation: a.relation.name, before: a.before.toISOString(), rows: a.rows }]
      : [],
  );
const warned = (plan: ReturnType<typeof planRetention>) =>
  plan.findings.filter((f) => f.code === "rollup_not_final").map((f) => f.partition);

/** A plain (unpartitioned) table with a rollup block. */
const plain = TablePolicySchema.parse({
  table: "public.legacy",
  timeColumn: "ts",
  partitioned: false,
  retention: { keep: "3 days" },
  rollup: {},
});

describe("planRetention of a rolled-up table", () => {
  it("partitions whose upper bound is after the frontier stay, with a WARN naming them, the frontier and what to do", () => {
    const plan = planRetention(
      rolled,
      facts({
        rollup: {
          frontier: frontierAt("2026-06-08T00:00:00Z"),
          notFinalRows: new Map([["public.points_default", 20]]),
        },
      }),
      NOW,
      { force: false },
    );
    expect(removed(plan)).toEqual(["points_p20260607"]);
    const warning = plan.findings.find((f) => f.partition === "public.points_p20260608")!;
    expect(warning.severity).toBe("warn");
    expect(warning.message).toBe(
      "kept public.points_p20260608 [2026-06-08T00:00:00.000Z, 2026-06-09T00:00:00.000Z) past its cutoff: its hours are not rolled up for good yet (rollup-hourly into public.telemetry_rollups_hourly has made hours final only before 2026-06-08T00:00:00.000Z). Check rollup-hourly: its last executions and their errors (docs/runbooks/rollups.md); the first retention run after it has caught up removes the partition.",
    );
    // DEFAULT: 50 expired rows, 20 of them at or after the frontier: 30 go, before the frontier.
    expect(deletes(plan)).toEqual([
      { relation: "points_default", before: "2026-06-08T00:00:00.000Z", rows: 30 },
    ]);
    expect(plan.findings.find((f) => f.partition === "public.points_default")?.message).toBe(
      "kept 20 rows of public.points_default older than the cutoff 2026-06-09T00:00:00.000Z: their hours are not rolled up for good yet (rollup-hourly into public.telemetry_rollups_hourly has made hours final only before 2026-06-08T00:00:00.000Z), so this run deletes only rows before 2026-06-08T00:00:00.000Z. Check rollup-hourly: its last executions and their errors (docs/runbooks/rollups.md); the first retention run after it has caught up deletes them.",
    );
    expect(plan.rollup).toEqual({ frontier: d("2026-06-08T00:00:00Z"), blocked: true });
    expect(plan.refusal).toBeUndefined();
  });

  it("a partition ending exactly at the frontier is final and goes", () => {
    const plan = planRetention(
      rolled,
      facts({ rollup: { frontier: frontierAt("2026-06-09T00:00:00Z"), notFinalRows: new Map() } }),
      NOW,
      { force: false },
    );
    expect(removed(plan)).toEqual(["points_p20260607", "points_p20260608"]);
    expect(plan.rollup).toEqual({ frontier: d("2026-06-09T00:00:00Z"), blocked: false });
  });

  it("nothing final yet: no partition and no row goes, and nothing claims that nothing is expired", () => {
    const plan = planRetention(
      rolled,
      facts({
        rollup: { frontier: frontierAt(null), notFinalRows: new Map([["public.points_default", 50]]) },
      }),
      NOW,
      { force: false },
    );
    expect(plan.actions).toEqual([]);
    expect(warned(plan)).toEqual([
      "public.points_p20260607",
      "public.points_p20260608",
      "public.points_default",
    ]);
    expect(plan.findings.find((f) => f.partition === "public.points_default")?.message).toContain(
      "has not made any hour final yet",
    );
    expect(plan.findings.find((f) => f.partition === "public.points_default")?.message).toContain(
      "so this run deletes none.",
    );
    expect(plan.findings.some((f) => f.code === "nothing_expired")).toBe(false);
    expect(plan.rollup).toEqual({ frontier: null, blocked: true });
  });

  it("--force lifts the guard rails, not the frontier", () => {
    const plan = planRetention(
      rolled,
      facts({ rollup: { frontier: frontierAt("2026-06-08T00:00:00Z"), notFinalRows: new Map() } }),
      NOW,
      { force: true },
    );
    expect(removed(plan)).toEqual(["points_p20260607"]);
  });

  it("the straddling child (exactCutoff) deletes only rows before the frontier", () => {
    const children = [child(7), child(8, 10)]; // June 8 .. 10 straddles the cutoff June 9
    const plan = planRetention(
      rolled,
      facts({
        catalog: catalogOf(children),
        childHasRows: new Map(children.map((c) => [`public.${c.name}`, true])),
        expiredRows: new Map([["public.points_p20260608", 40]]),
        rollup: {
          frontier: frontierAt("2026-06-08T12:00:00Z"),
          notFinalRows: new Map([["public.points_p20260608", 15]]),
        },
      }),
      NOW,
      { force: false },
    );
    expect(removed(plan)).toEqual(["points_p20260607"]);
    expect(deletes(plan)).toEqual([
      { relation: "points_p20260608", before: "2026-06-08T12:00:00.000Z", rows: 25 },
    ]);
    expect(warned(plan)).toEqual(["public.points_p20260608"]);
  });

  it("a plain table deletes only rows before the frontier", () => {
    const plan = planRetention(
      plain,
      {
        table: "public.legacy",
        catalog: undefined,
        childHasRows: new Map(),
        expiredRows: new Map([["public.legacy", 100]]),
        unfinishedRemovals: [],
        holds: [],
        archiveClashes: new Map(),
        rollup: {
          frontier: frontierAt("2026-06-07T00:00:00Z"),
          notFinalRows: new Map([["public.legacy", 60]]),
        },
      },
      NOW,
      { force: false },
    );
    expect(deletes(plan)).toEqual([{ relation: "legacy", before: "2026-06-07T00:00:00.000Z", rows: 40 }]);
    expect(warned(plan)).toEqual(["public.legacy"]);
  });

  it("estimates: only an estimated figure of rows to delete marks the action; the kept rows' warning says about where they were estimated", () => {
    const planWith = (estimates: { deletable: boolean; notFinal: boolean }) =>
      planRetention(
        plain,
        {
          table: "public.legacy",
          catalog: undefined,
          childHasRows: new Map(),
          expiredRows: new Map([["public.legacy", 60_000]]),
          rowEstimates: new Map([["public.legacy", estimates]]),
          unfinishedRemovals: [],
          holds: [],
          archiveClashes: new Map(),
          rollup: {
            frontier: frontierAt("2026-06-07T00:00:00Z"),
            notFinalRows: new Map([["public.legacy", 20_000]]),
          },
        },
        NOW,
        { force: false },
      );
    const keptOnly = planWith({ deletable: false, notFinal: true });
    expect(keptOnly.actions).toEqual([expect.not.objectContaining({ rowsEstimated: true })]);
    expect(keptOnly.findings.map((f) => f.message)).toContainEqual(
      expect.stringMatching(/^kept about 20000 rows of public\.legacy older than/),
    );
    const deletedOnly = planWith({ deletable: true, notFinal: false });
    expect(deletedOnly.actions).toEqual([expect.objectContaining({ rows: 40_000, rowsEstimated: true })]);
    expect(deletedOnly.findings.map((f) => f.message)).toContainEqual(
      expect.stringMatching(/^kept 20000 rows of public\.legacy older than/),
    );
  });

  it("a held partition stays held (INFO); after its hold expired it is kept by the frontier, not announced as removed", () => {
    const hold = (until: string) => ({
      partition: "public.points_p20260608",
      until: d(until),
      reason: "audit",
      createdBy: "ops",
    });
    const rollup = { frontier: frontierAt("2026-06-08T00:00:00Z"), notFinalRows: new Map<string, number>() };
    const held = planRetention(rolled, facts({ rollup, holds: [hold("2026-07-01T00:00:00Z")] }), NOW, {
      force: false,
    });
    expect(held.findings.filter((f) => f.partition === "public.points_p20260608").map((f) => f.code)).toEqual(
      ["held"],
    );
    const expired = planRetention(rolled, facts({ rollup, holds: [hold("2026-06-10T00:00:00Z")] }), NOW, {
      force: false,
    });
    expect(
      expired.findings.filter((f) => f.partition === "public.points_p20260608").map((f) => f.code),
    ).toEqual(["rollup_not_final"]);
    expect(removed(expired)).toEqual(["points_p20260607"]);
  });

  it("kept partitions do not count towards maxDropsPerRun", () => {
    const children = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => child(n));
    const plan = planRetention(
      rolled,
      facts({
        catalog: catalogOf(children),
        childHasRows: new Map(children.map((c) => [`public.${c.name}`, true])),
        expiredRows: new Map(),
        rollup: { frontier: frontierAt("2026-06-04T00:00:00Z"), notFinalRows: new Map() },
      }),
      NOW,
      { force: false },
    );
    expect(plan.refusal).toBeUndefined();
    expect(removed(plan)).toEqual(["points_p20260601", "points_p20260602", "points_p20260603"]);
  });

  it("a frontier after the cutoff changes nothing: the same actions as a table without a rollup block", () => {
    const base = facts();
    const without = planRetention(notRolled, base, NOW, { force: false });
    const withFrontier = planRetention(
      rolled,
      { ...base, rollup: { frontier: frontierAt("2026-06-11T00:00:00Z"), notFinalRows: new Map() } },
      NOW,
      { force: false },
    );
    expect(withFrontier.actions).toEqual(without.actions);
    expect(withFrontier.findings).toEqual(without.findings);
    expect(without.rollup).toBeUndefined();
    expect(withFrontier.rollup).toEqual({ frontier: d("2026-06-11T00:00:00Z"), blocked: false });
  });

  it("a policy with a rollup block whose facts lack the frontier is a bug, not a licence to remove", () => {
    expect(() => planRetention(rolled, facts(), NOW, { force: false })).toThrow(/lack its rollup frontier/);
  });
});
