// The table a restore loads: made, filled from the verified files a row group at a time, hashed by
// PostgreSQL with the export's own row hash, and dropped on any failure. In attach mode it is the
// partition-to-be itself (built LIKE the parent, as the partition library builds one, logged), which
// the library attaches in place once it matches the manifest; with --into it is renamed to the
// inspection table. Until then it has a staging name and comment: a restore that is killed leaves
// at most this table, which the next restore of the same partition recognises and replaces.
import { createHash } from "node:crypto";
import { CompiledQuery, type Kysely, sql } from "kysely";
import { quoteIdentifier, quoteRelation } from "../db/quote.ts";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { likeParent } from "../partitions/standalone.ts";
import type { Manifest } from "./manifest.ts";
import { readRowGroups } from "./restore-read.ts";
import { insertSql } from "./restore-values.ts";
import { clientOf, type PartitionDigest, readPartitionDigest } from "./source.ts";

/** Start of the comment on a staging table: what makes a leftover one ours to replace. */
export const STAGING_COMMENT = "telemetry-jobs restore: staging";

/** Rows per INSERT, and the most text one INSERT carries (big jsonb values fill it first). */
const BATCH_ROWS = 5_000;
const BATCH_CHARS = 16 * 1024 * 1024;

/** The staging table for a restore of the partition starting at the manifest's lower bound. */
export function stagingRelation(schema: string, manifest: Manifest): Relation {
  const key = `${manifest.table.schema}\0${manifest.table.name}\0${manifest.partition.from.micros}`;
  return { schema, name: `tj_restore_${createHash("sha256").update(key).digest("hex").slice(0, 16)}` };
}

export type RelationKind = "absent" | "staging" | "other";

/** Whether `rel` exists, and if so whether it is a restore's staging table. */
export async function relationKind(db: Kysely<DB>, rel: Relation): Promise<RelationKind> {
  const r = await sql<{ comment: string | null }>`
    SELECT obj_description(c.oid, 'pg_class') AS comment
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${rel.schema} AND c.relname = ${rel.name}`.execute(db);
  const row = r.rows[0];
  if (!row) return "absent";
  return row.comment?.startsWith(STAGING_COMMENT) && !(await isPartition(db, rel)) ? "staging" : "other";
}

async function isPartition(db: Kysely<DB>, rel: Relation): Promise<boolean> {
  const r = await sql<{ p: boolean }>`
    SELECT c.relispartition AS p FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${rel.schema} AND c.relname = ${rel.name}`.execute(db);
  return r.rows[0]?.p === true;
}

/** The staging table's shape: the parent's (attach), or the manifest's own columns (inspection). */
export type StagingShape = { like: Relation } | { columns: Manifest["columns"] };

/**
 * (Re)creates the staging table in one transaction, replacing a leftover of an earlier restore.
 * Attach mode builds it as the partition library builds a partition-to-be (columns, defaults,
 * constraints, indexes of the parent), so that ATTACH finds every index in place and builds none
 * while it holds the parent. It is logged: its rows become the partition's without another copy.
 */
export async function createStaging(
  db: Kysely<DB>,
  staging: Relation,
  shape: StagingShape,
  origin: string,
): Promise<void> {
  const definition =
    "like" in shape
      ? likeParent(shape.like)
      : sql.raw(`(${shape.columns.map((c) => `${quoteIdentifier(c.name)} ${c.pgType}`).join(", ")})`);
  await db.transaction().execute(async (trx) => {
    await sql`DROP TABLE IF EXISTS ${relationSql(staging)}`.execute(trx);
    await sql`CREATE TABLE ${relationSql(staging)} ${definition}`.execute(trx);
    await sql`COMMENT ON TABLE ${relationSql(staging)} IS ${sql.lit(`${STAGING_COMMENT} of ${origin}`)}`.execute(
      trx,
    );
  });
}

export async function dropStaging(db: Kysely<DB>, staging: Relation): Promise<void> {
  await sql`DROP TABLE IF EXISTS ${relationSql(staging)}`.execute(db);
}

/**
 * The manifest's columns the load writes, with their format_type in `rel`: all but the generated
 * ones, which compute their own values (the digest then checks that they equal the exported ones).
 * A column `rel` lacks throws, naming it.
 */
async function loadColumns(
  db: Kysely<DB>,
  rel: Relation,
  columns: Manifest["columns"],
): Promise<{ columns: Manifest["columns"]; types: string[] }> {
  const r = await sql<{ name: string; type: string; generated: boolean }>`
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type,
           a.attgenerated <> '' AS generated
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = ${relationOidSql(rel)} AND a.attnum > 0 AND NOT a.attisdropped`.execute(db);
  const byName = new Map(r.rows.map((row) => [row.name, row]));
  const written = columns.filter((c) => {
    const column = byName.get(c.name);
    if (column === undefined) throw new Error(`${displayRelation(rel)} has no column "${c.name}"`);
    return !column.generated;
  });
  return { columns: written, types: written.map((c) => byName.get(c.name)!.type) };
}

export interface LoadProgress {
  rows: number;
  file: string;
}

/** Streams the files' rows into `staging`; returns the number of rows inserted. */
export async function loadStaging(
  db: Kysely<DB>,
  staging: Relation,
  dir: string,
  manifest: Manifest,
  onRowGroup?: (p: LoadProgress) => void | Promise<void>,
): Promise<number> {
  const written = await loadColumns(db, staging, manifest.columns);
  const text = insertSql(quoteRelation(staging), written.columns, written.types);
  const keep = written.columns.map((c) => manifest.columns.indexOf(c));
  let loaded = 0;
  for await (const group of readRowGroups(dir, manifest)) {
    const values = keep.map((i) => group.columns[i]!);
    for (let start = 0; start < group.rows; ) {
      const end = batchEnd(values, start, group.rows);
      const params = values.map((column) => column.slice(start, end));
      await db.executeQuery(CompiledQuery.raw(text, params));
      loaded += end - start;
      start = end;
    }
    await onRowGroup?.({ rows: loaded, file: group.file });
  }
  return loaded;
}

/** End of the batch starting at `start`: BATCH_ROWS rows, fewer when their text is large. */
function batchEnd(columns: (string | null)[][], start: number, total: number): number {
  let chars = 0;
  let end = start;
  while (end < total && end - start < BATCH_ROWS && (end === start || chars < BATCH_CHARS)) {
    for (const values of columns) chars += values[end]?.length ?? 1;
    end++;
  }
  return end;
}

/**
 * The table's digest as the export computed the partition's (readPartitionDigest, over the
 * manifest's columns), read through this Kysely connection: readPartitionDigest sends one query
 * whose every output column is text, so the pool's type parsers play no part.
 */
export async function tableDigest(
  db: Kysely<DB>,
  rel: Relation,
  manifest: Manifest,
): Promise<PartitionDigest> {
  return await readPartitionDigest(clientOf(db), rel, manifest.columns, manifest.time.column);
}

/** How the digest differs from the manifest's; undefined when it matches. */
export function digestMismatch(digest: PartitionDigest, manifest: Manifest): string | undefined {
  const min = digest.minTimeMicros?.toString() ?? null;
  const max = digest.maxTimeMicros?.toString() ?? null;
  if (
    digest.rows.toString() === manifest.rows &&
    digest.checksum === manifest.checksum.value &&
    min === (manifest.time.min?.micros ?? null) &&
    max === (manifest.time.max?.micros ?? null)
  )
    return undefined;
  return (
    `loaded ${digest.rows} rows (checksum ${digest.checksum}, time ${min}..${max}), ` +
    `manifest ${manifest.rows} (checksum ${manifest.checksum.value}, time ${manifest.time.min?.micros ?? null}..${manifest.time.max?.micros ?? null})`
  );
}
