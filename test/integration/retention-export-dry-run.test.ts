// A dry run of mode "export" against an export directory that already holds a manifest: it must
// say what a real run will do there. An intact export of other rows is never written over (the
// real run refuses the partition without --re-export), so the plan warns (export_exists) naming the
// directory, what the manifest holds against what the partition holds, and the way out; an export
// of this very partition with as many rows is reused by the real run, so the plan says so (info,
// export_reused). Either way the dry run changes nothing on disk or in the database.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportPartition } from "../../shared/cold/export.ts";
import { partitionDirectory } from "../../shared/cold/layout.ts";
import { catalogSnapshot } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type LogRecord, runCli } from "../support/jobs.ts";

let t: TestDatabase;
let root: string;
beforeAll(async () => {
  t = await createTestDatabase();
  root = mkdtempSync(path.join(tmpdir(), "retention-export-dry-"));
});
afterAll(async () => {
  await t.drop();
  rmSync(root, { recursive: true, force: true });
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
const NOV = { from: new Date("2025-11-01T00:00:00Z"), to: new Date("2025-12-01T00:00:00Z") };
let seq = 0;

/** x_N(id, ts, v): monthly children 2025-11 .. 2026-03 (the first three expire), 100 rows. */
async function table(): Promise<string> {
  const name = `x_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, v double precision) PARTITION BY RANGE (ts)`,
  );
  for (const m of ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]) {
    const from = new Date(`${m}-01T00:00:00Z`);
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    await t.pool.query(
      `CREATE TABLE public.${name}_p${m.replace("-", "")} PARTITION OF public.${name}
         FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
    );
  }
  await t.pool.query(
    `INSERT INTO public.${name}
     SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours', g / 7.0 FROM generate_series(0, 99) g`,
  );
  return name;
}

const novDir = (name: string) =>
  partitionDirectory(root, {
    table: { schema: "public", name },
    keyColumn: "ts",
    startMicros: BigInt(NOV.from.getTime()) * 1000n,
  });

function policy(name: string) {
  return {
    table: `public.${name}`,
    timeColumn: "ts",
    retention: { keep: "1 month", mode: "export", export: { to: root } },
  };
}

function retention(name: string, args: string[]) {
  return runCli(["retention", "--now", NOW, ...args], {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name)] }),
  });
}

/** Every file under the root with its size, modification time and content digest. */
function disk(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push(`${full} ${statSync(full).mtimeMs} ${readFileSync(full).toString("base64")}`);
    }
  };
  walk(root);
  return out.sort();
}

async function rows(name: string): Promise<string[]> {
  const r = await t.pool.query(
    `SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM public.${name} GROUP BY 1 ORDER BY 1`,
  );
  return r.rows.map((row) => `${row.p} ${row.n}`);
}

async function auditRows(): Promise<number> {
  return (await t.pool.query("SELECT count(*)::int AS n FROM telemetry_jobs.job_actions")).rows[0].n;
}

const finding = (lines: LogRecord[], code: string) => lines.filter((l) => l.finding === code);

/** A dry run that must leave disk, catalog, rows and audit trail exactly as they were. */
async function dryRunChangingNothing(name: string): Promise<LogRecord[]> {
  const before = {
    disk: disk(),
    catalog: await catalogSnapshot(t.url),
    rows: await rows(name),
    audit: await auditRows(),
  };
  const run = await retention(name, ["--dry-run"]);
  expect(run.code, run.stderr).toBe(0);
  expect(disk()).toEqual(before.disk);
  expect(await catalogSnapshot(t.url)).toEqual(before.catalog);
  expect(await rows(name)).toEqual(before.rows);
  expect(await auditRows()).toBe(before.audit);
  return run.lines;
}

describe("a dry run over an existing export of other rows", () => {
  it("another partition with the same start: WARNING export_exists naming dir, both sides and the way out", async () => {
    const name = await table();
    expect((await retention(name, [])).code).toBe(0); // Nov..Jan exported and dropped
    const exported = JSON.parse(readFileSync(path.join(novDir(name), "_manifest.json"), "utf8")).rows;
    await t.pool.query(
      `CREATE TABLE public.${name}_late PARTITION OF public.${name} FOR VALUES FROM ('2025-11-01T00:00:00Z') TO ('2025-11-02T00:00:00Z');
       INSERT INTO public.${name} VALUES (5001, '2025-11-01T03:00:00Z', 1), (5002, '2025-11-01T04:00:00Z', 1)`,
    );
    const lines = await dryRunChangingNothing(name);
    const warned = finding(lines, "export_exists");
    expect(warned).toHaveLength(1);
    expect(warned[0]!.severity).toBe("WARNING");
    expect(warned[0]!.partition).toBe(`public.${name}_late`);
    const message = warned[0]!.message;
    expect(message).toContain(novDir(name));
    expect(message).toContain(
      `public.${name}_p202511 [2025-11-01T00:00:00.000Z, 2025-12-01T00:00:00.000Z) (${exported} rows`,
    );
    expect(message).toContain(
      `public.${name}_late [2025-11-01T00:00:00.000Z, 2025-11-02T00:00:00.000Z) (2 rows)`,
    );
    expect(message).toContain("--re-export");
    expect(message).toContain('docs/runbooks/retention.md, "Exporting to the cold tier"');
    expect(finding(lines, "export_reused")).toHaveLength(0);
  });

  it("the same partition and bounds, other rows: WARNING export_exists with both row counts", async () => {
    const name = await table();
    expect((await retention(name, [])).code).toBe(0);
    const exported = JSON.parse(readFileSync(path.join(novDir(name), "_manifest.json"), "utf8")).rows;
    await t.pool.query(
      `CREATE TABLE public.${name}_p202511 PARTITION OF public.${name} FOR VALUES FROM ('2025-11-01T00:00:00Z') TO ('2025-12-01T00:00:00Z');
       INSERT INTO public.${name} VALUES (5001, '2025-11-01T03:00:00Z', 1)`,
    );
    const lines = await dryRunChangingNothing(name);
    const warned = finding(lines, "export_exists");
    expect(warned.map((l) => l.partition)).toEqual([`public.${name}_p202511`]);
    expect(warned[0]!.message).toContain(`(${exported} rows`);
    expect(warned[0]!.message).toContain(
      `public.${name}_p202511 [2025-11-01T00:00:00.000Z, 2025-12-01T00:00:00.000Z) (1 rows)`,
    );
    // What the dry run said is what the real run does: it refuses the partition.
    const run = await retention(name, []);
    expect(run.code).toBe(1);
    expect(
      run.lines.some((l) => l.severity === "ERROR" && l.message.includes("holds an intact export of")),
    ).toBe(true);
  });
});

describe("a dry run over an existing export of the same rows", () => {
  it("no warning: info export_reused says it is verified and not written again", async () => {
    const name = await table();
    await exportPartition(
      t.pool,
      {
        table: { schema: "public", name },
        partition: { schema: "public", name: `${name}_p202511` },
        keyColumn: "ts",
        timeColumn: "ts",
        ...NOV,
      },
      { root, productVersion: "earlier" },
    );
    const lines = await dryRunChangingNothing(name);
    expect(finding(lines, "export_exists")).toHaveLength(0);
    const reused = finding(lines, "export_reused");
    expect(reused.map((l) => [l.partition, l.severity])).toEqual([[`public.${name}_p202511`, "INFO"]]);
    expect(reused[0]!.message).toContain(novDir(name));
    // And the real run does reuse it.
    const run = await retention(name, []);
    expect(run.code).toBe(0);
    expect(run.lines.filter((l) => l.message.includes("is already exported to"))).toHaveLength(1);
  });
});
