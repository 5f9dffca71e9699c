// SIGKILL a real process in the middle of a cold-tier export (inside a part file, between files,
// before the manifest), then export again: what the killed run left is never counted (no manifest,
// so verification refuses the directory), and the next export replaces every leftover and verifies.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportPartition, type PartitionToExport } from "../../shared/cold/export.ts";
import { inProgressName, MANIFEST_FILE, partitionDirectory } from "../../shared/cold/layout.ts";
import { verifyExport } from "../../shared/cold/verify.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

const PARTITION: PartitionToExport = {
  table: { schema: "public", name: "cold_kill" },
  partition: { schema: "public", name: "cold_kill_2026_03" },
  keyColumn: "ts",
  timeColumn: "ts",
  from: new Date("2026-03-01T00:00:00Z"),
  to: new Date("2026-04-01T00:00:00Z"),
};
const SIZES = { rowGroup: { rows: 500 }, rowsPerFile: 4000, fetchRows: 250 };

// The victim: exports with small row groups, prints every event as a line, and when it reaches
// the event named by COLD_PAUSE_AT ("row_group:N" counts row groups, or "before_manifest") it
// says "paused" and waits to be killed. COLD_KILL_RUNNING skips the pause: the parent kills it
// while it runs.
const VICTIM = `
import pg from "pg";
import { exportPartition } from ${JSON.stringify(path.resolve("shared/cold/export.ts"))};
const pool = new pg.Pool({ connectionString: process.env.COLD_DB_URL });
let groups = 0;
await exportPartition(pool, JSON.parse(process.env.COLD_PARTITION, (k, v) => (k === "from" || k === "to" ? new Date(v) : v)), {
  root: process.env.COLD_ROOT, productVersion: "kill-test", ...JSON.parse(process.env.COLD_SIZES),
  onEvent: async (e) => {
    const at = e.kind === "row_group" ? "row_group:" + ++groups : e.kind;
    console.log(at);
    if (at === process.env.COLD_PAUSE_AT) { console.log("paused"); await new Promise(() => {}); }
  },
});
console.log("finished");
await pool.end();`;

function startVictim(td: TestDatabase, root: string, pauseAt: string): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", VICTIM], {
    env: {
      ...process.env,
      COLD_DB_URL: td.url,
      COLD_ROOT: root,
      COLD_PARTITION: JSON.stringify(PARTITION),
      COLD_SIZES: JSON.stringify(SIZES),
      COLD_PAUSE_AT: pauseAt,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolves when the victim prints `line`; rejects if it exits first. */
function waitForLine(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr!.on("data", (d) => {
      err += d;
    });
    child.stdout!.on("data", (d) => {
      out += d;
      if (out.split("\n").includes(line)) resolve();
    });
    child.once("exit", (code) =>
      reject(new Error(`victim exited (${code}) before "${line}": ${out} ${err}`)),
    );
  });
}

async function killAt(td: TestDatabase, root: string, line: string, pauseAt = line): Promise<void> {
  const child = startVictim(td, root, pauseAt);
  const exited = new Promise((r) => child.once("exit", r));
  await waitForLine(child, line);
  child.kill("SIGKILL");
  await exited;
}

describe("cold export killed with SIGKILL", () => {
  let td: TestDatabase;
  let root: string;

  beforeAll(async () => {
    td = await createTestDatabase();
    await td.pool.query(`
      CREATE TABLE public.cold_kill (ts timestamptz NOT NULL, device uuid, value double precision, doc jsonb)
        PARTITION BY RANGE (ts);
      CREATE TABLE public.cold_kill_2026_03 PARTITION OF public.cold_kill
        FOR VALUES FROM ('2026-03-01 00:00:00+00') TO ('2026-04-01 00:00:00+00');
      INSERT INTO public.cold_kill
      SELECT '2026-03-01'::timestamptz + g * interval '90 seconds', gen_random_uuid(), g / 3.0,
             jsonb_build_object('g', g, 'label', repeat('z', g % 50))
        FROM generate_series(1, 10000) AS g;`);
    root = mkdtempSync(path.join(tmpdir(), "cold-kill-"));
  });

  afterAll(async () => {
    await td?.drop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const dir = () =>
    partitionDirectory(root, { table: PARTITION.table, keyColumn: "ts", startMicros: 1772323200000000n });

  async function exportAgainAndVerify(): Promise<void> {
    const result = await exportPartition(td.pool, PARTITION, { root, productVersion: "test", ...SIZES });
    expect(result.dir).toBe(dir());
    const verdict = await verifyExport(dir(), td.pool);
    expect(verdict).toMatchObject({ ok: true, readBack: { rows: 10000n } });
    expect(readdirSync(dir()).sort()).toEqual([
      MANIFEST_FILE,
      "part-00000.parquet",
      "part-00001.parquet",
      "part-00002.parquet",
    ]);
  }

  it("inside a part file: the partial file is never counted, the next export replaces it", async () => {
    // 500-row groups, 4,000-row files: group 19 is in the third file.
    await killAt(td, root, "paused", "row_group:19");
    const left = readdirSync(dir());
    expect(left).toContain(inProgressName("part-00002.parquet"));
    expect(left).toContain("part-00001.parquet");
    expect(left).not.toContain(MANIFEST_FILE);
    expect(await verifyExport(dir())).toMatchObject({ ok: false, problems: [{ code: "manifest_missing" }] });
    await exportAgainAndVerify();
  });

  it("before the manifest: complete parts without a manifest do not count", async () => {
    rmSync(dir(), { recursive: true });
    await killAt(td, root, "paused", "before_manifest");
    expect(readdirSync(dir()).sort()).toEqual([
      "part-00000.parquet",
      "part-00001.parquet",
      "part-00002.parquet",
    ]);
    expect(await verifyExport(dir())).toMatchObject({ ok: false, problems: [{ code: "manifest_missing" }] });
    await exportAgainAndVerify();
  });

  it("while running, then stale files of other runs: the re-export clears them all", async () => {
    await killAt(td, root, "row_group:3", "never");
    expect(readdirSync(dir())).not.toContain(MANIFEST_FILE);
    mkdirSync(dir(), { recursive: true });
    writeFileSync(path.join(dir(), "part-00042.parquet"), "left by an older, larger export");
    writeFileSync(path.join(dir(), inProgressName(MANIFEST_FILE)), '{"torn');
    await exportAgainAndVerify();
  });
});
