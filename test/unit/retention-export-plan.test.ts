// Mode "export" in the policy and the planner: the export block's defaults and the errors that
// name it, the directory each expired partition is planned to go to (said in a finding, so a dry
// run shows it), and MINVALUE-bounded partitions, which have no start to name a directory by.
import { describe, expect, it } from "vitest";
import { partitionDirectory } from "../../shared/cold/layout.ts";
import type { Manifest } from "../../shared/cold/manifest.ts";
import { PolicyFileSchema, type TablePolicy, TablePolicySchema } from "../../shared/config/policy.ts";
import type { ChildPartition, TableCatalog } from "../../shared/partitions/catalog.ts";
import { type ExistingExport, planRetention, type RetentionFacts } from "../../shared/retention/plan.ts";

const NOW = new Date("2026-03-01T00:00:00Z"); // keep "1 month": cutoff 2026-02-01

function policyWith(retention: Record<string, unknown>): TablePolicy {
  return TablePolicySchema.parse({
    table: "public.points",
    timeColumn: "ts",
    retention: { keep: "1 month", ...retention },
  });
}

function issues(retention: Record<string, unknown>): string[] {
  const parsed = PolicyFileSchema.safeParse({
    tables: [{ table: "public.points", timeColumn: "ts", retention: { keep: "1 month", ...retention } }],
  });
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

function child(name: string, from: Date | "MINVALUE", to: Date): ChildPartition {
  return {
    schema: "public",
    name,
    bound: { kind: "range", from, to },
    boundText: "FOR VALUES FROM (...) TO (...)",
    rowEstimate: 10,
    bytes: 8192,
    detachPending: false,
  };
}

function facts(children: ChildPartition[]): RetentionFacts {
  const catalog: TableCatalog = {
    table: { schema: "public", name: "points" },
    oid: 1,
    keyColumn: "ts",
    keyType: "timestamptz",
    children,
    defaultPartition: undefined,
    defaultBuckets: [],
    defaultNullKeyRows: 0,
    columns: ["ts"],
  };
  return {
    table: "public.points",
    catalog,
    childHasRows: new Map(children.map((c) => [`public.${c.name}`, true])),
    expiredRows: new Map(),
    unfinishedRemovals: [],
    holds: [],
    archiveClashes: new Map(),
    rollup: undefined,
  };
}

const JAN = child("points_p202601", new Date("2026-01-01T00:00:00Z"), new Date("2026-02-01T00:00:00Z"));
const FEB = child("points_p202602", new Date("2026-02-01T00:00:00Z"), new Date("2026-03-01T00:00:00Z"));

describe("the export block", () => {
  it("defaults to Parquet with zstd; mode export keeps the block", () => {
    const p = policyWith({ mode: "export", export: { to: "/mnt/cold" } });
    expect(p.retention?.export).toEqual({ to: "/mnt/cold", format: "parquet", compression: "zstd" });
  });

  it("is required with mode export, refused with any other mode, and must be absolute", () => {
    expect(issues({ mode: "export" })).toEqual([
      'tables.0.retention.export: is required with mode "export": add "export": { "to": "/absolute/dir" }, the directory the Parquet files go to',
    ]);
    expect(issues({ export: { to: "/mnt/cold" } })).toEqual([
      'tables.0.retention.export: is used only with mode "export" (mode is "drop"): set "mode": "export" to export before dropping, or remove the block',
    ]);
    expect(issues({ mode: "export", export: { to: "mnt/cold" } })).toEqual([
      'tables.0.retention.export.to: must be an absolute directory path, e.g. "/mnt/cold"',
    ]);
    expect(issues({ mode: "export", export: { to: "/mnt/cold", compression: "gzip" } })).toHaveLength(1);
  });
});

describe("planning mode export", () => {
  it("each expired partition is a drop with its export directory, said in an info finding", () => {
    const policy = policyWith({ mode: "export", export: { to: "/mnt/cold" } });
    const plan = planRetention(policy, facts([JAN, FEB]), NOW, { force: false });
    const dir = partitionDirectory("/mnt/cold", {
      table: { schema: "public", name: "points" },
      keyColumn: "ts",
      startMicros: 1767225600000000n,
    });
    expect(dir).toBe("/mnt/cold/public.points/ts_start=2026-01-01T00:00:00Z");
    expect(plan.actions).toEqual([
      expect.objectContaining({ kind: "remove_partition", mode: "drop", exportTo: dir }),
    ]);
    expect(plan.findings).toEqual([
      {
        severity: "info",
        code: "export_planned",
        partition: "public.points_p202601",
        message: `public.points_p202601 [2026-01-01T00:00:00.000Z, 2026-02-01T00:00:00.000Z) is exported to ${dir} (parquet, zstd), read back and verified, and only then detached and dropped`,
      },
    ]);
  });

  it("other modes plan no export", () => {
    const plan = planRetention(policyWith({ mode: "drop" }), facts([JAN, FEB]), NOW, { force: false });
    expect(plan.actions).toEqual([expect.objectContaining({ kind: "remove_partition", mode: "drop" })]);
    expect(plan.actions[0]).not.toHaveProperty("exportTo");
    expect(plan.findings).toEqual([]);
  });

  it("a MINVALUE partition is kept with a warning; the rest of the plan goes ahead", () => {
    const old = child("points_old", "MINVALUE", new Date("2026-01-01T00:00:00Z"));
    const policy = policyWith({ mode: "export", export: { to: "/mnt/cold" } });
    const plan = planRetention(policy, facts([old, JAN, FEB]), NOW, { force: false });
    expect(plan.actions.map((a) => a.kind === "remove_partition" && a.partition.name)).toEqual([
      "points_p202601",
    ]);
    const warning = plan.findings.find((f) => f.code === "export_unbounded");
    expect(warning).toMatchObject({ severity: "warn", partition: "public.points_old" });
    expect(warning?.message).toContain("[MINVALUE, 2026-01-01T00:00:00.000Z)");
    expect(plan.refusal).toBeUndefined();
  });
});

describe("an export already in the planned directory (from the facts; the plan reads no file)", () => {
  const DIR = "/mnt/cold/public.points/ts_start=2026-01-01T00:00:00Z";
  const policy = policyWith({ mode: "export", export: { to: "/mnt/cold" } });
  const iso = (micros: bigint) => new Date(Number(micros / 1000n)).toISOString().replace(".000Z", "Z");
  const instant = (micros: bigint) => ({ micros: micros.toString(), iso: iso(micros) });

  function manifest(name: string, toMicros: bigint, rows: number): Manifest {
    return {
      format: 1,
      product: { name: "telemetry-jobs", version: "earlier" },
      writer: "test",
      table: { schema: "public", name: "points" },
      partition: {
        relation: { schema: "public", name },
        keyColumn: "ts",
        from: instant(1767225600000000n),
        to: instant(toMicros),
      },
      rows: String(rows),
      time: { column: "ts", min: null, max: null },
      checksum: { algorithm: "test", value: "0" },
      columns: [],
      files: [],
      exportedAt: "2026-02-03T00:00:00.000Z",
    };
  }

  function planWith(existing: ExistingExport) {
    const f = { ...facts([JAN, FEB]), existingExports: new Map([["public.points_p202601", existing]]) };
    const plan = planRetention(policy, f, NOW, { force: false });
    // Whatever is there, the plan still holds the removal: the run decides once it has read the files.
    expect(plan.actions).toEqual([expect.objectContaining({ kind: "remove_partition", exportTo: DIR })]);
    return plan.findings.filter((x) => x.code !== "export_planned");
  }

  const FEB1 = 1769904000000000n;

  it("this partition, as many rows: info export_reused", () => {
    const findings = planWith({
      dir: DIR,
      state: "ok",
      manifest: manifest("points_p202601", FEB1, 10),
      rowsNow: 10,
    });
    expect(findings.map((x) => [x.severity, x.code])).toEqual([["info", "export_reused"]]);
    expect(findings[0]?.message).toContain(`${DIR} already holds an export of public.points_p202601`);
    expect(findings[0]?.message).toContain("if the rows differ, it refuses public.points_p202601");
  });

  it("this partition, another row count: WARNING export_exists with both counts", () => {
    const findings = planWith({
      dir: DIR,
      state: "ok",
      manifest: manifest("points_p202601", FEB1, 10),
      rowsNow: 3,
    });
    expect(findings.map((x) => [x.severity, x.code])).toEqual([["warn", "export_exists"]]);
    expect(findings[0]?.message).toContain(
      "public.points_p202601 [2026-01-01T00:00:00.000Z, 2026-02-01T00:00:00.000Z) (10 rows, exported 2026-02-03T00:00:00.000Z), not of public.points_p202601 [2026-01-01T00:00:00.000Z, 2026-02-01T00:00:00.000Z) (3 rows)",
    );
  });

  it("other bounds, even with as many rows: WARNING export_exists naming the way out", () => {
    const other = manifest("points_p202601", 1767312000000000n, 10);
    const findings = planWith({ dir: DIR, state: "ok", manifest: other, rowsNow: 10 });
    expect(findings.map((x) => [x.severity, x.code])).toEqual([["warn", "export_exists"]]);
    expect(findings[0]?.message).toContain("[2026-01-01T00:00:00.000Z, 2026-01-02T00:00:00.000Z) (10 rows");
    expect(findings[0]?.message).toContain("--re-export");
    expect(findings[0]?.message).toContain('docs/runbooks/retention.md, "Exporting to the cold tier"');
  });

  it("a damaged manifest: info export_replaced; an unreadable one: WARNING export_unreadable", () => {
    const damaged = planWith({ dir: DIR, state: "invalid", reason: "not JSON: Unexpected end" });
    expect(damaged.map((x) => [x.severity, x.code])).toEqual([["info", "export_replaced"]]);
    expect(damaged[0]?.message).toContain("not JSON: Unexpected end");
    const unreadable = planWith({ dir: DIR, state: "unreadable", reason: "EACCES: permission denied" });
    expect(unreadable.map((x) => [x.severity, x.code])).toEqual([["warn", "export_unreadable"]]);
    expect(unreadable[0]?.message).toContain("EACCES: permission denied");
    expect(unreadable[0]?.message).toContain("retention.export.to (/mnt/cold)");
  });
});
