// The one plan executor, with a fake table context: what it logs, when it stops (refusal, dry run,
// SIGTERM between actions, the first failure), what it audits and how it counts.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import { createLogger } from "../../shared/log/logger.ts";
import type { AuditAction } from "../../shared/run/audit.ts";
import {
  type ActionSteps,
  executePlan,
  type Plan,
  type PlanContext,
  type PlanEvent,
} from "../../shared/run/execute-plan.ts";
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

  it("a job that stops itself says why (the reason its signal was aborted with)", async () => {
    const abort = new AbortController();
    const { ctx, logs } = fakeContext(abort.signal);
    const actions: Action[] = [
      { kind: "make", name: "a" },
      { kind: "make", name: "b" },
    ];
    const done = await executePlan(
      ctx,
      plan(actions),
      steps([], () => abort.abort("the time budget is spent")),
      { dryRun: false },
    );
    expect(done.status).toBe("interrupted");
    expect(messages(logs).at(-1)).toEqual(["WARNING", "stopping between actions: the time budget is spent"]);
  });
});

describe("executePlan's failures", () => {
  it("anything thrown fails the action and stops the plan, not only an Error", async () => {
    const { ctx, audit } = fakeContext();
    const applied: string[] = [];
    const throwing: ActionSteps<Action> = {
      ...steps(applied),
      apply: async (a) => {
        if (a.name === "a") throw "a string, not an Error";
        applied.push(a.name);
        return { outcome: "ok", detail: {}, logFields: {} };
      },
    };
    const actions: Action[] = [
      { kind: "make", name: "a" },
      { kind: "make", name: "b" },
    ];
    const done = await executePlan(ctx, plan(actions), throwing, { dryRun: false });
    expect(done).toEqual({ status: "failed", actions: {}, error: "a string, not an Error" });
    expect(applied).toEqual([]);
    expect(audit.map((a) => [a.outcome, a.error])).toEqual([["failed", "a string, not an Error"]]);
  });

  it("a terminal rendering that throws cannot turn a done action into a failed one", async () => {
    const { ctx, audit } = fakeContext();
    const rendering: ActionSteps<Action> = {
      ...steps([]),
      progressText: () => {
        throw new Error("render bug");
      },
      planRow: () => {
        throw new Error("render bug");
      },
    };
    const done = await executePlan(ctx, plan([{ kind: "make", name: "a" }]), rendering, { dryRun: false });
    expect(done).toEqual({ status: "ok", actions: { make: 1 } });
    expect(audit.map((a) => a.outcome)).toEqual(["ok"]);
  });
});

describe("executePlan's hooks", () => {
  /** A context that is not the runner's TableContext: no policy, only what the executor uses. */
  function bareContext(signal = new AbortController().signal) {
    const { ctx, logs, audit } = fakeContext(signal);
    const bare: PlanContext = { log: ctx.log, signal: ctx.signal, record: ctx.record };
    return { ctx: bare, logs, audit };
  }

  /** A report hook that writes two records per action event and says what it was given. */
  function reporting(events: string[], logOf: () => PlanContext["log"]) {
    return (event: PlanEvent<Action>) => {
      const log = logOf();
      switch (event.event) {
        case "plan":
          log.notice(`${event.dryRun ? "would" : "will"} ${event.action.name}`);
          log.notice(`  statement of ${event.action.name};`);
          break;
        case "done":
          log.info(`finished ${event.action.name}`, { rows: event.applied.rows });
          break;
        case "failed":
          events.push(`failed ${event.action.name}: ${(event.error as Error).message}`);
          break;
        case "refused":
          log.error("report line 1");
          log.error(`report line 2: ${event.refusal}`);
          break;
        case "interrupted":
          events.push(`interrupted before ${event.next.name}`);
          break;
      }
    };
  }

  it("report replaces the executor's records: several per plan entry, its own done line", async () => {
    for (const dryRun of [false, true]) {
      const { ctx, logs, audit } = bareContext();
      const applied: string[] = [];
      const events: string[] = [];
      const actions: Action[] = [
        { kind: "make", name: "a" },
        { kind: "make", name: "b" },
      ];
      const done = await executePlan(
        ctx,
        plan(actions, { findings: [] }),
        { ...steps(applied), report: reporting(events, () => ctx.log) },
        { dryRun },
      );
      expect(done.status).toBe(dryRun ? "planned" : "ok");
      const planned = (v: string) => [
        ["NOTICE", `${v} a`],
        ["NOTICE", "  statement of a;"],
        ["NOTICE", `${v} b`],
        ["NOTICE", "  statement of b;"],
      ];
      expect(messages(logs)).toEqual(
        dryRun ? planned("would") : [...planned("will"), ["INFO", "finished a"], ["INFO", "finished b"]],
      );
      expect(audit).toHaveLength(dryRun ? 0 : 2);
      expect(events).toEqual([]);
    }
  });

  it("report gets the error a failed action threw, and the refusal to report in full", async () => {
    const { ctx, logs, audit } = bareContext();
    const events: string[] = [];
    const report = reporting(events, () => ctx.log);
    const failed = await executePlan(
      ctx,
      plan([{ kind: "fail", name: "x" }], { findings: [] }),
      { ...steps([]), report },
      { dryRun: false },
    );
    expect(failed).toEqual({ status: "failed", actions: {}, error: "cannot x" });
    expect(events).toEqual(["failed x: cannot x"]);
    expect(audit.map((a) => [a.kind, a.outcome])).toEqual([["fail", "failed"]]);
    const refused = bareContext();
    await executePlan(
      refused.ctx,
      plan([], { findings: [], refusal: "no" }),
      { ...steps([]), report: reporting([], () => refused.ctx.log) },
      { dryRun: false },
    );
    // Findings and "nothing to do" are the executor's own records still.
    expect(messages(refused.logs)).toEqual([
      ["INFO", "nothing to do"],
      ["ERROR", "report line 1"],
      ["ERROR", "report line 2: no"],
    ]);
    expect(messages(logs).filter(([, m]) => String(m).startsWith("failed"))).toEqual([]);
  });

  it("report hears of an interruption with the action that was next", async () => {
    const abort = new AbortController();
    const { ctx, logs } = bareContext(abort.signal);
    const events: string[] = [];
    const actions: Action[] = [
      { kind: "make", name: "a" },
      { kind: "make", name: "b" },
    ];
    const done = await executePlan(
      ctx,
      plan(actions, { findings: [] }),
      { ...steps([], () => abort.abort()), report: reporting(events, () => ctx.log) },
      { dryRun: false },
    );
    expect(done).toEqual({ status: "interrupted", actions: { make: 1 } });
    expect(events).toEqual(["interrupted before b"]);
    expect(messages(logs).some(([, m]) => String(m).startsWith("stopping"))).toBe(false);
  });

  it("afterAction runs after each applied action, before the next and before the signal check", async () => {
    const abort = new AbortController();
    const { ctx, audit } = bareContext(abort.signal);
    const order: string[] = [];
    const actions: Action[] = [
      { kind: "make", name: "a" },
      { kind: "make", name: "b" },
      { kind: "fail", name: "c" },
      { kind: "make", name: "d" },
    ];
    const done = await executePlan(
      ctx,
      plan(actions),
      {
        ...steps([], (a) => order.push(`apply ${a.name}`)),
        afterAction: async (a) => {
          order.push(`after ${a.name} (${audit.length} audited)`);
        },
      },
      { dryRun: false },
    );
    expect(done.status).toBe("failed");
    // Not after a failed action: the run stops there.
    expect(order).toEqual(["apply a", "after a (1 audited)", "apply b", "after b (2 audited)", "apply c"]);

    const stopped: string[] = [];
    const run = executePlan(
      ctx,
      plan(actions.slice(0, 2)),
      {
        ...steps([]),
        afterAction: async (a) => {
          stopped.push(a.name);
          abort.abort();
        },
      },
      { dryRun: false },
    );
    expect(await run).toEqual({ status: "interrupted", actions: { make: 1 } });
    expect(stopped).toEqual(["a"]);

    const dry: string[] = [];
    await executePlan(
      bareContext().ctx,
      plan(actions.slice(0, 2)),
      { ...steps([]), afterAction: async (a) => void dry.push(a.name) },
      { dryRun: true },
    );
    expect(dry).toEqual([]);
  });
});
