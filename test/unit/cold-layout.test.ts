import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  classifyEntry,
  encodePathPart,
  hivePartitionKey,
  inProgressName,
  isoFromEpochMicros,
  isPartFileName,
  MANIFEST_FILE,
  partFileName,
  partitionDirectory,
  tableDirectoryName,
} from "../../shared/cold/layout.ts";

const ROOT = "/mnt/cold";
const JAN = 1767225600000000n; // 2026-01-01T00:00:00Z in microseconds

function dirFor(schema: string, name: string, keyColumn = "ts"): string {
  return partitionDirectory(ROOT, { table: { schema, name }, keyColumn, startMicros: JAN });
}

/** The directory sits exactly two levels below the root, whatever the names. */
function assertInsideRoot(dir: string): void {
  const rel = path.relative(ROOT, dir);
  expect(rel.startsWith("..")).toBe(false);
  expect(path.isAbsolute(rel)).toBe(false);
  expect(rel.split(path.sep)).toHaveLength(2);
}

describe("cold-tier layout", () => {
  it("is Hive style: <schema>.<table>/<key>_start=<ISO start>, never the key column's own name", () => {
    expect(dirFor("public", "telemetry_points")).toBe(
      "/mnt/cold/public.telemetry_points/ts_start=2026-01-01T00:00:00Z",
    );
    expect(hivePartitionKey("ts")).toBe("ts_start");
  });

  it("keeps hostile names inside the root, one level each", () => {
    const hostile: [string, string][] = [
      ["..", ".."],
      [".", "x"],
      ["a/b", "../../etc"],
      ["public", "victim\u0000.old"],
      ["\\..\\", "%2E%2E"],
      ["x".repeat(63), "é".repeat(31)],
      ["Ünïcödé", "日本語テーブル"],
    ];
    for (const [schema, name] of hostile) {
      const dir = dirFor(schema, name, "../key");
      assertInsideRoot(dir);
      expect(dir).not.toContain("\u0000");
      expect(path.basename(path.dirname(dir))).not.toMatch(/\.\.|\//);
    }
  });

  it("encodes only [A-Za-z0-9_-] as themselves, everything else as %XX of UTF-8", () => {
    expect(encodePathPart("victim.old")).toBe("victim%2Eold");
    expect(encodePathPart("..")).toBe("%2E%2E");
    expect(encodePathPart("a/b\u0000")).toBe("a%2Fb%00");
    expect(encodePathPart("100%")).toBe("100%25");
    expect(encodePathPart("é")).toBe("%C3%A9");
    expect(() => encodePathPart("")).toThrow(/empty/);
  });

  it("never lets two tables share a directory (injective, dots inside names included)", () => {
    expect(tableDirectoryName({ schema: "a.b", name: "c" })).not.toBe(
      tableDirectoryName({ schema: "a", name: "b.c" }),
    );
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 70 }),
        fc.string({ minLength: 1, maxLength: 70 }),
        (a, b) => {
          fc.pre(a !== b);
          expect(encodePathPart(a)).not.toBe(encodePathPart(b));
        },
      ),
    );
  });

  it("shortens very long names to a component a filesystem accepts, still distinct", () => {
    const long1 = `${"é".repeat(60)}a`;
    const long2 = `${"é".repeat(60)}b`;
    const e1 = encodePathPart(long1);
    expect(Buffer.byteLength(e1)).toBeLessThanOrEqual(120);
    expect(e1).not.toBe(encodePathPart(long2));
    expect(e1).toMatch(/^[A-Za-z0-9_%-]+~[0-9a-f]{16}$/);
    expect(Buffer.byteLength(tableDirectoryName({ schema: long1, name: long2 }))).toBeLessThanOrEqual(255);
  });

  it("prints partition starts in UTC, microseconds only when present", () => {
    expect(isoFromEpochMicros(JAN)).toBe("2026-01-01T00:00:00Z");
    expect(isoFromEpochMicros(JAN + 1n)).toBe("2026-01-01T00:00:00.000001Z");
    expect(isoFromEpochMicros(JAN + 123_456_789n)).toBe("2026-01-01T00:02:03.456789Z");
    expect(isoFromEpochMicros(-1n)).toBe("1969-12-31T23:59:59.999999Z");
    expect(isoFromEpochMicros(-62135596800000000n)).toBe("0001-01-01T00:00:00Z");
  });

  it("names part files, and tells finished ones from in-progress ones and the manifest", () => {
    expect(partFileName(0)).toBe("part-00000.parquet");
    expect(partFileName(12)).toBe("part-00012.parquet");
    expect(() => partFileName(100_000)).toThrow();
    expect(isPartFileName("part-00003.parquet")).toBe(true);
    expect(isPartFileName(inProgressName("part-00003.parquet"))).toBe(false);
    expect(classifyEntry(inProgressName("part-00003.parquet"))).toBe("in_progress");
    expect(classifyEntry(inProgressName(MANIFEST_FILE))).toBe("in_progress");
    expect(classifyEntry(MANIFEST_FILE)).toBe("manifest");
    expect(classifyEntry("part-3.parquet")).toBe("other");
    expect(classifyEntry("notes.txt")).toBe("other");
  });

  it("gives in-progress files hidden names that a *.parquet wildcard does not match", () => {
    // BigQuery's external table reads `<table>/*.parquet` and cannot exclude a prefix; a kill
    // between a Cloud Storage mount's copy and delete leaves both names.
    for (const name of [partFileName(0), MANIFEST_FILE]) {
      expect(inProgressName(name).startsWith(".")).toBe(true);
      expect(inProgressName(name).endsWith(".parquet")).toBe(false);
    }
  });
});
