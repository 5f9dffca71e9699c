// Verifies an exported partition from what is on disk, never from the writer's counters: every file
// the manifest lists is read back row group by row group (hyparquet), its rows hashed as the
// database hashes them (checksum.ts), and the totals compared with the manifest and, when a
// connection is given, with the partition in the database (in a fresh snapshot). Any file in the
// directory that the manifest does not list fails verification too: Hive-style readers such as a
// BigQuery external table would count it.
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { asyncBufferFromFile, type FileMetaData, parquetMetadataAsync, parquetRead } from "hyparquet";
import type pg from "pg";
import { CHECKSUM_ALGORITHM, rowHash } from "./checksum.ts";
import { classifyEntry, MANIFEST_FILE } from "./layout.ts";
import { type Manifest, readManifest } from "./manifest.ts";
import { fileSha256 } from "./part-writer.ts";
import { type ColdColumn, coldColumns, parquetSchema } from "./schema-map.ts";
import { beginSnapshot, readPartitionColumns, readPartitionDigest } from "./source.ts";

export type VerifyProblemCode =
  | "manifest_missing"
  | "manifest_invalid"
  | "file_missing"
  | "file_size"
  | "file_digest"
  | "file_unreadable"
  | "file_schema"
  | "file_rows"
  | "stray_file"
  | "rows"
  | "checksum"
  | "time_range"
  | "database";

export interface VerifyProblem {
  code: VerifyProblemCode;
  file?: string;
  detail: string;
}

/** What the files hold, as read back. */
export interface ReadBack {
  rows: bigint;
  checksum: bigint;
  minTimeMicros: bigint | null;
  maxTimeMicros: bigint | null;
}

export type VerifyVerdict =
  | { ok: true; manifest: Manifest; readBack: ReadBack }
  | { ok: false; manifest: Manifest | undefined; readBack: ReadBack | undefined; problems: VerifyProblem[] };

/** hyparquet's read options for exact values; restore-read.ts reads the files the same way. */
export const READ_OPTIONS = {
  compressors: { ZSTD: (input: Uint8Array) => new Uint8Array(zstdDecompressSync(input)) },
  // Exact values: bigint microseconds instead of Dates (which hold milliseconds).
  parsers: { timestampFromMicroseconds: (micros: bigint) => micros },
};

/**
 * Verification's read options: READ_OPTIONS, with text left as the UTF-8 bytes the file holds.
 * The checksum is over those bytes (checksum.ts), so decoding them into strings only to encode
 * them again would be wasted work, and a byte sequence that is not valid UTF-8 cannot be
 * replaced by U+FFFD on the way and hash like the text it stands for.
 */
const VERIFY_READ_OPTIONS = {
  ...READ_OPTIONS,
  parsers: { ...READ_OPTIONS.parsers, stringFromBytes: (bytes: Uint8Array) => bytes },
};

/** Checks the directory of one exported partition; `database` adds the comparison with the table. */
export async function verifyExport(dir: string, database?: pg.Pool): Promise<VerifyVerdict> {
  const read = readManifest(dir);
  if (read.state !== "ok") {
    const problem: VerifyProblem =
      read.state === "missing"
        ? { code: "manifest_missing", detail: `no ${MANIFEST_FILE} in ${dir}` }
        : { code: "manifest_invalid", detail: read.reason };
    return { ok: false, manifest: undefined, readBack: undefined, problems: [problem] };
  }
  const manifest = read.manifest;
  const problems: VerifyProblem[] = strayFiles(dir, manifest);
  if (manifest.checksum.algorithm !== CHECKSUM_ALGORITHM) {
    problems.push({ code: "manifest_invalid", detail: `unknown checksum ${manifest.checksum.algorithm}` });
    return { ok: false, manifest, readBack: undefined, problems };
  }
  // The database's scan runs while the files are read: two processes, two cores.
  const databaseProblems: VerifyProblem[] = [];
  const [readBack] = await Promise.all([
    readBackFiles(dir, manifest, problems),
    database ? compareWithDatabase(database, manifest, databaseProblems) : undefined,
  ]);
  compareWithManifest(manifest, readBack, problems);
  problems.push(...databaseProblems);
  return problems.length === 0
    ? { ok: true, manifest, readBack }
    : { ok: false, manifest, readBack, problems };
}

function strayFiles(dir: string, manifest: Manifest): VerifyProblem[] {
  const listed = new Set(manifest.files.map((f) => f.name));
  return readdirSync(dir)
    .filter((name) => name !== MANIFEST_FILE && !listed.has(name))
    .map((name) => ({
      code: "stray_file" as const,
      file: name,
      detail: `${classifyEntry(name)} file not listed in the manifest`,
    }));
}

async function readBackFiles(dir: string, manifest: Manifest, problems: VerifyProblem[]): Promise<ReadBack> {
  const total: ReadBack = { rows: 0n, checksum: 0n, minTimeMicros: null, maxTimeMicros: null };
  for (const f of manifest.files) {
    const file = path.join(dir, f.name);
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      problems.push({ code: "file_missing", file: f.name, detail: "listed in the manifest, not on disk" });
      continue;
    }
    if (size !== f.bytes)
      problems.push({ code: "file_size", file: f.name, detail: `${size} bytes, manifest ${f.bytes}` });
    const digest = await fileSha256(file);
    if (digest !== f.sha256) problems.push({ code: "file_digest", file: f.name, detail: `sha256 ${digest}` });
    try {
      const rows = await readOneFile(file, manifest, total, problems);
      if (rows !== f.rows)
        problems.push({ code: "file_rows", file: f.name, detail: `${rows} rows, manifest ${f.rows}` });
    } catch (error) {
      problems.push({ code: "file_unreadable", file: f.name, detail: (error as Error).message });
    }
  }
  return total;
}

/**
 * DECIMAL columns read as their raw two's-complement bytes: the reader's own conversion goes
 * through a double and would lose digits beyond 15-17.
 */
export function rawDecimals(metadata: FileMetaData): FileMetaData {
  const schema = metadata.schema.map((e) =>
    e.converted_type === "DECIMAL" ? { ...e, converted_type: undefined, logical_type: undefined } : e,
  );
  return { ...metadata, schema };
}

/** Reads one file a row group at a time into `total`; returns its row count. */
async function readOneFile(
  file: string,
  manifest: Manifest,
  total: ReadBack,
  problems: VerifyProblem[],
): Promise<number> {
  const buffer = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(buffer);
  const name = path.basename(file);
  if (!sameSchema(metadata, manifest)) {
    problems.push({ code: "file_schema", file: name, detail: "columns differ from the manifest's" });
    return Number(metadata.num_rows);
  }
  const columns = manifest.columns;
  const timeIndex = columns.findIndex((c) => c.name === manifest.time.column);
  const readable = rawDecimals(metadata);
  let start = 0;
  for (const group of metadata.row_groups) {
    const end = start + Number(group.num_rows);
    await parquetRead({
      file: buffer,
      metadata: readable,
      rowStart: start,
      rowEnd: end,
      ...VERIFY_READ_OPTIONS,
      onComplete: (rows: unknown[][]) => {
        for (const row of rows) {
          total.rows++;
          total.checksum += rowHash(columns, row);
          const t = row[timeIndex];
          if (typeof t === "bigint") {
            if (total.minTimeMicros === null || t < total.minTimeMicros) total.minTimeMicros = t;
            if (total.maxTimeMicros === null || t > total.maxTimeMicros) total.maxTimeMicros = t;
          }
        }
      },
    });
    start = end;
  }
  return start;
}

/** The file's leaf columns have the names and physical types the manifest's columns map to. */
function sameSchema(metadata: FileMetaData, manifest: Manifest): boolean {
  const expected = parquetSchema(manifest.columns).slice(1);
  const actual = metadata.schema.slice(1);
  return (
    actual.length === expected.length &&
    actual.every((e, i) => e.name === expected[i]!.name && e.type === expected[i]!.type)
  );
}

function compareWithManifest(manifest: Manifest, readBack: ReadBack, problems: VerifyProblem[]): void {
  if (readBack.rows.toString() !== manifest.rows) {
    problems.push({ code: "rows", detail: `files hold ${readBack.rows} rows, manifest ${manifest.rows}` });
  }
  if (readBack.checksum.toString() !== manifest.checksum.value) {
    problems.push({
      code: "checksum",
      detail: `files ${readBack.checksum}, manifest ${manifest.checksum.value}`,
    });
  }
  const min = readBack.minTimeMicros?.toString() ?? null;
  const max = readBack.maxTimeMicros?.toString() ?? null;
  if (min !== (manifest.time.min?.micros ?? null) || max !== (manifest.time.max?.micros ?? null)) {
    problems.push({
      code: "time_range",
      detail: `files ${min}..${max}, manifest ${manifest.time.min?.micros}..${manifest.time.max?.micros}`,
    });
  }
}

/**
 * The partition now, in one snapshot: its columns (names and types) and its digest over them must
 * be the manifest's. Columns added since the export would be lost with the partition, so a
 * difference there is a `database` problem too: a stale export never verifies.
 */
async function compareWithDatabase(
  pool: pg.Pool,
  manifest: Manifest,
  problems: VerifyProblem[],
): Promise<void> {
  const client = await pool.connect();
  try {
    await beginSnapshot(client);
    const columns = coldColumns(await readPartitionColumns(client, manifest.partition.relation));
    if (!sameColumns(columns, manifest.columns)) {
      await client.query("COMMIT");
      problems.push({
        code: "database",
        detail: `partition columns (${columnList(columns)}) differ from the manifest's (${columnList(manifest.columns)})`,
      });
      return;
    }
    const digest = await readPartitionDigest(
      client,
      manifest.partition.relation,
      columns,
      manifest.time.column,
    );
    await client.query("COMMIT");
    if (digest.rows.toString() !== manifest.rows || digest.checksum !== manifest.checksum.value) {
      problems.push({
        code: "database",
        detail: `partition holds ${digest.rows} rows (checksum ${digest.checksum}), manifest ${manifest.rows} (${manifest.checksum.value})`,
      });
    }
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    problems.push({ code: "database", detail: `could not read the partition: ${(error as Error).message}` });
  } finally {
    client.release();
  }
}

function columnList(columns: readonly ColdColumn[]): string {
  return columns.map((c) => `${c.name} ${c.pgType}`).join(", ");
}

/** Same names, types and numeric precision and scale, in the same order. */
export function sameColumns(a: readonly ColdColumn[], b: readonly ColdColumn[]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (c, i) =>
        c.name === b[i]!.name &&
        c.pgType === b[i]!.pgType &&
        c.kind === b[i]!.kind &&
        c.precision === b[i]!.precision &&
        c.scale === b[i]!.scale,
    )
  );
}
