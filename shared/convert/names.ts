import { createHash } from "node:crypto";

// Names of the objects `migrate convert` creates. They are fixed functions of the table's name, so
// a resumed run finds what a killed one built; every one fits PostgreSQL's 63-byte limit.

/** Our CHECK on the old table: proves every row is before the boundary, so ATTACH skips its scan. */
export const CONVERT_BOUND_CONSTRAINT = "telemetry_jobs_convert_bound";

/** The historical partition's comment starts with this (status and runbooks recognise it). */
export const HISTORY_COMMENT_PREFIX = "telemetry-jobs convert:";

export interface ConvertNames {
  /** The new partitioned parent, until the swap renames it to the table's name. */
  parent: string;
  /** The old table, once it is the historical partition. */
  history: string;
  /** Unique index (old key columns + time column), built concurrently; becomes the history's key. */
  newKeyIndex: string;
  /** Unique index on the old key columns, built concurrently: revert makes it the primary key again. */
  oldKeyIndex: string;
  /** (ingest_xid, time) index for rollup-hourly, when the table lacks one. */
  ingestIndex: string;
}

export function convertNames(table: string): ConvertNames {
  return {
    parent: derivedName(table, "_partitioned"),
    history: derivedName(table, "_history"),
    newKeyIndex: derivedName(table, "_convert_key"),
    oldKeyIndex: derivedName(table, "_convert_oldkey"),
    ingestIndex: derivedName(table, "_ingest_xid_idx"),
  };
}

/** Name an index of the new parent carries before the swap. */
export function temporaryIndexName(original: string): string {
  return derivedName(original, "_cnv");
}

/** Name the old table's index carries once the table is the historical partition. */
export function historyIndexName(original: string): string {
  return derivedName(original, "_hist");
}

/**
 * base + suffix within 63 bytes. When base must be cut, a short hash of the whole base goes in
 * too, so two long names that share a prefix still get different derived names.
 */
export function derivedName(base: string, suffix: string): string {
  if (Buffer.byteLength(base) + Buffer.byteLength(suffix) <= 63) return `${base}${suffix}`;
  const tag = `_${createHash("md5").update(base).digest("hex").slice(0, 6)}`;
  const room = 63 - Buffer.byteLength(suffix) - tag.length;
  let cut = base;
  while (Buffer.byteLength(cut) > room) cut = cut.slice(0, -1);
  return `${cut}${tag}${suffix}`;
}
