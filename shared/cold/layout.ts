// Where an exported partition's files live under the cold-tier root, in the Hive layout that
// BigQuery's and DuckDB's Hive partitioning read:
//
//   <root>/<schema>.<table>/<key>_start=<partition start, ISO 8601 UTC>/part-00000.parquet
//                                                                       part-00001.parquet ...
//                                                                       _manifest.json (last)
//
// The directory key is `<key>_start`, not `<key>`: the files hold the key column itself, and a
// Hive partition key with a column's name replaces that column for the reader (DuckDB shows every
// row's `ts` as the partition start) or is refused (BigQuery). hivePartitionKey names it.
//
// Every directory name derived from a catalog name goes through encodePathPart, which keeps only
// [A-Za-z0-9_-] and percent-encodes every other UTF-8 byte (so ".", "/", "\", NUL and "%" itself
// never appear raw). A name therefore can neither climb out of the root ("..") nor add a level
// ("a/b"), and the encoding is injective, so two tables never share a directory. The literal "."
// between schema and table is unambiguous because dots inside names are encoded. Pure: no I/O.
import { createHash } from "node:crypto";
import path from "node:path";
import type { Relation } from "../db/relation.ts";

export const MANIFEST_FILE = "_manifest.json";

/**
 * Files being written carry this suffix (and a leading ".") until they are complete and synced:
 * `.part-00000.parquet.inprogress`. It never matches PART_FILE_PATTERN, so a file a killed export
 * left behind is never taken for part of the data; a leading "." hides it from Hive-style readers
 * that skip hidden files; and the name does not end in ".parquet", so a wildcard such as
 * BigQuery's `.../*.parquet` (one wildcard, no exclusions) does not read it either. On a Cloud
 * Storage mount a rename is a copy then a delete, so a kill between the two leaves both names.
 */
export const IN_PROGRESS_SUFFIX = ".inprogress";

const PART_FILE_PATTERN = /^part-(\d{5})\.parquet$/;

/**
 * Longest encoded part kept whole. Linux allows 255 bytes per path component; an encoded
 * 63-byte identifier can reach 189, and a component holds two of them (schema.table).
 */
const MAX_ENCODED_PART = 120;

/** A name as one path component: safe characters kept, every other UTF-8 byte as %XX. */
export function encodePathPart(name: string): string {
  if (name.length === 0) throw new Error("an empty name cannot name a cold-tier directory");
  let out = "";
  for (const byte of Buffer.from(name, "utf8")) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  if (out.length <= MAX_ENCODED_PART) return out;
  // Too long to be a path component: a prefix for people, and a digest of the whole name so that
  // two long names sharing the prefix still get different directories.
  const digest = createHash("sha256").update(name, "utf8").digest("hex").slice(0, 16);
  return `${out.slice(0, MAX_ENCODED_PART - 18).replace(/%[0-9A-F]?$/, "")}~${digest}`;
}

/** `<schema>.<table>`, each part encoded. */
export function tableDirectoryName(table: Relation): string {
  return `${encodePathPart(table.schema)}.${encodePathPart(table.name)}`;
}

/**
 * The partition start as it appears in the directory name: ISO 8601 in UTC with a `Z`, seconds
 * always, microseconds only when not zero (partition bounds are normally whole units), e.g.
 * `2026-01-01T00:00:00Z`. From epoch microseconds, because a JavaScript Date holds milliseconds.
 */
export function isoFromEpochMicros(micros: bigint): string {
  const millis = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  const subMillis = Number(micros - millis * 1000n);
  const date = new Date(Number(millis));
  if (Number.isNaN(date.getTime())) throw new Error(`timestamp out of range: ${micros} µs since 1970`);
  const whole = date.toISOString().slice(0, 19);
  const fraction = date.getUTCMilliseconds() * 1000 + subMillis;
  return fraction === 0 ? `${whole}Z` : `${whole}.${String(fraction).padStart(6, "0")}Z`;
}

export interface PartitionLocation {
  table: Relation;
  /** The partition key column, as the catalog spells it. */
  keyColumn: string;
  /** The partition's lower bound, microseconds since 1970-01-01 UTC. */
  startMicros: bigint;
}

/** The Hive partition key of the directories: the partition key column's name + "_start". */
export function hivePartitionKey(keyColumn: string): string {
  return `${keyColumn}_start`;
}

/** The partition's directory, always inside `root`. */
export function partitionDirectory(root: string, where: PartitionLocation): string {
  const base = path.resolve(root);
  const dir = path.join(
    base,
    tableDirectoryName(where.table),
    `${encodePathPart(hivePartitionKey(where.keyColumn))}=${isoFromEpochMicros(where.startMicros)}`,
  );
  // Cannot happen with encoded parts; checked anyway because a path outside the root would be
  // written to and, on a re-export, cleared.
  if (path.relative(base, dir).split(path.sep)[0] === "..") throw new Error(`path escapes root: ${dir}`);
  return dir;
}

export function partFileName(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 99_999) throw new Error(`part index ${index}`);
  return `part-${String(index).padStart(5, "0")}.parquet`;
}

/** True for a finished part file's name (never for an in-progress one). */
export function isPartFileName(name: string): boolean {
  return PART_FILE_PATTERN.test(name);
}

/** The name a file is written under until it is complete. */
export function inProgressName(finalName: string): string {
  return `.${finalName}${IN_PROGRESS_SUFFIX}`;
}

/** What a directory entry is, for clearing and verifying a partition directory. */
export type EntryKind = "part" | "manifest" | "in_progress" | "other";

export function classifyEntry(name: string): EntryKind {
  if (isPartFileName(name)) return "part";
  if (name === MANIFEST_FILE) return "manifest";
  if (name.endsWith(IN_PROGRESS_SUFFIX)) return "in_progress";
  return "other";
}
