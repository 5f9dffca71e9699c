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
  ...over,
});

describe("planRetention: finishing a removal a killed run started", () => {
  const unfinished = [{ partition: "public.legacy_p202512", mode: "drop" as const }];

  it("is finished when nothing holds the partition", () => {
    const plan = planRetention(policy, facts({ unfinishedRemovals: unfinished }), NOW, { force: false });
    expect(plan.actions).toEqual([
      { kind: "finish_removal", partition: "public.legacy_p202512", mode: "drop" },
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
