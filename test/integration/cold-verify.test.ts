// verifyExport refuses every way an export can be wrong: a flipped byte, a truncated or missing
// file, a stray file, a manifest that disagrees or is torn, a well-formed file holding different
// rows, and a partition that changed after the export. Each case works on a copy of one good export.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportPartition, type PartitionToExport } from "../../shared/cold/export.ts";
import { inProgressName, MANIFEST_FILE } from "../../shared/cold/layout.ts";
import type { Manifest } from "../../shared/cold/manifest.ts";
import { type VerifyProblemCode, verifyExport } from "../../shared/cold/verify.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

const PARTITION: PartitionToExport = {
  table: { schema: "public", name: "cold_v" },
  partition: { schema: "public", name: "cold_v_2026_02" },
  keyColumn: "ts",
  timeColumn: "ts",
  from: new Date("2026-02-01T00:00:00Z"),
  to: new Date("2026-03-01T00:00:00Z"),
};

describe("cold export verification", () => {
  let td: TestDatabase;
  let work: string;
  let good: string;
  let copies = 0;

  beforeAll(async () => {
    td = await createTestDatabase();
    await td.pool.query(`
      CREATE TABLE public.cold_v (ts timestamptz NOT NULL, device_id integer, reading numeric(12,3), note text)
        PARTITION BY RANGE (ts);
      CREATE TABLE public.cold_v_2026_02 PARTITION OF public.cold_v
        FOR VALUES FROM ('2026-02-01 00:00:00+00') TO ('2026-03-01 00:00:00+00');
      INSERT INTO public.cold_v
      SELECT '2026-02-01'::timestamptz + g * interval '7 minutes', g % 17, g * 1.25, 'n' || g
        FROM generate_series(1, 3000) AS g;`);
    work = mkdtempSync(path.join(tmpdir(), "cold-verify-"));
    // The export never creates its root.
    mkdirSync(path.join(work, "good"));
    mkdirSync(path.join(work, "other"));
    const result = await exportPartition(td.pool, PARTITION, {
      root: path.join(work, "good"),
      productVersion: "test",
      rowsPerFile: 1000,
      rowGroup: { rows: 250 },
    });
    good = result.dir;
  });

  afterAll(async () => {
    await td?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  function copyOfGood(): string {
    const dir = path.join(work, `copy-${++copies}`);
    cpSync(good, dir, { recursive: true });
    return dir;
  }

  function manifestOf(dir: string): Manifest {
    return JSON.parse(readFileSync(path.join(dir, MANIFEST_FILE), "utf8"));
  }

  function rewriteManifest(dir: string, edit: (m: Manifest) => void): void {
    const m = manifestOf(dir);
    edit(m);
    writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify(m));
  }

  async function problemCodes(dir: string, withDatabase = false): Promise<VerifyProblemCode[]> {
    const verdict = await verifyExport(dir, withDatabase ? td.pool : undefined);
    return verdict.ok ? [] : [...new Set(verdict.problems.map((p) => p.code))].sort();
  }

  it("passes an untouched export, against the manifest and the database", async () => {
    expect(manifestOf(good).files).toHaveLength(3);
    expect(await problemCodes(good, true)).toEqual([]);
  });

  it("refuses a file with one byte changed", async () => {
    const dir = copyOfGood();
    const file = path.join(dir, "part-00001.parquet");
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    writeFileSync(file, bytes);
    expect(await problemCodes(dir)).toContain("file_digest");
  });

  it("refuses a truncated file and a missing file", async () => {
    const truncated = copyOfGood();
    truncateSync(path.join(truncated, "part-00002.parquet"), 100);
    expect(await problemCodes(truncated)).toEqual(
      expect.arrayContaining(["file_size", "file_unreadable", "rows"]),
    );
    const missing = copyOfGood();
    rmSync(path.join(missing, "part-00000.parquet"));
    expect(await problemCodes(missing)).toEqual(["checksum", "file_missing", "rows", "time_range"]);
  });

  it("refuses files the manifest does not list (a reader of the directory would count them)", async () => {
    const dir = copyOfGood();
    cpSync(path.join(dir, "part-00000.parquet"), path.join(dir, "part-00003.parquet"));
    writeFileSync(path.join(dir, inProgressName("part-00004.parquet")), "partial");
    const verdict = await verifyExport(dir);
    expect(verdict.ok).toBe(false);
    if (verdict.ok) return;
    expect(verdict.problems.map((p) => [p.code, p.file])).toEqual([
      ["stray_file", inProgressName("part-00004.parquet")],
      ["stray_file", "part-00003.parquet"],
    ]);
  });

  it("refuses a manifest that disagrees, is torn, or is missing", async () => {
    const rows = copyOfGood();
    rewriteManifest(rows, (m) => {
      m.rows = "2999";
    });
    expect(await problemCodes(rows)).toEqual(["rows"]);
    const checksum = copyOfGood();
    rewriteManifest(checksum, (m) => {
      m.checksum.value = (BigInt(m.checksum.value) + 1n).toString();
    });
    expect(await problemCodes(checksum)).toEqual(["checksum"]);
    const torn = copyOfGood();
    truncateSync(path.join(torn, MANIFEST_FILE), 40);
    expect(await problemCodes(torn)).toEqual(["manifest_invalid"]);
    const none = copyOfGood();
    rmSync(path.join(none, MANIFEST_FILE));
    expect(await problemCodes(none)).toEqual(["manifest_missing"]);
  });

  it("finds a well-formed file holding one different value by the checksum alone", async () => {
    // Export the same partition with one value changed, and pass its file off as the good one:
    // names, sizes, sha256 and row counts all match the manifest; only the content differs.
    await td.pool.query(
      "UPDATE public.cold_v_2026_02 SET note = 'N' || substr(note, 2) WHERE note = 'n1500'",
    );
    try {
      const other = await exportPartition(td.pool, PARTITION, {
        root: path.join(work, "other"),
        productVersion: "test",
        rowsPerFile: 1000,
        rowGroup: { rows: 250 },
      });
      const dir = copyOfGood();
      for (const f of other.manifest.files) cpSync(path.join(other.dir, f.name), path.join(dir, f.name));
      rewriteManifest(dir, (m) => {
        m.files = other.manifest.files;
      });
      expect(await problemCodes(dir)).toEqual(["checksum"]);
      // And the database no longer matches the good export.
      expect(await problemCodes(good, true)).toEqual(["database"]);
    } finally {
      await td.pool.query("UPDATE public.cold_v_2026_02 SET note = 'n1500' WHERE note = 'N1500'");
    }
    expect(await problemCodes(good, true)).toEqual([]);
  });
});
