// SIGKILL a real retention process in mode "export" at each point of an export and its removal,
// then run retention normally: no row is lost, no partition is removed without a verified export,
// no partial or stale file is counted, and the run finishes.
//
// Before the detach (inside a part file, before the manifest, after the manifest, after the
// verification) the partition is still attached: the next run exports it again, or finds a valid
// export and verifies it. After the detach (before the drop, or inside the drop's transaction) the
// table is detached and marked, with the exported range on its time column: the next run finds it
// by its mark, reads its export back, compares it with the table, and only then drops it.
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  IN_PROGRESS_SUFFIX,
  inProgressName,
  MANIFEST_FILE,
  partitionDirectory,
} from "../../shared/cold/layout.ts";
import { verifyExport } from "../../shared/cold/verify.ts";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type CliRun, type LogRecord, runCli, startCli } from "../support/jobs.ts";

let t: TestDatabase;
let root: string;
beforeAll(async () => {
  t = await createTestDatabase();
  root = mkdtempSync(path.join(tmpdir(), "retention-export-kill-"));
});
afterAll(async () => {
  await t.drop();
  rmSync(root, { recursive: true, force: true });
});

const NOW = "2026-03-01T00:00:00Z"; // keep 1 month -> cutoff 2026-02-01
const MONTHS = ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"];
const EXPIRED = MONTHS.slice(0, 3);
/** More than one row group (122,880 rows): the first row group is written before the file ends. */
const BIG_MONTH_ROWS = 130_000;
let seq = 0;

/** k_N(id, ts, v, note): monthly children, three expired; the first one large when `big`. */
async function table(big: boolean): Promise<string> {
  const name = `k_${++seq}`;
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
     SELECT g, '2025-11-01'::timestamptz + g * interval '36 hours', g / 7.0, 'n' || g FROM generate_series(0, 99) g`,
  );
  if (big)
    await t.pool.query(
      `INSERT INTO public.${name}
       SELECT 1000 + g, '2025-11-01'::timestamptz + g * interval '10 seconds', g / 3.0, NULL
         FROM generate_series(1, ${BIG_MONTH_ROWS}) g`,
    );
  return name;
}

const child = (name: string, month: string) => `${name}_p${month.replace("-", "")}`;

function policyOf(name: string) {
  return {
    table: `public.${name}`,
    timeColumn: "ts",
    retention: { keep: "1 month", mode: "export", export: { to: root } },
  };
}

function dirOf(name: string, month: string): string {
  return partitionDirectory(root, {
    table: { schema: "public", name },
    keyColumn: "ts",
    startMicros: BigInt(Date.parse(`${month}-01T00:00:00Z`)) * 1000n,
  });
}

function env(name: string, extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyOf(name)] }),
    ...extra,
  };
}

async function jobSessions(): Promise<unknown[]> {
  const r = await t.pool.query(
    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'telemetry-jobs/retention'",
  );
  return r.rows;
}

/** SIGKILLs the paused process and waits until PostgreSQL has ended (and rolled back) its sessions. */
async function killAndSettle(cli: CliRun): Promise<void> {
  cli.child.kill("SIGKILL");
  expect((await cli.done).signal).toBe("SIGKILL");
  for (let i = 0; i < 200 && (await jobSessions()).length > 0; i++)
    await new Promise((r) => setTimeout(r, 50));
  expect(await jobSessions()).toEqual([]);
}

async function killAt(name: string, point: string): Promise<void> {
  const cli = startCli(["retention", "--now", NOW], env(name, { TELEMETRY_JOBS_FAULT_PAUSE: point }));
  await cli.waitFor("paused at fault point", 90_000);
  await killAndSettle(cli);
}

/** Rows of every expired child, counted before anything runs. */
async function expiredRows(name: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const m of EXPIRED)
    counts[m] = (
      await t.pool.query(`SELECT count(*)::int AS n FROM ONLY public.${child(name, m)}`)
    ).rows[0].n;
  return counts;
}

async function attached(name: string): Promise<string[]> {
  return (await partitionsOf(t.url, `public.${name}`)).map((p) => p.name);
}

/** Where a table of that name is, its comment and its time column's comment; null: nowhere. */
async function tableState(relname: string) {
  const r = await t.pool.query(
    `SELECT c.relispartition AS partition, obj_description(c.oid, 'pg_class') AS comment,
            col_description(c.oid, a.attnum) AS range
       FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'ts'
      WHERE c.relname = $1 AND c.relkind = 'r'`,
    [relname],
  );
  return r.rows[0] ?? null;
}

function errors(lines: LogRecord[]): string {
  return lines
    .filter((l) => l.severity === "ERROR")
    .map((l) => l.message)
    .join("\n");
}

/**
 * The next, normal run: exit 0, every expired child gone, and its directory holds exactly one
 * verified export of all its rows: the manifest and the files it lists, nothing else.
 */
async function expectNextRunFinishes(name: string, rows: Record<string, number>) {
  const run = await runCli(["retention", "--now", NOW], env(name));
  expect(run.code, errors(run.lines) + run.stderr).toBe(0);
  expect(await attached(name)).toEqual([child(name, "2026-02"), child(name, "2026-03")]);
  for (const m of EXPIRED) {
    expect(await tableState(child(name, m))).toBeNull();
    const dir = dirOf(name, m);
    const verdict = await verifyExport(dir);
    expect(verdict.ok, verdict.ok ? "" : JSON.stringify(verdict.problems)).toBe(true);
    expect(verdict.manifest!.rows).toBe(String(rows[m]));
    expect(readdirSync(dir).sort()).toEqual([MANIFEST_FILE, ...verdict.manifest!.files.map((f) => f.name)]);
    expect(readdirSync(dir).some((f) => f.endsWith(IN_PROGRESS_SUFFIX))).toBe(false);
  }
  return run;
}

describe("retention in mode export, killed before the detach", () => {
  it("inside a part file: the partial file is cleared, the partition exported again", async () => {
    const name = await table(true);
    const rows = await expiredRows(name);
    await killAt(name, "retention-export-row-group");
    expect(readdirSync(dirOf(name, "2025-11"))).toEqual([inProgressName("part-00000.parquet")]);
    expect(await attached(name)).toEqual(MONTHS.map((m) => child(name, m)));
    expect(await expiredRows(name)).toEqual(rows);
    await expectNextRunFinishes(name, rows);
  }, 180_000);

  it("before the manifest: finished parts without a manifest are not counted", async () => {
    const name = await table(false);
    const rows = await expiredRows(name);
    await killAt(name, "retention-export-before-manifest");
    expect(readdirSync(dirOf(name, "2025-11"))).toEqual(["part-00000.parquet"]);
    expect(await attached(name)).toEqual(MONTHS.map((m) => child(name, m)));
    const run = await expectNextRunFinishes(name, rows);
    expect(run.lines.some((l) => l.message.includes("is already exported"))).toBe(false);
  }, 120_000);

  it("after the manifest, before the verification: an export that no longer verifies is not trusted", async () => {
    const name = await table(false);
    const rows = await expiredRows(name);
    await killAt(name, "retention-export-before-verify");
    const dir = dirOf(name, "2025-11");
    expect(readdirSync(dir).sort()).toEqual([MANIFEST_FILE, "part-00000.parquet"]);
    expect(await attached(name)).toEqual(MONTHS.map((m) => child(name, m)));
    // Never verified, and damaged since: the next run must find out and write it again.
    truncateSync(path.join(dir, "part-00000.parquet"), 64);
    const run = await expectNextRunFinishes(name, rows);
    expect(run.lines.some((l) => l.message.includes("does not verify: exporting it again"))).toBe(true);
  }, 120_000);

  it("after the verification, before the detach: the export is verified again, not rewritten", async () => {
    const name = await table(false);
    const rows = await expiredRows(name);
    await killAt(name, "retention-export-before-detach");
    const manifest = readFileSync(path.join(dirOf(name, "2025-11"), MANIFEST_FILE), "utf8");
    expect(await attached(name)).toEqual(MONTHS.map((m) => child(name, m)));
    expect((await tableState(child(name, "2025-11"))).comment).toBeNull();
    const run = await expectNextRunFinishes(name, rows);
    expect(readFileSync(path.join(dirOf(name, "2025-11"), MANIFEST_FILE), "utf8")).toBe(manifest);
    expect(run.lines.filter((l) => l.message.includes("is already exported"))).toHaveLength(1);
  }, 120_000);
});

describe("retention in mode export, killed between the detach and the drop", () => {
  const points: [string, string][] = [
    ["before the drop", "retention-export-after-detach"],
    ["inside the drop's transaction", "retention-in-finish:drop"],
  ];

  it.each(points)(
    "%s: the next run verifies the export against the detached table, then drops it",
    async (_n, point) => {
      const name = await table(false);
      const rows = await expiredRows(name);
      await killAt(name, point);
      const left = await tableState(child(name, "2025-11"));
      expect(left).toEqual({
        partition: false,
        comment: `telemetry-jobs retention: removing from public.${name}, mode drop, range [2025-11-01T00:00:00.000Z, 2025-12-01T00:00:00.000Z), ~0 rows`,
        range: `telemetry-jobs retention: exporting [2025-11-01T00:00:00.000Z, 2025-12-01T00:00:00.000Z) under ${root}`,
      });
      expect(
        (await t.pool.query(`SELECT count(*)::int AS n FROM public.${child(name, "2025-11")}`)).rows[0].n,
      ).toBe(rows["2025-11"]);
      const run = await expectNextRunFinishes(name, rows);
      const finish = run.lines.find((l) => l.message.startsWith("done: finish removing"));
      expect(finish?.path).toMatch(/^export in .* \(\d+ rows\) read back and verified, drop$/);
    },
    120_000,
  );

  it("an export lost after the detach: the detached table is exported again before the drop", async () => {
    const name = await table(false);
    const rows = await expiredRows(name);
    await killAt(name, "retention-export-after-detach");
    rmSync(path.join(dirOf(name, "2025-11"), "part-00000.parquet"));
    const run = await expectNextRunFinishes(name, rows);
    expect(
      run.lines.some((l) => l.message.includes("does not verify: exporting the detached table again")),
    ).toBe(true);
  }, 120_000);

  it("a row added between the verification and the detach, then the policy left mode export: the leftover is checked against its export, exported again, then dropped", async () => {
    const name = await table(false);
    const p = child(name, "2025-11");
    const rows = await expiredRows(name);
    // Fires once, in the mark transaction (COMMENT ON): after the verification, before the detach,
    // a stand-in for a late correction committed in that window.
    await t.pool.query(
      `CREATE TABLE public.${name}_fired (x int);
       CREATE FUNCTION public.${name}_late() RETURNS event_trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM public.${name}_fired) THEN
           INSERT INTO public.${name}_fired VALUES (1);
           INSERT INTO public.${name} VALUES (9999, '2025-11-15T00:00:00Z', 42, 'late correction');
         END IF;
       END $$;
       CREATE EVENT TRIGGER ${name}_late ON ddl_command_end WHEN TAG IN ('COMMENT') EXECUTE FUNCTION public.${name}_late();`,
    );
    await killAt(name, "retention-export-after-detach");
    await t.pool.query(`DROP EVENT TRIGGER ${name}_late`);
    expect((await t.pool.query(`SELECT count(*)::int AS n FROM public.${p} WHERE id = 9999`)).rows[0].n).toBe(
      1,
    );
    const detach = { ...policyOf(name), retention: { keep: "1 month", mode: "detach" } };
    const run = await runCli(["retention", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [detach] }),
    });
    expect(run.code, errors(run.lines) + run.stderr).toBe(0);
    expect(await tableState(p)).toBeNull();
    const verdict = await verifyExport(dirOf(name, "2025-11"));
    expect(verdict.ok && verdict.manifest.rows).toBe(String(rows["2025-11"]! + 1));
  }, 180_000);

  it("a row written straight into the detached table while the drop waits: not dropped, exported by the next run", async () => {
    const name = await table(false);
    const p = child(name, "2025-11");
    const rows = await expiredRows(name);
    const resume = path.join(root, `resume-${name}`);
    const cli = startCli(
      ["retention", "--now", NOW],
      env(name, {
        TELEMETRY_JOBS_FAULT_PAUSE: "retention-export-after-detach",
        TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
      }),
    );
    await cli.waitFor("paused at fault point", 90_000);
    // A writer that addresses the partition by name (partition-aware ingest) inserts a late row,
    // committed only once the job waits for a lock on the table (its check before is done by then).
    const writer = await t.pool.connect();
    try {
      await writer.query("BEGIN");
      await writer.query(`INSERT INTO public.${p} VALUES (7777, '2025-11-20T00:00:00Z', 1, 'direct write')`);
      writeFileSync(resume, "");
      let waiting = 0;
      for (let i = 0; i < 400 && waiting === 0; i++) {
        await new Promise((r) => setTimeout(r, 25));
        waiting = (
          await t.pool.query(
            "SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = $1 AND NOT l.granted",
            [p],
          )
        ).rows[0].n;
      }
      expect(waiting).toBe(1);
      await writer.query("COMMIT");
    } finally {
      writer.release();
    }
    const { code } = await cli.done;
    expect(code).toBe(1);
    expect(errors(cli.lines)).toContain(`public.${p} changed while its drop waited for it`);
    expect(await tableState(p)).not.toBeNull();
    expect((await t.pool.query(`SELECT count(*)::int AS n FROM public.${p} WHERE id = 7777`)).rows[0].n).toBe(
      1,
    );
    const next = await runCli(["retention", "--now", NOW], env(name));
    expect(next.code, errors(next.lines)).toBe(0);
    expect(await tableState(p)).toBeNull();
    const verdict = await verifyExport(dirOf(name, "2025-11"));
    expect(verdict.ok && verdict.manifest.rows).toBe(String(rows["2025-11"]! + 1));
  }, 180_000);
});
