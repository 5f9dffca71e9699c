// The decisions each phase of `migrate convert` takes before it runs anything, from the facts it
// read: pure functions, so every branch is tested here without a database.
import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import { design } from "../../shared/convert/design.ts";
import type { ConversionState, TableFacts } from "../../shared/convert/facts.ts";
import { planPrepare } from "../../shared/convert/phase-prepare.ts";
import { decideRevert } from "../../shared/convert/phase-revert.ts";
import { designDrift, planSwap } from "../../shared/convert/phase-swap.ts";

const utc = (s: string) => new Date(s);
const policy = TablePolicySchema.parse({ table: "ew.points", timeColumn: "ts", premake: 1 });
const input = { policy, now: utc("2026-11-10T12:00:00Z"), dropUnique: [] };
const boundary = utc("2026-12-01T00:00:00Z");

const column = (name: string, type: string) => ({
  name,
  type,
  notNull: true,
  identity: "" as const,
  identitySequence: null,
  defaultExpr: null,
  generated: false,
  hasColumnGrants: false,
});
const index = (name: string, columns: string[]) => ({
  name,
  unique: false,
  primary: false,
  constraintName: null,
  valid: true,
  columns,
  definition: `CREATE INDEX ${name} ON ew.points USING btree (${columns.join(", ")})`,
  body: ` USING btree (${columns.join(", ")})`,
});
const facts = (over: Partial<TableFacts> = {}): TableFacts => ({
  table: { schema: "ew", name: "points" },
  exists: true,
  relkind: "r",
  isPartition: false,
  inheritance: false,
  persistence: "p",
  owner: "app",
  comment: null,
  replicaIdentity: "d",
  rowSecurity: false,
  rowEstimate: 10,
  totalBytes: 8192,
  columns: [column("device_id", "text"), column("ts", "timestamp with time zone")],
  constraints: [],
  indexes: [index("points_device_ts_idx", ["device_id", "ts"])],
  incomingForeignKeys: [],
  dependentViews: [],
  triggers: [],
  changeTriggers: [],
  rules: [],
  publications: [],
  ownedSequences: [],
  grants: [],
  minTime: utc("2026-01-01T00:00:00Z"),
  maxTime: utc("2026-11-10T00:00:00Z"),
  rowsAtOrAfterBoundary: 0,
  ...over,
});
const record = (phase: NonNullable<ConversionState["record"]>["phase"]) => ({ phase, boundary, plan: null });
const state = (over: Partial<ConversionState> = {}): ConversionState => ({
  record: record("prepared"),
  boundCheck: "valid",
  builtIndexes: {},
  parentExists: true,
  historyAttached: false,
  ...over,
});
const prepared = {
  hasIngestColumn: false,
  boundCheck: "valid" as const,
  builtIndexes: {},
  parentExists: true,
};
const d = design(facts(), { ...input, boundary });

describe("prepare", () => {
  it("a new conversion is designed, its warnings logged and recorded first", () => {
    const verdict = { blockers: [], warnings: ["no primary key"] };
    const plan = planPrepare({
      active: null,
      storedDesign: null,
      facts: facts(),
      prepared,
      input,
      boundary,
      verdict,
    });
    expect(plan.design).toEqual(d);
    expect(plan.warnings).toEqual(["no primary key"]);
    expect(plan.record?.id).toBe("record");
    expect(plan.steps.map((s) => s.id)).toEqual(["prepared"]);
  });
  it("a resumed conversion keeps its stored design, warns nothing again and records nothing", () => {
    const stored = { ...d, boundary: "2027-01-01T00:00:00.000Z" };
    const verdict = { blockers: [], warnings: ["no primary key"] };
    const plan = planPrepare({
      active: record("preparing"),
      storedDesign: stored,
      facts: facts(),
      prepared: { ...prepared, parentExists: false },
      input,
      boundary,
      verdict,
    });
    expect(plan.design).toBe(stored);
    expect(plan.warnings).toEqual([]);
    expect(plan.record).toBeNull();
    expect(plan.steps.map((s) => s.id)).toEqual(["parent", "prepared"]);
  });
});

describe("swap", () => {
  const swap = (over: Partial<Parameters<typeof planSwap>[0]> = {}) =>
    planSwap({
      shown: "ew.points",
      facts: facts(),
      stored: d,
      state: state(),
      input,
      prepared,
      boundary,
      nowMs: utc("2026-11-20T00:00:00Z").getTime(),
      ...over,
    });

  it("a prepared, unchanged table gets the swap step", () => {
    const plan = swap();
    expect(plan.kind).toBe("swap");
    if (plan.kind === "swap") {
      expect(plan.step.id).toBe("swap");
      expect(plan.warnings).toEqual([]);
    }
  });
  it("a view created since prepare blocks, as preflight would report it", () => {
    const plan = swap({ facts: facts({ dependentViews: [{ kind: "view", name: "ew.recent" }] }) });
    expect(plan.kind).toBe("blocked");
  });
  it("a column or index added since prepare refuses, naming it", () => {
    const changed = facts({
      columns: [...facts().columns, column("firmware", "text")],
      indexes: [...facts().indexes, index("points_fw_idx", ["firmware"])],
    });
    expect(designDrift(changed, d)).toEqual(["columns added: firmware", "indexes created: points_fw_idx"]);
    expect(swap({ facts: changed })).toMatchObject({
      kind: "refused",
      reason: expect.stringMatching(/changed since prepare \(columns added: firmware; indexes created/),
    });
  });
  it("an incomplete prepare refuses, after warning that the boundary is near", () => {
    const plan = swap({
      prepared: { ...prepared, boundCheck: "not-valid" },
      nowMs: boundary.getTime() - 10 * 60_000,
    });
    expect(plan).toEqual({
      kind: "refused",
      warnings: [expect.stringMatching(/is 10 min away/)],
      reason: "prepare is not complete (validate): run `migrate convert prepare` again",
    });
  });
});

describe("revert", () => {
  const stored = () => d;
  /** A design this release cannot read: the decisions that do not need it never ask for it. */
  const unreadable = () => {
    throw new Error("the design was read");
  };
  it("nothing to do without a conversion, or after a revert", () => {
    expect(decideRevert(null, unreadable, state(), "ew.points")).toEqual({
      kind: "nothing",
      message: "no conversion recorded: nothing to revert",
    });
    expect(decideRevert(record("reverted"), unreadable, state(), "ew.points")).toMatchObject({
      kind: "nothing",
    });
  });
  it("before the swap it abandons what prepare built; after it, it reverts while the history is attached", () => {
    expect(decideRevert(record("prepared"), stored, state(), "ew.points")).toEqual({
      kind: "abandon",
      design: d,
    });
    expect(decideRevert(record("swapped"), stored, state({ historyAttached: true }), "ew.points")).toEqual({
      kind: "revert",
      design: d,
    });
    expect(
      decideRevert(record("swapped"), stored, state({ historyAttached: false }), "ew.points"),
    ).toMatchObject({
      kind: "refused",
      reason: expect.stringMatching(/points_history is no longer a partition of ew\.points/),
    });
    expect(() => decideRevert(record("prepared"), unreadable, state(), "ew.points")).toThrow(
      "the design was read",
    );
  });
  it("refuses after finalize, without reading the design", () => {
    expect(decideRevert(record("finalized"), unreadable, state(), "ew.points")).toMatchObject({
      kind: "refused",
      reason: expect.stringMatching(/was finalized/),
    });
  });
});
