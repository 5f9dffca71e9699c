import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import { planRetention, type RetentionFacts } from "../../shared/retention/plan.ts";

const NOW = new Date("2026-03-01T00:00:00Z");
const policy = TablePolicySchema.parse({
  table: "public.legacy",
  timeColumn: "ts",
  partitioned: false,
  retention: { keep: "30 days" },
});
const facts = (over: Partial<RetentionFacts>): RetentionFacts => ({
  table: "public.legacy",
  catalog: undefined,
  childHasRows: new Map(),
  expiredRows: new Map(),
  unfinishedRemovals: [],
  holds: [],
  archiveClashes: new Map(),
  rollup: undefined,
  ...over,
});

describe("planRetention: finishing a removal a killed run started", () => {
  const unfinished = [{ partition: { schema: "public", name: "legacy_p202512" }, mode: "drop" as const }];

  it("is finished when nothing holds the partition", () => {
    const plan = planRetention(policy, facts({ unfinishedRemovals: unfinished }), NOW, { force: false });
    expect(plan.actions).toEqual([
      { kind: "finish_removal", partition: { schema: "public", name: "legacy_p202512" }, mode: "drop" },
    ]);
  });

  it("waits while a hold placed since protects it, and goes ahead once the hold has expired", () => {
    const hold = (until: string) => ({
      partition: "public.legacy_p202512",
      until: new Date(until),
      reason: "incident 42",
      createdBy: "ops",
    });
    const held = planRetention(
      policy,
      facts({ unfinishedRemovals: unfinished, holds: [hold("2026-04-01T00:00:00Z")] }),
      NOW,
      { force: false },
    );
    expect(held.actions).toEqual([]);
    expect(held.findings.filter((f) => f.code === "held").map((f) => f.partition)).toEqual([
      "public.legacy_p202512",
    ]);
    const expired = planRetention(
      policy,
      facts({ unfinishedRemovals: unfinished, holds: [hold("2026-02-01T00:00:00Z")] }),
      NOW,
      { force: false },
    );
    expect(expired.actions.map((a) => a.kind)).toEqual(["finish_removal"]);
  });
});

describe("planRetention: a held partition that straddles the cutoff (exactCutoff)", () => {
  const parted = TablePolicySchema.parse({
    table: "public.points",
    timeColumn: "ts",
    retention: { keep: "30 days", exactCutoff: true },
  });
  const child = {
    schema: "public",
    name: "points_p202601",
    bound: {
      kind: "range" as const,
      from: new Date("2026-01-15T00:00:00Z"),
      to: new Date("2026-02-15T00:00:00Z"),
    },
    boundText: "FOR VALUES FROM ('2026-01-15 00:00:00+00') TO ('2026-02-15 00:00:00+00')",
    rowEstimate: 100,
    bytes: 8192,
    detachPending: false,
  };
  const catalog = {
    table: { schema: "public", name: "points" },
    oid: 1,
    keyColumn: "ts",
    keyType: "timestamptz" as const,
    children: [child],
    defaultPartition: undefined,
    defaultBuckets: [],
    defaultNullKeyRows: 0,
    columns: ["ts"],
  };
  const base = {
    table: "public.points",
    catalog,
    childHasRows: new Map([["public.points_p202601", true]]),
    expiredRows: new Map([["public.points_p202601", 40]]),
    unfinishedRemovals: [],
    archiveClashes: new Map<string, string[]>(),
    rollup: undefined,
  };

  it("keeps its expired rows while the hold lasts, deletes them without one", () => {
    // cutoff = 2026-03-01 - 30 days = 2026-01-30: the child straddles it
    const free = planRetention(parted, { ...base, holds: [] } as RetentionFacts, NOW, { force: false });
    expect(free.actions.map((a) => a.kind)).toEqual(["delete_rows"]);
    const hold = {
      partition: "public.points_p202601",
      until: new Date("2026-06-01T00:00:00Z"),
      reason: "audit",
      createdBy: "ops",
    };
    const held = planRetention(parted, { ...base, holds: [hold] } as RetentionFacts, NOW, { force: false });
    expect(held.actions).toEqual([]);
    expect(held.findings.filter((f) => f.code === "held").map((f) => f.message)).toEqual([
      "public.points_p202601 is held until 2026-06-01T00:00:00.000Z (audit): its 40 rows before the cutoff are kept",
    ]);
  });
});
