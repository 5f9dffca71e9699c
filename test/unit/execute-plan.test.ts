// The one plan executor, with a fake table context: what it logs, when it stops (refusal, dry run,
// SIGTERM between actions, the first failure), what it audits and how it counts.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import { createLogger } from "../../shared/log/logger.ts";
import type { AuditAction } from "../../shared/run/audit.ts";
import { type ActionSteps, executePlan, type Plan } from "../../shared/run/execute-plan.ts";
import type { TableContext } from "../../shared/run/runner.ts";

type Action = { kind: "make" | "fail"; name: string };

function fakeContext(signal = new AbortController().signal) {
  const logs: Record<string, unknown>[] = [];
  const audit: Omit<AuditAction, "table">[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) logs.push(JSON.parse(line));
      done();
    },
  });
  const ctx: TableContext = {
    policy: TablePolicySchema.parse({ table: "public.points", timeColumn: "ts" }),
    log: createLogger({ job: "test", format: "json", out, verbose: true }),
    signal,
    record: async (a) => {
      audit.push(a);
    },
  };
  return { ctx, logs, audit };
}

function steps(applied: string[], onApply?: (a: Action) => void): ActionSteps<Action> {
  return {
    describe: (a) => `${a.kind} ${a.name}`,
    planFields: (a) => ({ action: a.kind, partition: a.name }),
    target: (a) => ({ partition: a.name }),
    apply: async (a) => {
      onApply?.(a);
      if (a.kind === "fail") throw new Error(`cannot ${a.name}`);
      applied.push(a.name);
      return { rows: 1, outcome: "ok", detail: { how: "fast" }, logFields: { rowsMoved: 1 } };
    },
    nothingToDo: "nothing to do",
    doneSeverity: "notice",
  };
}

const plan = (actions: Action[], extra: Partial<Plan<Action>> = {}): Plan<Action> => ({
  actions,
  findings: [
    { severity: "info", code: "noted", message: "an info finding" },
    { severity: "warn", code: "odd", message: "a warning", partition: "public.p" },
  ],
  ...extra,
});

const messages = (logs: Record<string, unknown>[]) => logs.map((l) => [l.severity, l.message]);

describe("executePlan", () => {
  it("logs findings and the plan, applies every action in order, audits and counts them", async () => {
    const { ctx, logs, audit } = fakeContext();
    const applied: string[] = [];
    const actions: Action[] = [
      { kind: "make", name: "a" },
      { kind: "make", name: "b" },
    ];
    const done = await executePlan(ctx, plan(actions), steps(applied), { dryRun: false });
    expect(done).toEqual({ status: "ok", actions: { make: 2 } });
    expect(applied).toEqual(["a", "b"]);
    expect(messages(logs)).toEqual([
      ["INFO", "an info finding"],
      ["WARNING", "a warning"],
      ["INFO", "plan: make a"],
      ["INFO", "plan: make b"],
      ["NOTICE", "done: make a"],
      ["NOTICE", "done: make b"],
    ]);
    expect(logs[1]).toMatchObject({ finding: "odd", partition: "public.p" });
    expect(logs[4]).toMatchObject({ action: "make", partition: "a", rowsMoved: 1 });
    expect(audit.map((a) => [a.kind, a.partition, a.outcome, a.rows, a.detail])).toEqual([
      ["make", "a", "ok", 1, { how: "fast" }],
      ["make", "b", "ok", 1, { how: "fast" }],
    ]);
  });

  it("a dry run plans, counts and changes nothing; an empty plan says so", async () => {
    const { ctx, logs, audit } = fakeContext();
    const applied: string[] = [];
    const done = await executePlan(ctx, plan([{ kind: "make", name: "a" }]), steps(applied), {
      dryRun: true,
    });
    expect(done).toEqual({ status: "planned", actions: { make: 1 } });
    expect(applied).toEqual([]);
    expect(audit).toEqual([]);
    expect(messages(logs).at(-1)).toEqual(["INFO", "would make a"]);
    const empty = fakeContext();
    await executePlan(empty.ctx, plan([]), steps([]), { dryRun: false });
    expect(messages(empty.logs).at(-1)).toEqual(["INFO", "nothing to do"]);
  });

  it("a refusal is logged after the plan and nothing is applied, dry run or not", async () => {
    for (const dryRun of [false, true]) {
      const { ctx, logs, audit } = fakeContext();
      const applied: string[] = [];
      const done = await executePlan(
        ctx,
        plan([{ kind: "make", name: "a" }], { refusal: "refused: too much" }),
        steps(applied),
        { dryRun },
      );
      expect(done).toEqual({ status: "refused", error: "refused: too much" });
      expect(applied).toEqual([]);
      expect(audit).toEqual([]);
      expect(logs.at(-1)).toMatchObject({ severity: "ERROR", message: "refused: too much", refused: true });
    }
  });

  it("stops at the first failure, audited as failed; later actions are not tried", async () => {
    const { ctx, logs, audit } = fakeContext();
    const applied: string[] = [];
    const actions: Action[] = [
      { kind: "make", name: "a" },
      { kind: "fail", name: "b" },
      { kind: "make", name: "c" },
    ];
    const done = await executePlan(ctx, plan(actions), steps(applied), { dryRun: false });
    expect(done).toEqual({ status: "failed", actions: { make: 1 }, error: "cannot b" });
    expect(applied).toEqual(["a"]);
    expect(audit.map((a) => [a.kind, a.outcome, a.error])).toEqual([
      ["make", "ok", undefined],
      ["fail", "failed", "cannot b"],
    ]);
    expect(logs.at(-1)).toMatchObject({
      severity: "ERROR",
      message: "failed: fail b",
      action: "fail",
      partition: "b",
      error: "cannot b",
    });
  });

  it("checks for termination between actions", async () => {
    const abort = new AbortController();
    const { ctx, logs } = fakeContext(abort.signal);
    const applied: string[] = [];
    const actions: Action[] = [
      { kind: "make", name: "a" },
      { kind: "make", name: "b" },
    ];
    const done = await executePlan(
      ctx,
      plan(actions),
      steps(applied, () => abort.abort()),
      { dryRun: false },
    );
    expect(done).toEqual({ status: "interrupted", actions: { make: 1 } });
    expect(applied).toEqual(["a"]);
    expect(messages(logs).at(-1)).toEqual(["WARNING", "stopping between actions: termination requested"]);
  });
});
