// Exports one partition to Parquet under the cold-tier root (layout.ts), then writes its manifest.
//
// Order, and what a kill at each point leaves (the next export of the partition clears it all):
// 1. create the partition directory below the root, which must exist and is never created
//    (export-root.ts), and clear it of our own files, manifest first: from then on the directory
//    is "not exported" (no manifest) until step 4 completes;
// 2. one REPEATABLE READ, READ ONLY transaction: the columns, then one scan through a cursor that
//    yields each row and its hash computed by PostgreSQL (checksum.ts), so the row count, checksum
//    and time range are the snapshot's; the rows go into part files (each written under an
//    in-progress name, fsynced, renamed); a kill leaves in-progress files and finished parts
//    without a manifest;
// 3. fsync the directory, so the renames are durable before the manifest names the files;
// 4. the manifest, atomically. Only a manifest makes the export count, and only a verified
//    manifest (verify.ts) may allow the partition to be removed.
import { readdirSync, rmSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import type { Relation } from "../db/relation.ts";
import { CHECKSUM_ALGORITHM } from "./checksum.ts";
import { makeDirectoryBelowRoot } from "./export-root.ts";
import { classifyEntry, hivePartitionKey, isoFromEpochMicros, partitionDirectory } from "./layout.ts";
import { fsyncDirectory, MANIFEST_FORMAT, type Manifest, writeManifest } from "./manifest.ts";
import { PartWriter, type RowGroupLimits, type WrittenPart } from "./part-writer.ts";
import { type ColdColumn, coldColumns } from "./schema-map.ts";
import {
  beginSnapshot,
  declareRowCursor,
  fetchRows,
  type PartitionDigest,
  readPartitionColumns,
} from "./source.ts";

// Kept here too: retention asks the exporter whether its root can take exports.
export { exportRootProblem } from "./export-root.ts";

export interface PartitionToExport {
  /** The partitioned table (names the directory). */
  table: Relation;
  /** The child partition whose rows are exported. */
  partition: Relation;
  keyColumn: string;
  /** The column whose min/max the manifest records (normally the partition key). */
  timeColumn: string;
  from: Date;
  to: Date;
}

export interface ExportOptions {
  /** An existing directory (export-root.ts): only the levels below it are created. */
  root: string;
  productVersion: string;
  rowGroup?: Partial<RowGroupLimits>;
  /** Rows per part file before the next file starts. */
  rowsPerFile?: number;
  /** Rows per FETCH from the cursor. */
  fetchRows?: number;
  zstdLevel?: number;
  /** Progress, for logs and for tests that stop the export at a chosen point. */
  onEvent?: (event: ExportEvent) => void | Promise<void>;
}

export type ExportEvent =
  | { kind: "row_group"; file: string; rows: number }
  | { kind: "part_file"; file: string; rows: number }
  | { kind: "before_manifest"; dir: string };

export interface ExportResult {
  dir: string;
  manifest: Manifest;
  /** The most rows any part writer held in memory at once (never more than one row group). */
  maxBufferedRows: number;
}

/**
 * Row groups of 122,880 rows or ~48 MiB of values, whichever comes first: BigQuery reads Parquet
 * best with row groups of at least 16 MiB, and one group is what the export holds in memory.
 */
export const DEFAULT_ROW_GROUP: RowGroupLimits = { rows: 122_880, bytes: 48 * 1024 * 1024 };
export const DEFAULT_ROWS_PER_FILE = 10_000_000;
const DEFAULT_FETCH_ROWS = 10_000;
const DEFAULT_ZSTD_LEVEL = 3;
/** The writer library, named in each file's created_by and in the manifest. */
export const WRITER_NAME = "hyparquet-writer 0.17.0";

/** Removes what an earlier, possibly killed, export left: manifest first, then parts and temps. */
export function clearPartitionDirectory(dir: string): void {
  const entries = readdirSync(dir);
  const ours = entries.filter((name) => classifyEntry(name) !== "other");
  ours.sort((a, b) => Number(classifyEntry(b) === "manifest") - Number(classifyEntry(a) === "manifest"));
  for (const name of ours) {
    rmSync(path.join(dir, name), { force: true });
    if (classifyEntry(name) === "manifest") fsyncDirectory(dir);
  }
  fsyncDirectory(dir);
}

/** A Date as epoch microseconds: how manifests and directory names record an instant. */
export function microsOf(date: Date): bigint {
  return BigInt(date.getTime()) * 1000n;
}

function instantOf(micros: bigint): { micros: string; iso: string } {
  return { micros: micros.toString(), iso: isoFromEpochMicros(micros) };
}

/** Exports `p` under options.root and writes its manifest; see the file comment for the order. */
export async function exportPartition(
  pool: pg.Pool,
  p: PartitionToExport,
  options: ExportOptions,
): Promise<ExportResult> {
  const dir = partitionDirectory(options.root, {
    table: p.table,
    keyColumn: p.keyColumn,
    startMicros: microsOf(p.from),
  });
  makeDirectoryBelowRoot(options.root, dir);
  clearPartitionDirectory(dir);
  const client = await pool.connect();
  let written: SnapshotExport;
  try {
    await beginSnapshot(client);
    written = await exportInSnapshot(client, p, dir, options);
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
  fsyncDirectory(dir);
  const manifest = buildManifest(p, options, written);
  await options.onEvent?.({ kind: "before_manifest", dir });
  writeManifest(dir, manifest);
  return { dir, manifest, maxBufferedRows: written.maxBufferedRows };
}

interface SnapshotExport {
  columns: ColdColumn[];
  digest: RunningDigest;
  files: WrittenPart[];
  maxBufferedRows: number;
}

async function exportInSnapshot(
  client: pg.ClientBase,
  p: PartitionToExport,
  dir: string,
  options: ExportOptions,
): Promise<SnapshotExport> {
  const columns = coldColumns(await readPartitionColumns(client, p.partition));
  const hiveKey = hivePartitionKey(p.keyColumn);
  if (columns.some((c) => c.name === hiveKey)) {
    throw new Error(
      `column "${hiveKey}" has the name of the cold tier's Hive partition key; rename it to export`,
    );
  }
  const time = columns.find((c) => c.name === p.timeColumn);
  if (time?.kind !== "timestamptz" && time?.kind !== "timestamp") {
    throw new Error(`time column "${p.timeColumn}" is not a timestamp column of the partition`);
  }
  await declareRowCursor(client, p.partition, columns);
  const digest = emptyDigest();
  const timeIndex = columns.indexOf(time);
  const limits = { ...DEFAULT_ROW_GROUP, ...options.rowGroup };
  const rowsPerFile = options.rowsPerFile ?? DEFAULT_ROWS_PER_FILE;
  const files: WrittenPart[] = [];
  // Writers report row groups synchronously; the events are delivered between fetches.
  const events: ExportEvent[] = [];
  let maxBufferedRows = 0;
  let writer: PartWriter | undefined;
  const finishWriter = async (w: PartWriter) => {
    maxBufferedRows = Math.max(maxBufferedRows, w.maxBufferedRows);
    const part = await w.finish();
    files.push(part);
    for (const event of events.splice(0)) await options.onEvent?.(event);
    await options.onEvent?.({ kind: "part_file", file: part.name, rows: part.rows });
  };
  const fetchSize = options.fetchRows ?? DEFAULT_FETCH_ROWS;
  // The next FETCH is sent before this batch is written, so PostgreSQL produces rows while this
  // process encodes and compresses: at most two batches are held at once.
  const prefetch = () => {
    const promise = fetchRows(client, fetchSize);
    // Awaited below; this only keeps a failure while a batch is being written from going unhandled.
    promise.catch(() => {});
    return promise;
  };
  let next = prefetch();
  for (;;) {
    const batch = await next;
    if (batch.length === 0) break;
    next = prefetch();
    for (const row of batch) {
      addToDigest(digest, row, columns.length, timeIndex);
      writer ??= newPartWriter(dir, files.length, columns, limits, options, events);
      writer.add(row);
      if (writer.rows >= rowsPerFile) {
        await finishWriter(writer);
        writer = undefined;
      }
    }
    for (const event of events.splice(0)) await options.onEvent?.(event);
  }
  if (writer) await finishWriter(writer);
  return { columns, digest, files, maxBufferedRows };
}

/** The digest as the rows stream by: PartitionDigest with the checksum still a bigint. */
interface RunningDigest extends Omit<PartitionDigest, "checksum"> {
  checksum: bigint;
}

function emptyDigest(): RunningDigest {
  return { rows: 0n, checksum: 0n, minTimeMicros: null, maxTimeMicros: null };
}

/**
 * Counts one fetched row into the partition's digest: the row hash PostgreSQL computed (the
 * cursor's extra last column) and the time column's microseconds.
 */
function addToDigest(
  digest: RunningDigest,
  row: readonly (string | null)[],
  hashIndex: number,
  timeIndex: number,
) {
  digest.rows++;
  digest.checksum += BigInt(row[hashIndex]!);
  const time = row[timeIndex];
  if (time === null || time === undefined) return;
  const t = BigInt(time);
  if (digest.minTimeMicros === null || t < digest.minTimeMicros) digest.minTimeMicros = t;
  if (digest.maxTimeMicros === null || t > digest.maxTimeMicros) digest.maxTimeMicros = t;
}

function newPartWriter(
  dir: string,
  index: number,
  columns: ColdColumn[],
  limits: RowGroupLimits,
  options: ExportOptions,
  events: ExportEvent[],
): PartWriter {
  const w: PartWriter = new PartWriter({
    dir,
    index,
    columns,
    limits,
    zstdLevel: options.zstdLevel ?? DEFAULT_ZSTD_LEVEL,
    createdBy: `telemetry-jobs ${options.productVersion} (${WRITER_NAME})`,
    onRowGroup: (rows) => events.push({ kind: "row_group", file: w.name, rows }),
  });
  return w;
}

function buildManifest(p: PartitionToExport, options: ExportOptions, s: SnapshotExport): Manifest {
  const { digest } = s;
  return {
    format: MANIFEST_FORMAT,
    product: { name: "telemetry-jobs", version: options.productVersion },
    writer: WRITER_NAME,
    table: { schema: p.table.schema, name: p.table.name },
    partition: {
      relation: { schema: p.partition.schema, name: p.partition.name },
      keyColumn: p.keyColumn,
      from: instantOf(microsOf(p.from)),
      to: instantOf(microsOf(p.to)),
    },
    rows: digest.rows.toString(),
    time: {
      column: p.timeColumn,
      min: digest.minTimeMicros === null ? null : instantOf(digest.minTimeMicros),
      max: digest.maxTimeMicros === null ? null : instantOf(digest.maxTimeMicros),
    },
    checksum: { algorithm: CHECKSUM_ALGORITHM, value: digest.checksum.toString() },
    columns: s.columns.map((c) => ({ ...c })),
    files: s.files,
    exportedAt: new Date().toISOString(),
  };
}
