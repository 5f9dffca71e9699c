// Retention mode "export" through the real CLI against real PostgreSQL: each expired partition is
// written to Parquet, read back and verified, and only then detached and dropped; a bad export
// stops the drop (exit 1, the partition still attached); a bad export policy exits 2 before the
// database is touched; a dry run writes nothing; a valid export is not written again unless
// --re-export says so.
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportPartition } from "../../shared/cold/export.ts";
import { MANIFEST_FILE, partitionDirectory } from "../../shared/cold/layout.ts";
import { readManifest } from "../../shared/cold/manifest.ts";
import { verifyExport } from "../../shared/cold/verify.ts";
import { catalogSnapshot, partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type LogRecord, runCli, startCli } from "../support/jobs.ts";

let t: TestDatabase;
let root: string;
beforeAll(async () => {
  t = await createTestDatabase();
  root = mkdtempSync(path.join(tmpdir(), "retention-export-"));
});
afterAll(async () => {
  await t.drop();
  rmSync(root, { recursive: true, force: true });
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
const MONTHS = ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"];
const EXPIRED_MONTHS = MONTHS.slice(0, 3);
let seq = 0;

/** x_N(id, ts, v, note): monthly children 2025-11 .. 2026-03 (three expire), 100 rows over them. */
async function table(): Promise<string> {
  const name = `x_${++seq}`;
  await t.pool.query(
    `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, v double precision, note text)
       PARTITION BY RANGE (ts)`,
  );
  for (const m of MONTHS) {
    const from = new Date(`${m}-01T00:00:00Z`);
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    await t.pool.query(
      `CREATE TABLE public.${child(name, m)} PARTITION OF public.${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
    );
  }
  await t.pool.query(
    `INSERT INTO public.${name}
     SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours', g / 7.0, CASE WHEN g % 5 > 0 THEN 'n' || g END
       FROM generate_series(0, 99) g`,
  );
  return name;
}

const child = (name: string, month: string) => `${name}_p${month.replace("-", "")}`;

function policy(name: string, retention: Record<string, unknown> = {}) {
  return {
    table: `public.${name}`,
    timeColumn: "ts",
    retention: { keep: "1 month", mode: "export", export: { to: root }, ...retention },
  };
}

function dirOf(name: string, month: string): string {
  return partitionDirectory(root, {
    table: { schema: "public", name },
    keyColumn: "ts",
    startMicros: BigInt(Date.parse(`${month}-01T00:00:00Z`)) * 1000n,
  });
}

async function rowsOf(relation: string): Promise<number> {
  return (await t.pool.query(`SELECT count(*)::int AS n FROM ONLY public.${relation}`)).rows[0].n;
}

async function attached(name: string): Promise<string[]> {
  return (await partitionsOf(t.url, `public.${name}`)).map((p) => p.name);
}

function retention(policies: unknown[], args: string[] = [], env: Record<string, string> = {}) {
  return runCli(["retention", "--now", NOW, ...args], {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: policies }),
    ...env,
  });
}

function errors(lines: LogRecord[]): string {
  return lines
    .filter((l) => l.severity === "ERROR")
    .map((l) => l.message)
    .join("\n");
}

async function auditOf(name: string) {
  const r = await t.pool.query(
    `SELECT a.partition_name AS partition, a.outcome, a.detail->>'path' AS path
       FROM telemetry_jobs.job_actions a WHERE a.table_name = $1 ORDER BY a.id`,
    [`public.${name}`],
  );
  return r.rows as { partition: string; outcome: string; path: string | null }[];
}

describe("mode export, end to end", () => {
  it("exports, verifies, then drops each expired partition; the files hold exactly its rows", async () => {
    const name = await table();
    const counts = Object.fromEntries(
      await Promise.all(EXPIRED_MONTHS.map(async (m) => [m, await rowsOf(child(name, m))] as const)),
    );
    const run = await retention([policy(name)]);
    expect(run.code, errors(run.lines) + run.stderr).toBe(0);
    expect(await attached(name)).toEqual([child(name, "2026-02"), child(name, "2026-03")]);
    for (const m of EXPIRED_MONTHS) {
      expect(readdirSync(dirOf(name, m)).sort()).toEqual([MANIFEST_FILE, "part-00000.parquet"]);
      const verdict = await verifyExport(dirOf(name, m));
      expect(verdict.ok).toBe(true);
      expect(verdict.manifest?.rows).toBe(String(counts[m]));
      expect(verdict.manifest?.partition.relation).toEqual({ schema: "public", name: child(name, m) });
    }
    const audit = await auditOf(name);
    expect(audit.map((a) => [a.partition, a.outcome])).toEqual(
      EXPIRED_MONTHS.map((m) => [`public.${child(name, m)}`, "ok"]),
    );
    for (const [i, m] of EXPIRED_MONTHS.entries()) {
      expect(audit[i]!.path).toContain(`exported to ${dirOf(name, m)} (${counts[m]} rows, 1 files)`);
      expect(audit[i]!.path).toMatch(/unchanged at the detach, drop$/);
    }
  });

  it("--dry-run says what would be exported where, and writes nothing", async () => {
    const name = await table();
    const before = await catalogSnapshot(t.url);
    const run = await retention([policy(name)], ["--dry-run"]);
    expect(run.code, errors(run.lines)).toBe(0);
    for (const m of EXPIRED_MONTHS) {
      const said = run.lines.find(
        (l) => l.finding === "export_planned" && l.partition === `public.${child(name, m)}`,
      );
      expect(said?.message).toContain(`is exported to ${dirOf(name, m)} (parquet, zstd)`);
      expect(existsSync(dirOf(name, m))).toBe(false);
    }
    expect(existsSync(path.dirname(dirOf(name, "2025-11")))).toBe(false);
    expect(await catalogSnapshot(t.url)).toEqual(before);
  });

  it("a valid export already there is verified, not written again", async () => {
    const name = await table();
    // As a restore leaves it: the export, and the same rows attached again.
    await exportEarlier(name, "2025-11");
    const first = manifestText(name, "2025-11");
    const run = await retention([policy(name)]);
    expect(run.code, errors(run.lines)).toBe(0);
    expect(manifestText(name, "2025-11")).toBe(first);
    expect(run.lines.filter((l) => l.message.includes("is already exported to"))).toHaveLength(1);
    expect((await auditOf(name))[0]!.path).toContain("verified, not rewritten");
    expect(await attached(name)).toEqual([child(name, "2026-02"), child(name, "2026-03")]);
  });

  it("restore, then retention: the restored partition is verified, not exported again unless asked", async () => {
    const name = await table();
    const month = "2025-11";
    const exported = await retention([policy(name)]);
    expect(exported.code, errors(exported.lines)).toBe(0);
    const first = manifestText(name, month);
    const restore = () =>
      runCli(["restore", "--table", `public.${name}`, "--partition", child(name, month)], {
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name)] }),
      });
    const restored = await restore();
    expect(restored.code, errors(restored.lines) + restored.stderr).toBe(0);
    expect(await attached(name)).toContain(child(name, month));

    const again = await retention([policy(name)]);
    expect(again.code, errors(again.lines)).toBe(0);
    expect(manifestText(name, month)).toBe(first);
    expect(again.lines.filter((l) => l.message.includes("is already exported to"))).toHaveLength(1);
    expect(await attached(name)).not.toContain(child(name, month));

    expect((await restore()).code).toBe(0);
    const forced = await retention([policy(name)], ["--re-export"]);
    expect(forced.code, errors(forced.lines)).toBe(0);
    expect(manifestText(name, month)).not.toBe(first);
    expect((await verifyExport(dirOf(name, month))).ok).toBe(true);
  });

  it("--re-export writes a valid export again", async () => {
    const name = await table();
    await exportEarlier(name, "2025-11");
    const run = await retention([policy(name)], ["--re-export"]);
    expect(run.code, errors(run.lines)).toBe(0);
    const rewritten = readManifest(dirOf(name, "2025-11"));
    expect(rewritten.state).toBe("ok");
    expect(rewritten.state === "ok" && rewritten.manifest.product.version).not.toBe("earlier");
    expect(run.lines.some((l) => l.message.includes("is already exported to"))).toBe(false);
    expect((await verifyExport(dirOf(name, "2025-11"))).ok).toBe(true);
  });

  it("a bad export left by an earlier run is never trusted: it is replaced, verified, then dropped", async () => {
    const name = await table();
    await exportEarlier(name, "2025-11");
    truncateSync(path.join(dirOf(name, "2025-11"), "part-00000.parquet"), 100);
    const run = await retention([policy(name)]);
    expect(run.code, errors(run.lines)).toBe(0);
    expect(run.lines.some((l) => l.message.includes("does not verify: exporting it again"))).toBe(true);
    expect((await verifyExport(dirOf(name, "2025-11"))).ok).toBe(true);
    expect(await attached(name)).toEqual([child(name, "2026-02"), child(name, "2026-03")]);
  });
});

async function exportEarlier(name: string, month: string): Promise<void> {
  const from = new Date(`${month}-01T00:00:00Z`);
  await exportPartition(
    t.pool,
    {
      table: { schema: "public", name },
      partition: { schema: "public", name: child(name, month) },
      keyColumn: "ts",
      timeColumn: "ts",
      from,
      to: new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1)),
    },
    { root, productVersion: "earlier" },
  );
}

function manifestText(name: string, month: string): string {
  return readFileSync(path.join(dirOf(name, month), MANIFEST_FILE), "utf8");
}

describe("the rules of every mode apply unchanged", () => {
  it("a held partition is neither exported nor removed", async () => {
    const name = await table();
    await t.pool.query(
      "INSERT INTO telemetry_jobs.retention_holds (partition_name, hold_until, reason) VALUES ($1, '2030-01-01', 'audit')",
      [`public.${child(name, "2025-11")}`],
    );
    const run = await retention([policy(name)]);
    expect(run.code, errors(run.lines)).toBe(0);
    expect(existsSync(dirOf(name, "2025-11"))).toBe(false);
    expect(await attached(name)).toEqual([
      child(name, "2025-11"),
      child(name, "2026-02"),
      child(name, "2026-03"),
    ]);
    expect((await verifyExport(dirOf(name, "2025-12"))).ok).toBe(true);
  });

  it("more removals than maxDropsPerRun: refused (exit 2) before anything is written", async () => {
    const name = await table();
    const run = await retention([policy(name, { maxDropsPerRun: 2 })]);
    expect(run.code).toBe(2);
    expect(existsSync(path.join(root, `public.${name}`))).toBe(false);
    expect(await attached(name)).toEqual(MONTHS.map((m) => child(name, m)));
  });

  it("with a DEFAULT partition (plain DETACH under lock_timeout): exported, verified, dropped", async () => {
    const name = await table();
    await t.pool.query(`CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT`);
    await t.pool.query(`INSERT INTO public.${name} VALUES (900, '2030-01-01', 0, 'future')`);
    const run = await retention([policy(name)]);
    expect(run.code, errors(run.lines)).toBe(0);
    expect(await attached(name)).toEqual([`${name}_default`, child(name, "2026-02"), child(name, "2026-03")]);
    for (const m of EXPIRED_MONTHS) expect((await verifyExport(dirOf(name, m))).ok).toBe(true);
    const audit = await auditOf(name);
    expect(audit.filter((a) => a.path?.includes("the table has a DEFAULT partition"))).toHaveLength(3);
  });
});

describe("an intact export of other rows in the directory", () => {
  // The only copy of a dropped partition's rows: a new partition with the same start (late data
  // backfilled into a re-created month, or a shorter range) must not be exported over it.
  const cases: [string, (name: string) => string][] = [
    ["the same name and bounds, other rows", (name) => child(name, "2025-11")],
    ["another name and end", (name) => `${name}_late_20251101`],
  ];

  it.each(cases)(
    "%s: refused (exit 1, ERROR naming both), kept; --re-export overwrites",
    async (_n, nameOf) => {
      const name = await table();
      expect((await retention([policy(name)])).code).toBe(0);
      const first = manifestText(name, "2025-11");
      const late = nameOf(name);
      const to = late === child(name, "2025-11") ? "2025-12-01T00:00:00Z" : "2025-11-02T00:00:00Z";
      await t.pool.query(
        `CREATE TABLE public.${late} PARTITION OF public.${name} FOR VALUES FROM ('2025-11-01T00:00:00Z') TO ('${to}');
       INSERT INTO public.${name} VALUES (5001, '2025-11-01T03:00:00Z', 1, 'backfill'), (5002, '2025-11-01T04:00:00Z', 1, 'backfill')`,
      );
      const dry = await retention([policy(name)], ["--dry-run"]);
      expect(dry.code).toBe(0);
      const run = await retention([policy(name)]);
      expect(run.code).toBe(1);
      expect(errors(run.lines)).toContain(
        `${dirOf(name, "2025-11")} holds an intact export of public.${child(name, "2025-11")} [2025-11-01T00:00:00.000Z, 2025-12-01T00:00:00.000Z)`,
      );
      expect(errors(run.lines)).toContain(
        `public.${late} [2025-11-01T00:00:00.000Z, ${to.replace("Z", ".000Z")})`,
      );
      expect(errors(run.lines)).toContain("--re-export");
      expect(manifestText(name, "2025-11")).toBe(first);
      expect(await attached(name)).toEqual([late, child(name, "2026-02"), child(name, "2026-03")]);
      expect(await rowsOf(late)).toBe(2);
      const again = await retention([policy(name)], ["--re-export"]);
      expect(again.code, errors(again.lines)).toBe(0);
      const verdict = await verifyExport(dirOf(name, "2025-11"));
      expect(verdict.ok && verdict.manifest.rows).toBe("2");
      expect(await attached(name)).toEqual([child(name, "2026-02"), child(name, "2026-03")]);
    },
  );
});

describe("a file system error while exporting", () => {
  it("is an ERROR naming the partition, the directory, the root and the runbook; the partition stays", async () => {
    const name = await table();
    // A file where the table's directory should be: creating the partition's directory fails.
    writeFileSync(path.join(root, `public.${name}`), "not a directory");
    const run = await retention([policy(name)]);
    expect(run.code).toBe(1);
    const error = errors(run.lines);
    expect(error).toContain(`could not export public.${child(name, "2025-11")} to ${dirOf(name, "2025-11")}`);
    expect(error).toMatch(/ENOTDIR|EEXIST/);
    expect(error).toContain(`retention.export.to (${root})`);
    expect(error).toContain("it stays attached; nothing of it is removed");
    expect(error).toContain("docs/runbooks/retention.md");
    expect(await attached(name)).toEqual(MONTHS.map((m) => child(name, m)));
  });
});

describe("the export root gone during a run (the mount lost)", () => {
  it("the next partition is refused with an ERROR, and the root is not created again", async () => {
    const name = await table();
    const own = mkdtempSync(path.join(tmpdir(), "retention-export-lost-"));
    const resume = path.join(root, `resume-${name}`);
    const cli = startCli(["retention", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name, { export: { to: own } })] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "retention-export-before-detach",
      TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
    });
    await cli.waitFor("paused at fault point", 60_000);
    renameSync(own, `${own}.gone`);
    writeFileSync(resume, "");
    const { code } = await cli.done;
    expect(code).toBe(1);
    expect(errors(cli.lines)).toContain(`retention.export.to: ${own} does not exist`);
    expect(errors(cli.lines)).toContain(`public.${child(name, "2025-12")} is not exported`);
    expect(existsSync(own)).toBe(false);
    expect(await attached(name)).toContain(child(name, "2025-12"));
    rmSync(`${own}.gone`, { recursive: true, force: true });
  });
});

describe("a column added since the export", () => {
  it("the export does not verify against the table (database), is not reused, and --re-export writes it with the column", async () => {
    const name = await table();
    await exportEarlier(name, "2025-11");
    await t.pool.query(`ALTER TABLE public.${name} ADD COLUMN site text DEFAULT 'plant-7'`);
    const verdict = await verifyExport(dirOf(name, "2025-11"), t.pool);
    expect(verdict.ok).toBe(false);
    expect(verdict.ok ? [] : verdict.problems).toEqual([
      expect.objectContaining({ code: "database", detail: expect.stringContaining("columns") }),
    ]);
    const run = await retention([policy(name)]);
    expect(run.code).toBe(1);
    expect(run.lines.some((l) => l.message.includes("is already exported to"))).toBe(false);
    expect(await attached(name)).toContain(child(name, "2025-11"));
    const again = await retention([policy(name)], ["--re-export"]);
    expect(again.code, errors(again.lines)).toBe(0);
    const rewritten = await verifyExport(dirOf(name, "2025-11"));
    expect(rewritten.manifest?.columns.map((c) => c.name)).toContain("site");
  });
});

describe("expired rows in the DEFAULT partition", () => {
  it("are never deleted in mode export: kept with a WARNING naming them and the fix", async () => {
    const name = await table();
    await t.pool.query(`CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT`);
    // Late rows of a month that has no partition (long dropped) land in DEFAULT.
    await t.pool.query(
      `INSERT INTO public.${name} SELECT 1000 + g, '2025-10-05'::timestamptz + g * interval '1 hour', 1, 'late'
         FROM generate_series(1, 20) g`,
    );
    for (const args of [["--dry-run"], []]) {
      const run = await retention([policy(name)], args);
      expect(run.code, errors(run.lines)).toBe(0);
      const warning = run.lines.find((l) => l.finding === "export_default_rows");
      expect(warning?.severity).toBe("WARNING");
      expect(warning?.message).toContain(`kept 20 rows of public.${name}_default before 2026-02-01`);
      expect(warning?.message).toContain("create a partition for their range and move them into it");
      expect(await rowsOf(`${name}_default`)).toBe(20);
    }
    expect(await auditOf(name)).not.toContainEqual(
      expect.objectContaining({ partition: `public.${name}_default` }),
    );
  });
});

describe("a failed verification stops the drop", () => {
  const tampering: [string, (dir: string) => void, RegExp][] = [
    [
      "a truncated file",
      (dir) => truncateSync(path.join(dir, "part-00000.parquet"), 200),
      /failed verification \(file_size part-00000\.parquet/,
    ],
    [
      "a corrupted file (same size)",
      (dir) => {
        const file = path.join(dir, "part-00000.parquet");
        const bytes = readFileSync(file);
        bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
        writeFileSync(file, bytes);
      },
      /failed verification \(file_digest part-00000\.parquet/,
    ],
    [
      "a missing file",
      (dir) => rmSync(path.join(dir, "part-00000.parquet")),
      /failed verification \(file_missing part-00000\.parquet/,
    ],
    [
      "a manifest that disagrees",
      (dir) => {
        const file = path.join(dir, MANIFEST_FILE);
        const manifest = JSON.parse(readFileSync(file, "utf8"));
        manifest.rows = String(Number(manifest.rows) + 1);
        writeFileSync(file, JSON.stringify(manifest));
      },
      /failed verification \(rows: files hold \d+ rows, manifest \d+/,
    ],
  ];

  it.each(tampering)(
    "%s: exit 1, an ERROR, the partition still attached with its rows",
    async (_n, tamper, why) => {
      const name = await table();
      const month = "2025-11";
      const rows = await rowsOf(child(name, month));
      const resume = path.join(root, `resume-${name}`);
      const cli = startCli(["retention", "--now", NOW], {
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name)] }),
        TELEMETRY_JOBS_FAULT_PAUSE: "retention-export-before-verify",
        TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
      });
      await cli.waitFor("paused at fault point", 60_000);
      tamper(dirOf(name, month));
      writeFileSync(resume, "");
      const { code } = await cli.done;
      expect(code).toBe(1);
      expect(errors(cli.lines)).toMatch(why);
      expect(errors(cli.lines)).toContain(
        `the export of public.${child(name, month)} in ${dirOf(name, month)} failed verification`,
      );
      expect(errors(cli.lines)).toContain("it stays attached; nothing of it is removed");
      expect(await attached(name)).toEqual(MONTHS.map((m) => child(name, m)));
      expect(await rowsOf(child(name, month))).toBe(rows);
      expect(await auditOf(name)).toEqual([
        { partition: `public.${child(name, month)}`, outcome: "failed", path: null },
      ]);
    },
  );
});

describe("rows that change after the export", () => {
  // The read-back compares the files with the manifest (the rows of the export's snapshot); the
  // table itself is compared with it after the detach, where a change is caught whether it came
  // before the read-back or after it.
  it.each([
    ["between the export and its verification", "retention-export-before-verify"],
    ["between the verification and the detach", "retention-export-before-detach"],
  ])(
    "%s: caught after the detach, the detached table exported again, verified, then dropped",
    async (_when, pause) => {
      const name = await table();
      const month = "2025-11";
      const resume = path.join(root, `resume-${name}`);
      const cli = startCli(["retention", "--now", NOW], {
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy(name)] }),
        TELEMETRY_JOBS_FAULT_PAUSE: pause,
        TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
      });
      await cli.waitFor("paused at fault point", 60_000);
      const exported = readManifest(dirOf(name, month));
      expect(exported.state).toBe("ok");
      const rows = await rowsOf(child(name, month));
      expect(exported.state === "ok" && exported.manifest.rows).toBe(String(rows));
      // A late correction: one more row, and one changed.
      await t.pool.query(`INSERT INTO public.${name} VALUES (500, '2025-11-20T00:00:00Z', 1.5, 'late')`);
      await t.pool.query(`UPDATE public.${name} SET v = -1 WHERE id = 1`);
      writeFileSync(resume, "");
      const { code } = await cli.done;
      expect(code, errors(cli.lines)).toBe(0);
      expect(cli.lines.some((l) => l.message.includes("changed between its export and its detach"))).toBe(
        true,
      );
      const verdict = await verifyExport(dirOf(name, month));
      expect(verdict.ok).toBe(true);
      expect(verdict.manifest?.rows).toBe(String(rows + 1));
      expect(await attached(name)).not.toContain(child(name, month));
      expect((await auditOf(name))[0]!.path).toMatch(
        /read back and verified after the detach \(\d+ rows now/,
      );
    },
  );
});

describe("an expired child that is itself partitioned", () => {
  // Its rows are in its own partitions: an export of the child alone (FROM ONLY) would hold none
  // of them, verify as equal (0 = 0 rows), and let the drop take every row of the month.
  it("is kept with a warning naming why; nothing of it is written or removed; the rest is exported", async () => {
    const name = `x_${++seq}`;
    await t.pool.query(
      `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL, v double precision, note text)
         PARTITION BY RANGE (ts);
       CREATE TABLE public.${name}_p202511 PARTITION OF public.${name}
         FOR VALUES FROM ('2025-11-01') TO ('2025-12-01') PARTITION BY RANGE (ts);
       CREATE TABLE public.${name}_p202511_leaf PARTITION OF public.${name}_p202511
         FOR VALUES FROM ('2025-11-01') TO ('2025-12-01');
       CREATE TABLE public.${name}_p202512 PARTITION OF public.${name}
         FOR VALUES FROM ('2025-12-01') TO ('2026-01-01');
       CREATE TABLE public.${name}_p202603 PARTITION OF public.${name}
         FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
       INSERT INTO public.${name}
       SELECT g, '2025-11-01'::timestamptz + g * interval '12 hours', g, 'n' FROM generate_series(0, 99) g
        WHERE '2025-11-01'::timestamptz + g * interval '12 hours' < '2026-01-01';
       INSERT INTO public.${name} VALUES (1000, '2026-03-05', 1, 'kept');`,
    );
    const novemberRows = await rowsOf(`${name}_p202511_leaf`);
    expect(novemberRows).toBe(60);
    const dry = await retention([policy(name)], ["--dry-run"]);
    expect(dry.code, errors(dry.lines)).toBe(0);
    const warning = dry.lines.find((l) => l.finding === "export_subpartitioned");
    expect(warning?.severity).toBe("WARNING");
    expect(warning?.message).toContain(`public.${name}_p202511`);
    const run = await retention([policy(name)]);
    expect(run.code, errors(run.lines)).toBe(0);
    expect(run.lines.some((l) => l.finding === "export_subpartitioned")).toBe(true);
    expect(existsSync(dirOf(name, "2025-11"))).toBe(false);
    expect(await rowsOf(`${name}_p202511_leaf`)).toBe(novemberRows);
    expect(await attached(name)).toEqual([`${name}_p202511`, `${name}_p202603`]);
    const december = await verifyExport(dirOf(name, "2025-12"));
    expect(december.ok && december.manifest.rows).toBe("40");
  });
});

describe("partitions bounded by MINVALUE or MAXVALUE", () => {
  it("MINVALUE: kept with a warning naming the fix; nothing of it is written; MAXVALUE never expires", async () => {
    const name = `x_${++seq}`;
    await t.pool.query(
      `CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
       CREATE TABLE public.${name}_old PARTITION OF public.${name} FOR VALUES FROM (MINVALUE) TO ('2026-01-01');
       CREATE TABLE public.${name}_p202601 PARTITION OF public.${name} FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
       CREATE TABLE public.${name}_rest PARTITION OF public.${name} FOR VALUES FROM ('2026-02-01') TO (MAXVALUE);
       INSERT INTO public.${name} SELECT g, '2025-06-01'::timestamptz + g * interval '10 days' FROM generate_series(0, 40) g;`,
    );
    const run = await retention([policy(name)]);
    expect(run.code, errors(run.lines)).toBe(0);
    const warning = run.lines.find((l) => l.finding === "export_unbounded");
    expect(warning?.severity).toBe("WARNING");
    expect(warning?.message).toContain(`kept public.${name}_old [MINVALUE, 2026-01-01T00:00:00.000Z)`);
    expect(warning?.message).toContain("Give it a real lower bound");
    expect(await attached(name)).toEqual([`${name}_old`, `${name}_rest`]);
    expect(readdirSync(path.join(root, `public.${name}`))).toEqual(["ts_start=2026-01-01T00:00:00Z"]);
  });
});

describe("bad export policies", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "mode export without an export block",
      { export: undefined },
      /retention\.export: is required with mode "export": add "export": \{ "to"/,
    ],
    [
      "an export block with mode drop",
      { mode: "drop" },
      /retention\.export: is used only with mode "export" \(mode is "drop"\)/,
    ],
    [
      "a relative directory",
      { export: { to: "cold/tier" } },
      /retention\.export\.to: must be an absolute directory path/,
    ],
    [
      "an unknown format",
      { export: { to: "/mnt/cold", format: "csv" } },
      /retention\.export\.format: Invalid input: expected "parquet"/,
    ],
    [
      "an unknown compression",
      { export: { to: "/mnt/cold", compression: "snappy" } },
      /retention\.export\.compression: Invalid input: expected "zstd"/,
    ],
    [
      "an unknown key",
      { export: { to: "/mnt/cold", bucket: "b" } },
      /retention\.export: unknown key "bucket"/,
    ],
    [
      "exactCutoff with mode export (rows deleted row by row are never exported)",
      { exactCutoff: true },
      /retention\.exactCutoff: cannot be true with mode "export"/,
    ],
  ];

  it.each(cases)(
    "%s: exit 2, the field named, the database unchanged",
    async (_n, retentionFields, message) => {
      await refusedUnchanged((name) => policy(name, retentionFields), message);
    },
  );

  it("an export root that does not exist (the bucket not mounted): exit 2, nothing created", async () => {
    const missing = path.join(root, `not-mounted-${seq}`, "mnt", "cold");
    await refusedUnchanged(
      (name) => policy(name, { export: { to: missing } }),
      /retention\.export\.to: .*not-mounted-\d+\/mnt\/cold does not exist.*mount/,
    );
    expect(existsSync(path.dirname(path.dirname(missing)))).toBe(false);
  });

  it("an export root that is a file: exit 2, nothing changed", async () => {
    const file = path.join(root, `a-file-${seq}`);
    writeFileSync(file, "a file where the mount should be");
    await refusedUnchanged(
      (name) => policy(name, { export: { to: file } }),
      /retention\.export\.to: .*a-file-\d+ is not a directory/,
    );
  });

  it("mode export on a plain table (its rows are deleted, never exported): exit 2, unchanged", async () => {
    await refusedUnchanged(
      (name) => ({ ...policy(name), partitioned: false }),
      /partitioned: mode "export" needs a partitioned table/,
      async () => {
        const name = `plain_${++seq}`;
        await t.pool.query(
          `CREATE TABLE public.${name} (id int, ts timestamptz NOT NULL);
           INSERT INTO public.${name} SELECT g, '2025-11-01'::timestamptz + g * interval '1 day' FROM generate_series(0, 99) g`,
        );
        return name;
      },
    );
  });
});

/** Runs retention with `policyOf(a new table made by make)`: exit 2, `message`, nothing changed or written. */
async function refusedUnchanged(
  policyOf: (name: string) => unknown,
  message: RegExp,
  make: () => Promise<string> = table,
): Promise<void> {
  const name = await make();
  const before = await catalogSnapshot(t.url);
  const runs = async () =>
    (await t.pool.query("SELECT count(*)::int AS n FROM telemetry_jobs.job_runs")).rows[0].n as number;
  const runsBefore = await runs();
  const { code, lines, stderr } = await retention([policyOf(name)]);
  expect(lines.map((l) => l.message).join("\n") + stderr).toMatch(message);
  expect(code).toBe(2);
  expect(await catalogSnapshot(t.url)).toEqual(before);
  expect(await runs()).toBe(runsBefore);
  expect(existsSync(path.join(root, `public.${name}`))).toBe(false);
}
