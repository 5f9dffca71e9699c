// planRetention's decisions one by one, on hand-made catalogs: which children are expired (upper
// bound at or before the cutoff), holds, the guard rails and their messages, row deletes in DEFAULT,
// straddling children and plain tables, archive name clashes, and the order of the actions.
import { describe, expect, it } from "vitest";
import { type TablePolicy, TablePolicySchema } from "../../shared/config/policy.ts";
import type { ChildPartition, TableCatalog } from "../../shared/partitions/catalog.ts";
import {
  KEEP_FLOOR_MS,
  keepOf,
  planRetention,
  type RetentionFacts,
  retentionCutoff,
} from "../../shared/retention/plan.ts";

const NOW = new Date("2026-03-01T00:00:00Z");
const CUTOFF = new Date("2026-02-01T00:00:00Z"); // keep "1 month"

function policyWith(retention: Record<string, unknown>, table = "public.points"): TablePolicy {
  return TablePolicySchema.parse({ table, timeColumn: "ts", retention: { keep: "1 month", ...retention } });
}

function child(
  name: string,
  from: Date | "MINVALUE",
  to: Date | "MAXVALUE",
  extra: Partial<ChildPartition> = {},
) {
  return {
    schema: "public",
    name,
    bound: { kind: "range" as const, from, to },
    boundText: "FOR VALUES FROM (...) TO (...)",
    rowEstimate: 10,
    bytes: 8192,
    detachPending: false,
    ...extra,
  };
}

const month = (m: string) => {
  const from = new Date(`${m}-01T00:00:00Z`);
  return [from, new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1))] as const;
};
const monthly = (m: string, extra: Partial<ChildPartition> = {}) =>
  child(`points_p${m.replace("-", "")}`, ...month(m), extra);

const DEFAULT_CHILD: ChildPartition = {
  schema: "public",
  name: "points_default",
  bound: { kind: "default" },
  boundText: "DEFAULT",
  rowEstimate: 0,
  bytes: 8192,
  detachPending: false,
};

function catalog(children: ChildPartition[], withDefault = false): TableCatalog {
  return {
    table: { schema: "public", name: "points" },
    oid: 1,
    keyColumn: "ts",
    keyType: "timestamptz",
    children,
    defaultPartition: withDefault ? DEFAULT_CHILD : undefined,
    defaultBuckets: [],
    defaultNullKeyRows: 0,
    columns: ["ts"],
  };
}

function facts(over: Partial<RetentionFacts> = {}): RetentionFacts {
  return {
    table: "public.points",
    catalog: undefined,
    childHasRows: new Map(),
    expiredRows: new Map(),
    unfinishedRemovals: [],
    holds: [],
    archiveClashes: new Map(),
    rollup: undefined,
    ...over,
  };
}

const hold = (partition: string, until: Date | string, reason = "incident 42") => ({
  partition,
  until: new Date(until),
  reason,
  createdBy: "ops",
});

const plan = (policy: TablePolicy, f: RetentionFacts, force = false) =>
  planRetention(policy, f, NOW, { force });

describe("keepOf / retentionCutoff", () => {
  it("the cutoff is now minus keep; a policy without retention has none", () => {
    expect(retentionCutoff(policyWith({}), NOW)).toEqual(CUTOFF);
    expect(keepOf(policyWith({ keep: "90 days" }))).toEqual({ amount: 90, unit: "day" });
    const none = TablePolicySchema.parse({ table: "public.points", timeColumn: "ts" });
    expect(() => keepOf(none)).toThrow("public.points has no valid retention.keep");
  });
});

describe("planRetention: the keep floor", () => {
  it("refuses a keep under one day unless forced; exactly one day is allowed", () => {
    expect(KEEP_FLOOR_MS).toBe(86_400_000);
    const short = plan(policyWith({ keep: "23 hours" }), facts({ catalog: catalog([]) }));
    expect(short.refusal).toBe(
      'refused: keep "23 hours" is shorter than the 1 day floor. Check retention.keep and maxDropsPerRun; run with --dry-run to see the plan, and with --force if this is really intended.',
    );
    expect(
      plan(policyWith({ keep: "23 hours" }), facts({ catalog: catalog([]) }), true).refusal,
    ).toBeUndefined();
    expect(plan(policyWith({ keep: "24 hours" }), facts({ catalog: catalog([]) })).refusal).toBeUndefined();
    expect(plan(policyWith({ keep: "1 day" }), facts({ catalog: catalog([]) })).refusal).toBeUndefined();
  });
});

describe("planRetention: which children expire", () => {
  it("a child whose upper bound is at the cutoff goes, one that ends a moment later stays; MAXVALUE never expires", () => {
    const atCutoff = monthly("2026-01");
    const justAfter = child("points_late", new Date("2026-01-01T00:00:00Z"), new Date(CUTOFF.getTime() + 1));
    const open = child("points_open", new Date("2025-01-01T00:00:00Z"), "MAXVALUE");
    const p = plan(policyWith({}), facts({ catalog: catalog([atCutoff, justAfter, open]) }));
    expect(p.actions).toEqual([
      {
        kind: "remove_partition",
        partition: { schema: "public", name: "points_p202601" },
        from: new Date("2026-01-01T00:00:00Z"),
        to: CUTOFF,
        rowsEstimate: 10,
        bytes: 8192,
        mode: "drop",
        concurrently: true,
      },
    ]);
    expect(p.findings).toEqual([]);
    expect(p.refusal).toBeUndefined();
    expect(p.table).toBe("public.points");
    expect(p.cutoff).toEqual(CUTOFF);
  });

  it("a MINVALUE lower bound is reported as from null; with a DEFAULT partition the detach is not concurrent", () => {
    const historical = child("points_hist", "MINVALUE", new Date("2025-06-01T00:00:00Z"));
    const p = plan(policyWith({ mode: "detach" }), facts({ catalog: catalog([historical], true) }));
    expect(p.actions).toEqual([
      expect.objectContaining({ kind: "remove_partition", from: null, mode: "detach", concurrently: false }),
    ]);
  });

  it("removals come oldest first, whatever the catalog order", () => {
    const p = plan(
      policyWith({ maxDropsPerRun: 10 }),
      facts({
        catalog: catalog([monthly("2025-12"), monthly("2025-10"), monthly("2025-11"), monthly("2026-02")]),
      }),
    );
    expect(p.actions.map((a) => a.kind === "remove_partition" && a.partition.name)).toEqual([
      "points_p202510",
      "points_p202511",
      "points_p202512",
    ]);
  });

  it("a child whose detach is pending is finalized first, whatever its bounds", () => {
    const pending = monthly("2026-06", { detachPending: true });
    const p = plan(policyWith({}), facts({ catalog: catalog([pending]) }));
    expect(p.actions).toEqual([
      { kind: "finalize_detach", partition: { schema: "public", name: "points_p202606" } },
    ]);
    expect(p.findings).toEqual([]);
  });

  it("nothing expired: one info finding naming the cutoff", () => {
    const p = plan(policyWith({}), facts({ catalog: catalog([monthly("2026-02")], true) }));
    expect(p.actions).toEqual([]);
    expect(p.findings).toEqual([
      {
        severity: "info",
        code: "nothing_expired",
        message: "nothing is older than the cutoff 2026-02-01T00:00:00.000Z",
      },
    ]);
  });
});

describe("planRetention: holds", () => {
  it("a hold that lasts past now keeps the child (info finding); one that ends at now or before does not", () => {
    const dec = monthly("2025-12");
    const nov = monthly("2025-11");
    const oct = monthly("2025-10");
    const p = plan(
      policyWith({}),
      facts({
        catalog: catalog([oct, nov, dec]),
        holds: [
          hold("public.points_p202512", "2026-03-01T00:00:01Z", "legal"),
          hold("public.points_p202511", NOW, "audit, finished"),
        ],
      }),
    );
    expect(p.findings).toEqual([
      {
        severity: "info",
        code: "hold_expired",
        partition: "public.points_p202511",
        message:
          "the hold on public.points_p202511 expired at 2026-03-01T00:00:00.000Z (audit, finished); it is removed now",
      },
      {
        severity: "info",
        code: "held",
        partition: "public.points_p202512",
        message:
          "kept public.points_p202512 past its cutoff: held until 2026-03-01T00:00:01.000Z by ops (legal)",
      },
    ]);
    expect(p.actions).toEqual([
      expect.objectContaining({ partition: { schema: "public", name: "points_p202510" } }),
      expect.objectContaining({
        partition: { schema: "public", name: "points_p202511" },
        expiredHold: "audit, finished",
      }),
    ]);
    expect(p.actions[0]).not.toHaveProperty("expiredHold");
  });
});

describe("planRetention: guard rails", () => {
  it("maxDropsPerRun: exactly that many pass, one more is refused, naming them; --force lifts it", () => {
    const three = [monthly("2025-10"), monthly("2025-11"), monthly("2025-12"), monthly("2026-02")];
    expect(
      plan(policyWith({ maxDropsPerRun: 3 }), facts({ catalog: catalog(three) })).refusal,
    ).toBeUndefined();
    const four = [monthly("2025-09"), ...three];
    const refused = plan(policyWith({ maxDropsPerRun: 3 }), facts({ catalog: catalog(four) }));
    expect(refused.refusal).toBe(
      "refused: it would remove 4 partitions, more than maxDropsPerRun (3): public.points_p202509, public.points_p202510, public.points_p202511, public.points_p202512. Check retention.keep and maxDropsPerRun; run with --dry-run to see the plan, and with --force if this is really intended.",
    );
    expect(refused.actions).toHaveLength(4); // the plan is still reported (dry runs print it)
    expect(
      plan(policyWith({ maxDropsPerRun: 3 }), facts({ catalog: catalog(four) }), true).refusal,
    ).toBeUndefined();
  });

  it("removing every child that holds rows is refused; keeping one of them, or no child having rows, is not", () => {
    const children = [monthly("2025-12"), monthly("2026-01"), monthly("2026-05")];
    const all = plan(
      policyWith({}),
      facts({
        catalog: catalog(children),
        childHasRows: new Map([
          ["public.points_p202512", true],
          ["public.points_p202601", true],
          ["public.points_p202605", false],
        ]),
      }),
    );
    expect(all.refusal).toBe(
      "refused: it would remove every partition that holds data (public.points_p202512, public.points_p202601). Check retention.keep and maxDropsPerRun; run with --dry-run to see the plan, and with --force if this is really intended.",
    );
    const kept = plan(
      policyWith({}),
      facts({
        catalog: catalog(children),
        childHasRows: new Map([
          ["public.points_p202512", true],
          ["public.points_p202605", true],
        ]),
      }),
    );
    expect(kept.refusal).toBeUndefined();
    const empty = plan(
      policyWith({}),
      facts({ catalog: catalog(children), childHasRows: new Map([["public.points_p202512", false]]) }),
    );
    expect(empty.refusal).toBeUndefined();
  });

  it("two refusals are joined", () => {
    const p = plan(
      policyWith({ keep: "2 hours", maxDropsPerRun: 1 }),
      facts({
        catalog: catalog([
          child("points_a", new Date(0), new Date(1)),
          child("points_b", new Date(1), new Date(2)),
        ]),
      }),
    );
    expect(p.refusal).toMatch(
      /^refused: keep "2 hours" is shorter than the 1 day floor; and it would remove 2 partitions/,
    );
  });
});

describe("planRetention: rows deleted one by one", () => {
  it("DEFAULT's expired rows are deleted from DEFAULT itself, after the removals", () => {
    const p = plan(
      policyWith({}),
      facts({
        catalog: catalog([monthly("2025-12"), monthly("2026-02")], true),
        expiredRows: new Map([["public.points_default", 7]]),
      }),
    );
    expect(p.actions).toEqual([
      expect.objectContaining({ kind: "remove_partition" }),
      {
        kind: "delete_rows",
        relation: { schema: "public", name: "points_default" },
        reason: "default_partition",
        before: CUTOFF,
        rows: 7,
      },
    ]);
    const none = plan(
      policyWith({}),
      facts({
        catalog: catalog([monthly("2026-02")], true),
        expiredRows: new Map([["public.points_default", 0]]),
      }),
    );
    expect(none.actions).toEqual([]);
  });

  it("rows the run only estimated (above a bound, where it deletes in time order): the action and every message say about", () => {
    const estimated = {
      catalog: catalog([monthly("2026-02")], true),
      expiredRows: new Map([["public.points_default", 25_000]]),
      rowEstimates: new Map([["public.points_default", { deletable: true, notFinal: false }]]),
    };
    const p = plan(policyWith({}), facts(estimated));
    expect(p.actions).toEqual([
      {
        kind: "delete_rows",
        relation: { schema: "public", name: "points_default" },
        reason: "default_partition",
        before: CUTOFF,
        rows: 25_000,
        rowsEstimated: true,
      },
    ]);
    const held = plan(
      policyWith({}),
      facts({ ...estimated, holds: [hold("public.points_default", "2026-03-02")] }),
    );
    expect(held.actions).toEqual([]);
    expect(held.findings.map((f) => f.message)).toContainEqual(
      expect.stringContaining("its about 25000 rows before the cutoff are kept"),
    );
  });

  it("exactCutoff: a child that straddles the cutoff (or starts at MINVALUE) loses its expired rows; one that starts at the cutoff has none", () => {
    const straddling = child(
      "points_mid",
      new Date("2026-01-15T00:00:00Z"),
      new Date("2026-02-15T00:00:00Z"),
    );
    const fromCutoff = child("points_feb", CUTOFF, new Date("2026-03-01T00:00:00Z"));
    const historical = child("points_hist", "MINVALUE", new Date("2026-02-10T00:00:00Z"));
    const expiredRows = new Map([
      ["public.points_mid", 4],
      ["public.points_feb", 9],
      ["public.points_hist", 2],
    ]);
    const exact = plan(
      policyWith({ exactCutoff: true }),
      facts({ catalog: catalog([straddling, fromCutoff, historical]), expiredRows }),
    );
    expect(exact.actions).toEqual([
      {
        kind: "delete_rows",
        relation: { schema: "public", name: "points_mid" },
        reason: "straddling_partition",
        before: CUTOFF,
        rows: 4,
      },
      {
        kind: "delete_rows",
        relation: { schema: "public", name: "points_hist" },
        reason: "straddling_partition",
        before: CUTOFF,
        rows: 2,
      },
    ]);
    const notExact = plan(
      policyWith({}),
      facts({ catalog: catalog([straddling, fromCutoff, historical]), expiredRows }),
    );
    expect(notExact.actions).toEqual([]);
    const noRows = plan(
      policyWith({ exactCutoff: true }),
      facts({ catalog: catalog([straddling]), expiredRows: new Map() }),
    );
    expect(noRows.actions).toEqual([]);
    expect(noRows.findings.map((f) => f.code)).toEqual(["nothing_expired"]);
  });

  it("exactCutoff and a hold: held while the hold lasts past now (info finding), deleted once it ends at now", () => {
    const straddling = child(
      "points_mid",
      new Date("2026-01-15T00:00:00Z"),
      new Date("2026-02-15T00:00:00Z"),
    );
    const base = { catalog: catalog([straddling]), expiredRows: new Map([["public.points_mid", 4]]) };
    const held = plan(
      policyWith({ exactCutoff: true }),
      facts({ ...base, holds: [hold("public.points_mid", "2026-03-02")] }),
    );
    expect(held.actions).toEqual([]);
    expect(held.findings).toEqual([
      {
        severity: "info",
        code: "held",
        partition: "public.points_mid",
        message:
          "public.points_mid is held until 2026-03-02T00:00:00.000Z (incident 42): its 4 rows before the cutoff are kept",
      },
      {
        severity: "info",
        code: "nothing_expired",
        message: "nothing is older than the cutoff 2026-02-01T00:00:00.000Z",
      },
    ]);
    const ended = plan(
      policyWith({ exactCutoff: true }),
      facts({ ...base, holds: [hold("public.points_mid", NOW)] }),
    );
    expect(ended.actions.map((a) => a.kind)).toEqual(["delete_rows"]);
    const heldNoRows = plan(
      policyWith({ exactCutoff: true }),
      facts({ ...base, expiredRows: new Map(), holds: [hold("public.points_mid", "2026-03-02")] }),
    );
    expect(heldNoRows.findings.map((f) => f.code)).toEqual(["nothing_expired"]);
  });

  it("a plain table: its expired rows are deleted from the table itself", () => {
    const plain = TablePolicySchema.parse({
      table: "public.legacy",
      timeColumn: "ts",
      partitioned: false,
      retention: { keep: "1 month" },
    });
    const p = plan(plain, facts({ table: "public.legacy", expiredRows: new Map([["public.legacy", 12]]) }));
    expect(p.actions).toEqual([
      {
        kind: "delete_rows",
        relation: { schema: "public", name: "legacy" },
        reason: "plain_table",
        before: CUTOFF,
        rows: 12,
      },
    ]);
    expect(p.findings).toEqual([]);
    const none = plan(plain, facts({ table: "public.legacy" }));
    expect(none.actions).toEqual([]);
    expect(none.findings.map((f) => f.code)).toEqual(["nothing_expired"]);
  });
});

describe("planRetention: archive name clashes", () => {
  const clashes = new Map([["public.points_p202512", ["points_p202512", "points_p202512_pkey"]]]);

  it("archive mode: an expired child whose names are taken in the archive stays, with a warning", () => {
    const p = plan(
      policyWith({ mode: "archive", archiveSchema: "cold" }),
      facts({ catalog: catalog([monthly("2025-11"), monthly("2025-12")]), archiveClashes: clashes }),
    );
    expect(p.actions.map((a) => a.kind === "remove_partition" && a.partition.name)).toEqual([
      "points_p202511",
    ]);
    expect(p.findings).toEqual([
      {
        severity: "warn",
        code: "archive_name_taken",
        partition: "public.points_p202512",
        message:
          "public.points_p202512 is expired, but the archive already has cold.points_p202512, cold.points_p202512_pkey, which moving it there needs (archived from another table of the same name?). public.points_p202512 is left as it is; rename what is in the way, or give this table an archiveSchema of its own.",
      },
    ]);
  });

  it("an empty clash list, or another mode, removes it as usual", () => {
    const none = plan(
      policyWith({ mode: "archive", archiveSchema: "cold" }),
      facts({
        catalog: catalog([monthly("2025-12")]),
        archiveClashes: new Map([["public.points_p202512", []]]),
      }),
    );
    expect(none.actions.map((a) => a.kind)).toEqual(["remove_partition"]);
    expect(none.findings).toEqual([]);
    const drop = plan(
      policyWith({ mode: "drop" }),
      facts({ catalog: catalog([monthly("2025-12")]), archiveClashes: clashes }),
    );
    expect(drop.actions.map((a) => a.kind)).toEqual(["remove_partition"]);
  });

  it("a killed archive run's leftover is not finished while its names are taken", () => {
    const p = plan(
      policyWith({ mode: "archive", archiveSchema: "cold" }),
      facts({
        catalog: catalog([]),
        unfinishedRemovals: [{ partition: { schema: "public", name: "points_p202512" }, mode: "archive" }],
        archiveClashes: clashes,
      }),
    );
    expect(p.actions).toEqual([]);
    expect(p.findings.map((f) => f.code)).toEqual(["archive_name_taken", "nothing_expired"]);
  });
});

describe("planRetention: a removal a killed run started", () => {
  const left = (mode: "drop" | "detach" | "archive") => ({
    partition: { schema: "public", name: "points_p202512" },
    mode,
  });

  it("held past now: stays detached, and the message says what is not done for its mode", () => {
    const holds = [hold("public.points_p202512", "2026-03-01T00:00:01Z")];
    const drop = plan(
      policyWith({}),
      facts({ catalog: catalog([]), unfinishedRemovals: [left("drop")], holds }),
    );
    expect(drop.actions).toEqual([]);
    expect(drop.findings[0]).toEqual({
      severity: "info",
      code: "held",
      partition: "public.points_p202512",
      message:
        "public.points_p202512 is held until 2026-03-01T00:00:01.000Z (incident 42); a killed run had started removing it (mode drop): it stays detached and is not dropped until the hold ends",
    });
    const archive = plan(
      policyWith({}),
      facts({ catalog: catalog([]), unfinishedRemovals: [left("archive")], holds }),
    );
    expect(archive.findings[0]?.message).toMatch(
      /\(mode archive\): it stays detached and is not moved until the hold ends$/,
    );
  });

  it("a hold ending at now, or one on another partition, does not stop it", () => {
    for (const holds of [
      [hold("public.points_p202512", NOW)],
      [hold("public.points_p202511", "2026-06-01")],
    ]) {
      const p = plan(
        policyWith({}),
        facts({ catalog: catalog([]), unfinishedRemovals: [left("detach")], holds }),
      );
      expect(p.actions).toEqual([
        { kind: "finish_removal", partition: { schema: "public", name: "points_p202512" }, mode: "detach" },
      ]);
      expect(p.findings).toEqual([]);
    }
  });
});
