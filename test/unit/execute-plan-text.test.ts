// The executor's text on a terminal: the plan once, as a table in the interval's precision, then one
// progress line per action, nothing printed twice; JSON records stay one per planned action.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log/logger.ts";
import { type ActionSteps, executePlan, type PlanContext } from "../../shared/run/execute-plan.ts";

type Action = { kind: "create" | "fail"; name: string; from: Date; to: Date; rows: number };

function context(format: "text" | "json") {
  let text = "";
  const out = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  const ctx: PlanContext = {
    log: createLogger({ job: "partition-manager", format, out }).child({ table: "public.points" }),
    signal: new AbortController().signal,
    record: async () => {},
  };
  // Times of day and durations vary from run to run; the rest is the snapshot.
  const lines = () =>
    text.split("\n").map((l) => l.replace(/^\d\d:\d\d:\d\d /, "").replace(/\d+\.\d s$/, "#.# s"));
  return { ctx, lines, raw: () => text };
}

const steps: ActionSteps<Action> = {
  describe: (a) => `create ${a.name} [${a.from.toISOString()}, ${a.to.toISOString()})`,
  planFields: (a) => ({ action: a.kind, partition: a.name }),
  target: (a) => ({ partition: a.name, from: a.from, to: a.to }),
  apply: async (a) => {
    if (a.kind === "fail") throw new Error("lock timeout");
    return { rows: a.rows, outcome: "ok", detail: {}, logFields: { rowsMoved: a.rows } };
  },
  planRow: (a) => ({ rows: a.rows.toLocaleString("en-US"), action: a.rows ? "create (rescue)" : "create" }),
  progressText: (_a, applied) => `${(applied.rows ?? 0).toLocaleString("en-US")} rows moved`,
  doneSeverity: "info",
};

const month = (m: string, n: string, name: string, rows: number, kind: Action["kind"] = "create") => ({
  kind,
  name,
  from: new Date(`${m}-01T00:00:00Z`),
  to: new Date(`${n}-01T00:00:00Z`),
  rows,
});

const actions: Action[] = [
  month("2026-10", "2026-11", "points_p202610", 74411),
  month("2026-11", "2026-12", "points_p202611", 0),
];

describe("executePlan on a terminal", () => {
  it("prints the plan once as a table, then one progress line per action", async () => {
    const { ctx, lines } = context("text");
    await executePlan(ctx, { actions, findings: [] }, steps, { dryRun: false });
    expect(lines()).toEqual([
      "",
      "public.points",
      "  plan: 2 actions",
      "             partition       range                 rows  action",
      "             points_p202610  2026-10 .. 2026-11  74,411  create (rescue)",
      "             points_p202611  2026-11 .. 2026-12       0  create",
      "  [1/2] points_p202610  74,411 rows moved  #.# s",
      "  [2/2] points_p202611  0 rows moved  #.# s",
      "",
    ]);
  });

  it("a long plan shows its first 15 and last 5 actions and how many lie between", async () => {
    const { ctx, lines } = context("text");
    const many = Array.from({ length: 427 }, (_, i) => ({
      ...month("2026-10", "2026-11", `batch_${i + 1}`, 0),
    }));
    await executePlan(ctx, { actions: many, findings: [] }, steps, { dryRun: true });
    const table = lines().filter((l) => l.startsWith("             "));
    expect(lines()[2]).toBe("  would do 427 actions");
    expect(table).toHaveLength(1 + 15 + 1 + 5);
    expect(table[1]).toContain("batch_1 ");
    expect(table[15]).toContain("batch_15 ");
    expect(table[16]?.trim()).toBe("... 407 more ...");
    expect(table[17]).toContain("batch_423 ");
    expect(table[21]).toContain("batch_427 ");
  });

  it("a job's planRow may say the range itself", async () => {
    const { ctx, lines } = context("text");
    const ranged = {
      ...steps,
      planRow: () => ({ action: "recompute", range: "final before 2026-11-21 05:00" }),
    };
    await executePlan(ctx, { actions: [actions[0]!], findings: [] }, ranged, { dryRun: true });
    expect(lines()[4]).toContain("points_p202610  final before 2026-11-21 05:00");
  });

  it("a finding reads as its message, tagged by its severity", async () => {
    const { ctx, lines } = context("text");
    const findings = [
      { severity: "info" as const, code: "noted", message: "75,200 rows are past the cutoff" },
      { severity: "warn" as const, code: "skew", message: "5 rows are dated after 2027-03", partition: "p" },
      { severity: "crit" as const, code: "big", message: "not moving 74,411 rows", partition: "p" },
    ];
    await executePlan(ctx, { actions: [], findings }, steps, { dryRun: false });
    expect(lines()).toEqual([
      "",
      "public.points",
      "  75,200 rows are past the cutoff",
      "  WARN 5 rows are dated after 2027-03",
      "  ERROR not moving 74,411 rows",
      "",
    ]);
  });

  it("a dry run prints the table only; a failure is its progress line", async () => {
    const dry = context("text");
    await executePlan(dry.ctx, { actions, findings: [] }, steps, { dryRun: true });
    expect(dry.lines()[2]).toBe("  would do 2 actions");
    expect(dry.lines().filter((l) => l.includes("rows moved"))).toEqual([]);

    const failing = context("text");
    const plan = { actions: [month("2026-10", "2026-11", "points_p202610", 5, "fail")], findings: [] };
    await executePlan(failing.ctx, plan, steps, { dryRun: false });
    expect(failing.lines()).toContain("  ERROR [1/1] points_p202610  failed: lock timeout  #.# s");
  });

  it("JSON keeps one record per planned action and per applied action, without the text", async () => {
    const { ctx, raw } = context("json");
    await executePlan(ctx, { actions, findings: [] }, steps, { dryRun: false });
    const records = raw()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(records.map((r) => r.message)).toEqual([
      "plan: create points_p202610 [2026-10-01T00:00:00.000Z, 2026-11-01T00:00:00.000Z)",
      "plan: create points_p202611 [2026-11-01T00:00:00.000Z, 2026-12-01T00:00:00.000Z)",
      "done: create points_p202610 [2026-10-01T00:00:00.000Z, 2026-11-01T00:00:00.000Z)",
      "done: create points_p202611 [2026-11-01T00:00:00.000Z, 2026-12-01T00:00:00.000Z)",
    ]);
    expect(raw()).not.toContain("[1/2]");
    expect(raw()).not.toContain("2026-10 .. 2026-11");
  });
});
