// planRetention's decisions as tables of cases, each with the exact plan it must give: the refusals
// (keep under the 1 day floor, more removals than maxDropsPerRun, every child that holds data) and
// what --force does to them; holds (a held child is kept, an expired hold is ignored and named); and
// the three ways to remove an expired child (drop, detach, archive), concurrently or not, with what a
// killed run left behind. The catalogs are built by hand, so no database is involved.
import { describe, expect, it } from "vitest";
import { type TablePolicy, TablePolicySchema } from "../../shared/config/policy.ts";
import type { ChildPartition, TableCatalog } from "../../shared/partitions/catalog.ts";
import type { RetentionHold } from "../../shared/retention/holds.ts";
import {
  planRetention,
  type RetentionAction,
  type RetentionFacts,
  type RetentionFinding,
  type RetentionPlan,
} from "../../shared/retention/plan.ts";

const NOW = new Date("2026-03-01T00:00:00Z");
const CUTOFF = "2026-02-01T00:00:00.000Z"; // NOW minus the default keep of "1 month"
const ADVICE =
  "Check retention.keep and maxDropsPerRun; run with --dry-run to see the plan, and with --force if this is really intended.";

function policy(retention: Record<string, unknown> = {}): TablePolicy {
  return TablePolicySchema.parse({
    table: "public.points",
    timeColumn: "ts",
    retention: { keep: "1 month", ...retention },
  });
}

/** The monthly child for "YYYY-MM", named points_pYYYYMM. */
function monthly(m: string, extra: Partial<ChildPartition> = {}): ChildPartition {
  const from = new Date(`${m}-01T00:00:00Z`);
  const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
  return {
    schema: "public",
    name: `points_p${m.replace("-", "")}`,
    bound: { kind: "range", from, to },
    boundText: "FOR VALUES FROM (...) TO (...)",
    rowEstimate: 10,
    bytes: 8192,
    detachPending: false,
    ...extra,
  };
}

const DEFAULT_CHILD: ChildPartition = {
  schema: "public",
  name: "points_default",
  bound: { kind: "default" },
  boundText: "DEFAULT",
  rowEstimate: 0,
  bytes: 8192,
  detachPending: false,
};

function catalog(children: readonly ChildPartition[], withDefault = false): TableCatalog {
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

interface FactsSpec {
  readonly children: readonly string[];
  readonly withDefault?: boolean;
  /** Children (by month) that hold at least one row; the others are known to be empty. */
  readonly withRows?: readonly string[];
  readonly holds?: readonly RetentionHold[];
  readonly archiveClashes?: Readonly<Record<string, readonly string[]>>;
  readonly unfinishedRemovals?: RetentionFacts["unfinishedRemovals"];
  readonly pending?: readonly string[];
  readonly expiredRows?: Readonly<Record<string, number>>;
}

const shown = (m: string) => `public.points_p${m.replace("-", "")}`;

function facts(spec: FactsSpec): RetentionFacts {
  const children = spec.children.map((m) =>
    monthly(m, { detachPending: spec.pending?.includes(m) ?? false }),
  );
  return {
    table: "public.points",
    catalog: catalog(children, spec.withDefault),
    childHasRows: new Map(spec.children.map((m) => [shown(m), spec.withRows?.includes(m) ?? false])),
    expiredRows: new Map(Object.entries(spec.expiredRows ?? {})),
    unfinishedRemovals: spec.unfinishedRemovals ?? [],
    holds: spec.holds ?? [],
    archiveClashes: new Map(Object.entries(spec.archiveClashes ?? {})),
    rollup: undefined,
  };
}

const hold = (m: string, until: string, reason: string): RetentionHold => ({
  partition: shown(m),
  until: new Date(until),
  reason,
  createdBy: "ops",
});

/**
 * A plan as one line per action and per finding, every field included, e.g. `drop
 * public.points_p202510 [2025-10-01, 2025-11-01) rows 10 bytes 8192 concurrently` and
 * `info held public.points_p202512: <message>`.
 */
function lines(plan: RetentionPlan): { actions: string[]; findings: string[]; refusal?: string } {
  const day = (d: Date | null) => d?.toISOString().replace("T00:00:00.000Z", "") ?? "MINVALUE";
  const action = (a: RetentionAction): string => {
    switch (a.kind) {
      case "remove_partition":
        return [
          `${a.mode} ${a.partition.schema}.${a.partition.name} [${day(a.from)}, ${day(a.to)})`,
          `rows ${a.rowsEstimate} bytes ${a.bytes}`,
          a.concurrently ? "concurrently" : "not concurrently",
          ...(a.expiredHold === undefined ? [] : [`expired hold: ${a.expiredHold}`]),
        ].join(" ");
      case "finalize_detach":
        return `finalize_detach ${a.partition.schema}.${a.partition.name}`;
      case "finish_removal":
        return `finish_removal ${a.partition.schema}.${a.partition.name} ${a.mode}`;
      case "delete_rows":
        return `delete_rows ${a.relation.schema}.${a.relation.name} ${a.reason} before ${a.before.toISOString()} rows ${a.rows}`;
    }
  };
  const finding = (f: RetentionFinding) =>
    `${f.severity} ${f.code}${f.partition === undefined ? "" : ` ${f.partition}`}: ${f.message}`;
  return {
    actions: plan.actions.map(action),
    findings: plan.findings.map(finding),
    ...(plan.refusal === undefined ? {} : { refusal: plan.refusal }),
  };
}

const drop = (m: string, extra = "concurrently") => {
  const from = new Date(`${m}-01T00:00:00Z`);
  const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
  return `drop public.points_p${m.replace("-", "")} [${m}-01, ${to.toISOString().slice(0, 10)}) rows 10 bytes 8192 ${extra}`;
};

const NOTHING_EXPIRED = `info nothing_expired: nothing is older than the cutoff ${CUTOFF}`;

interface Case {
  readonly name: string;
  readonly retention?: Record<string, unknown>;
  readonly facts: FactsSpec;
  readonly force?: boolean;
  readonly expected: ReturnType<typeof lines>;
}

function run(c: Case): ReturnType<typeof lines> {
  return lines(planRetention(policy(c.retention), facts(c.facts), NOW, { force: c.force ?? false }));
}

describe("planRetention refusals", () => {
  const threeExpired = ["2025-10", "2025-11", "2025-12", "2026-02"];
  const cases: Case[] = [
    {
      name: "keep under the 1 day floor",
      retention: { keep: "23 hours" },
      facts: { children: [] },
      expected: {
        actions: [],
        findings: ["info nothing_expired: nothing is older than the cutoff 2026-02-28T01:00:00.000Z"],
        refusal: `refused: keep "23 hours" is shorter than the 1 day floor. ${ADVICE}`,
      },
    },
    {
      name: "keep under the floor, with --force",
      retention: { keep: "23 hours" },
      facts: { children: [] },
      force: true,
      expected: {
        actions: [],
        findings: ["info nothing_expired: nothing is older than the cutoff 2026-02-28T01:00:00.000Z"],
      },
    },
    {
      name: "keep of exactly 1 day",
      retention: { keep: "1 day" },
      facts: { children: [] },
      expected: {
        actions: [],
        findings: ["info nothing_expired: nothing is older than the cutoff 2026-02-28T00:00:00.000Z"],
      },
    },
    {
      name: "one removal more than maxDropsPerRun",
      retention: { maxDropsPerRun: 2 },
      facts: { children: threeExpired, withRows: ["2026-02"] },
      expected: {
        actions: [drop("2025-10"), drop("2025-11"), drop("2025-12")],
        findings: [],
        refusal: `refused: it would remove 3 partitions, more than maxDropsPerRun (2): public.points_p202510, public.points_p202511, public.points_p202512. ${ADVICE}`,
      },
    },
    {
      name: "exactly maxDropsPerRun removals",
      retention: { maxDropsPerRun: 3 },
      facts: { children: threeExpired, withRows: ["2026-02"] },
      expected: { actions: [drop("2025-10"), drop("2025-11"), drop("2025-12")], findings: [] },
    },
    {
      name: "over maxDropsPerRun, with --force",
      retention: { maxDropsPerRun: 2 },
      facts: { children: threeExpired, withRows: ["2026-02"] },
      force: true,
      expected: { actions: [drop("2025-10"), drop("2025-11"), drop("2025-12")], findings: [] },
    },
    {
      name: "every child that holds data would go",
      facts: { children: ["2025-12", "2026-02"], withRows: ["2025-12"] },
      expected: {
        actions: [drop("2025-12")],
        findings: [],
        refusal: `refused: it would remove every partition that holds data (public.points_p202512). ${ADVICE}`,
      },
    },
    {
      name: "every child that holds data would go, with --force",
      facts: { children: ["2025-12", "2026-02"], withRows: ["2025-12"] },
      force: true,
      expected: { actions: [drop("2025-12")], findings: [] },
    },
    {
      name: "a child with data stays",
      facts: { children: ["2025-12", "2026-02"], withRows: ["2025-12", "2026-02"] },
      expected: { actions: [drop("2025-12")], findings: [] },
    },
    {
      name: "no child holds data",
      facts: { children: ["2025-12", "2026-02"] },
      expected: { actions: [drop("2025-12")], findings: [] },
    },
    {
      name: "both guard rails at once: the reasons are joined",
      retention: { maxDropsPerRun: 1 },
      facts: { children: ["2025-11", "2025-12"], withRows: ["2025-11"] },
      expected: {
        actions: [drop("2025-11"), drop("2025-12")],
        findings: [],
        refusal: `refused: it would remove 2 partitions, more than maxDropsPerRun (1): public.points_p202511, public.points_p202512; and it would remove every partition that holds data (public.points_p202511). ${ADVICE}`,
      },
    },
    {
      name: "all three at once",
      retention: { keep: "12 hours", maxDropsPerRun: 1 },
      facts: { children: ["2025-12", "2026-01"], withRows: ["2026-01"] },
      expected: {
        actions: [drop("2025-12"), drop("2026-01")],
        findings: [],
        refusal: `refused: keep "12 hours" is shorter than the 1 day floor; and it would remove 2 partitions, more than maxDropsPerRun (1): public.points_p202512, public.points_p202601; and it would remove every partition that holds data (public.points_p202601). ${ADVICE}`,
      },
    },
  ];

  it.each(cases)("$name", (c) => {
    expect(run(c)).toEqual(c.expected);
  });
});

describe("planRetention holds", () => {
  const expired = ["2025-10", "2025-11", "2025-12"];
  const cases: Case[] = [
    {
      name: "no hold: every expired child goes",
      retention: { maxDropsPerRun: 5 },
      facts: { children: expired },
      expected: { actions: [drop("2025-10"), drop("2025-11"), drop("2025-12")], findings: [] },
    },
    {
      name: "a hold lasting past now keeps its child",
      retention: { maxDropsPerRun: 5 },
      facts: { children: expired, holds: [hold("2025-11", "2026-03-01T00:00:01Z", "legal")] },
      expected: {
        actions: [drop("2025-10"), drop("2025-12")],
        findings: [
          "info held public.points_p202511: kept public.points_p202511 past its cutoff: held until 2026-03-01T00:00:01.000Z by ops (legal)",
        ],
      },
    },
    {
      name: "a hold ending exactly at now is expired: the child goes, the hold is named",
      retention: { maxDropsPerRun: 5 },
      facts: { children: expired, holds: [hold("2025-11", "2026-03-01T00:00:00Z", "audit")] },
      expected: {
        actions: [drop("2025-10"), drop("2025-11", "concurrently expired hold: audit"), drop("2025-12")],
        findings: [
          "info hold_expired public.points_p202511: the hold on public.points_p202511 expired at 2026-03-01T00:00:00.000Z (audit); it is removed now",
        ],
      },
    },
    {
      name: "a hold that ended long ago is ignored the same way",
      retention: { maxDropsPerRun: 5 },
      facts: { children: expired, holds: [hold("2025-10", "2025-12-31T00:00:00Z", "old case")] },
      expected: {
        actions: [drop("2025-10", "concurrently expired hold: old case"), drop("2025-11"), drop("2025-12")],
        findings: [
          "info hold_expired public.points_p202510: the hold on public.points_p202510 expired at 2025-12-31T00:00:00.000Z (old case); it is removed now",
        ],
      },
    },
    {
      name: "a hold on a child that is not expired says nothing",
      retention: { maxDropsPerRun: 5 },
      facts: { children: [...expired, "2026-02"], holds: [hold("2026-02", "2027-01-01T00:00:00Z", "legal")] },
      expected: { actions: [drop("2025-10"), drop("2025-11"), drop("2025-12")], findings: [] },
    },
    {
      name: "held children do not count towards maxDropsPerRun",
      retention: { maxDropsPerRun: 2 },
      facts: { children: expired, holds: [hold("2025-12", "2026-06-01T00:00:00Z", "legal")] },
      expected: {
        actions: [drop("2025-10"), drop("2025-11")],
        findings: [
          "info held public.points_p202512: kept public.points_p202512 past its cutoff: held until 2026-06-01T00:00:00.000Z by ops (legal)",
        ],
      },
    },
    {
      name: "every expired child held: no action, so the plan also says nothing is expired",
      facts: {
        children: ["2025-12"],
        withRows: ["2025-12"],
        holds: [hold("2025-12", "2026-06-01T00:00:00Z", "legal")],
      },
      expected: {
        actions: [],
        findings: [
          "info held public.points_p202512: kept public.points_p202512 past its cutoff: held until 2026-06-01T00:00:00.000Z by ops (legal)",
          NOTHING_EXPIRED,
        ],
      },
    },
    {
      name: "exactCutoff: a held straddling child keeps its expired rows",
      retention: { exactCutoff: true, keep: "45 days" },
      facts: {
        children: ["2026-01"],
        expiredRows: { "public.points_p202601": 7 },
        holds: [hold("2026-01", "2026-04-01T00:00:00Z", "legal")],
      },
      expected: {
        actions: [],
        findings: [
          "info held public.points_p202601: public.points_p202601 is held until 2026-04-01T00:00:00.000Z (legal): its 7 rows before the cutoff are kept",
          "info nothing_expired: nothing is older than the cutoff 2026-01-15T00:00:00.000Z",
        ],
      },
    },
    {
      name: "exactCutoff: with its hold expired, the straddling child's expired rows are deleted",
      retention: { exactCutoff: true, keep: "45 days" },
      facts: {
        children: ["2026-01"],
        expiredRows: { "public.points_p202601": 7 },
        holds: [hold("2026-01", "2026-03-01T00:00:00Z", "legal")],
      },
      expected: {
        actions: [
          "delete_rows public.points_p202601 straddling_partition before 2026-01-15T00:00:00.000Z rows 7",
        ],
        findings: [],
      },
    },
    {
      name: "a child a killed run detached stays detached while held",
      retention: { mode: "drop" },
      facts: {
        children: [],
        unfinishedRemovals: [{ partition: { schema: "public", name: "points_p202512" }, mode: "drop" }],
        holds: [hold("2025-12", "2026-06-01T00:00:00Z", "legal")],
      },
      expected: {
        actions: [],
        findings: [
          "info held public.points_p202512: public.points_p202512 is held until 2026-06-01T00:00:00.000Z (legal); a killed run had started removing it (mode drop): it stays detached and is not dropped until the hold ends",
          NOTHING_EXPIRED,
        ],
      },
    },
    {
      name: "a child a killed run detached is finished once its hold has ended",
      facts: {
        children: [],
        unfinishedRemovals: [{ partition: { schema: "public", name: "points_p202512" }, mode: "drop" }],
        holds: [hold("2025-12", "2026-03-01T00:00:00Z", "legal")],
      },
      expected: { actions: ["finish_removal public.points_p202512 drop"], findings: [] },
    },
  ];

  it.each(cases)("$name", (c) => {
    expect(run(c)).toEqual(c.expected);
  });
});

describe("planRetention: drop, detach or archive", () => {
  const dec = { schema: "public", name: "points_p202512" };
  const removal = (mode: string, concurrently: boolean) => ({
    kind: "remove_partition",
    partition: dec,
    from: new Date("2025-12-01T00:00:00Z"),
    to: new Date("2026-01-01T00:00:00Z"),
    rowsEstimate: 10,
    bytes: 8192,
    mode,
    concurrently,
  });
  const clash = {
    severity: "warn",
    code: "archive_name_taken",
    partition: "public.points_p202512",
    message:
      "public.points_p202512 is expired, but the archive already has telemetry_archive.points_p202512, telemetry_archive.points_p202512_ts_idx, which moving it there needs (archived from another table of the same name?). public.points_p202512 is left as it is; rename what is in the way, or give this table an archiveSchema of its own.",
  };
  const taken = { "public.points_p202512": ["points_p202512", "points_p202512_ts_idx"] };
  const leftover = (mode: "drop" | "detach" | "archive") => [{ partition: dec, mode }];
  const nothing = {
    severity: "info",
    code: "nothing_expired",
    message: `nothing is older than the cutoff ${CUTOFF}`,
  };

  const cases: {
    name: string;
    mode: "drop" | "detach" | "archive";
    facts: FactsSpec;
    actions: unknown[];
    findings: unknown[];
  }[] = [
    {
      name: "drop, no DEFAULT partition: concurrently",
      mode: "drop",
      facts: { children: ["2025-12"] },
      actions: [removal("drop", true)],
      findings: [],
    },
    {
      name: "detach, no DEFAULT partition: concurrently",
      mode: "detach",
      facts: { children: ["2025-12"] },
      actions: [removal("detach", true)],
      findings: [],
    },
    {
      name: "archive, no DEFAULT partition: concurrently",
      mode: "archive",
      facts: { children: ["2025-12"] },
      actions: [removal("archive", true)],
      findings: [],
    },
    {
      name: "drop with a DEFAULT partition: not concurrently",
      mode: "drop",
      facts: { children: ["2025-12"], withDefault: true },
      actions: [removal("drop", false)],
      findings: [],
    },
    {
      name: "detach with a DEFAULT partition: not concurrently",
      mode: "detach",
      facts: { children: ["2025-12"], withDefault: true },
      actions: [removal("detach", false)],
      findings: [],
    },
    {
      name: "archive with a DEFAULT partition: not concurrently",
      mode: "archive",
      facts: { children: ["2025-12"], withDefault: true },
      actions: [removal("archive", false)],
      findings: [],
    },
    {
      name: "archive whose names are taken in the archive schema: kept, with a warning",
      mode: "archive",
      facts: { children: ["2025-12"], archiveClashes: taken },
      actions: [],
      findings: [clash, nothing],
    },
    {
      name: "detach ignores the archive schema's names",
      mode: "detach",
      facts: { children: ["2025-12"], archiveClashes: taken },
      actions: [removal("detach", true)],
      findings: [],
    },
    {
      name: "a pending detach is finalized, whatever the mode",
      mode: "archive",
      facts: { children: ["2025-12"], pending: ["2025-12"] },
      actions: [{ kind: "finalize_detach", partition: dec }],
      findings: [],
    },
    {
      name: "a killed drop is finished as a drop, whatever the mode now",
      mode: "detach",
      facts: { children: [], unfinishedRemovals: leftover("drop") },
      actions: [{ kind: "finish_removal", partition: dec, mode: "drop" }],
      findings: [],
    },
    {
      name: "a killed archive is finished as an archive",
      mode: "archive",
      facts: { children: [], unfinishedRemovals: leftover("archive") },
      actions: [{ kind: "finish_removal", partition: dec, mode: "archive" }],
      findings: [],
    },
    {
      name: "a killed archive whose names are taken is not finished",
      mode: "archive",
      facts: { children: [], unfinishedRemovals: leftover("archive"), archiveClashes: taken },
      actions: [],
      findings: [clash, nothing],
    },
    {
      name: "a killed detach is finished, even with the archive's names taken",
      mode: "archive",
      facts: { children: [], unfinishedRemovals: leftover("detach"), archiveClashes: taken },
      actions: [{ kind: "finish_removal", partition: dec, mode: "detach" }],
      findings: [],
    },
  ];

  it.each(cases)("$name", (c) => {
    const plan = planRetention(policy({ mode: c.mode }), facts(c.facts), NOW, { force: false });
    expect(plan).toEqual({
      table: "public.points",
      cutoff: new Date(CUTOFF),
      actions: c.actions,
      findings: c.findings,
    });
  });
});
