// What the export reads from PostgreSQL, all on one connection inside the one REPEATABLE READ
// transaction that export.ts opens, so the columns, the row count, the checksum and the rows
// streamed into the files all come from the same snapshot.
import { CompiledQuery, type Kysely } from "kysely";
import type pg from "pg";
import { quoteIdentifier, quoteRelation } from "../db/quote.ts";
import type { Relation } from "../db/relation.ts";
import { canonicalTextSql, epochMicrosSql, rowHashOverSql, rowHashSql } from "./checksum.ts";
import type { CatalogColumn, ColdColumn } from "./schema-map.ts";

/** Every value arrives as PostgreSQL's text: the export converts exactly, never via pg's parsers. */
export const RAW_TEXT_TYPES = { getTypeParser: () => (value: string) => value };

export const EXPORT_CURSOR = "cold_export_rows";

/**
 * Opens the export's transaction. READ ONLY because it must never change the partition it copies;
 * extra_float_digits = 3 so float text round-trips exactly even where a role or database sets a
 * lower value (3 selects the shortest exact output).
 */
export async function beginSnapshot(client: pg.ClientBase): Promise<void> {
  await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  await client.query("SET LOCAL extra_float_digits = 3");
}

/** The partition's columns in table order, as the catalog describes them. */
export async function readPartitionColumns(client: pg.ClientBase, child: Relation): Promise<CatalogColumn[]> {
  // numeric's typmod packs precision and scale as ((p << 16) | s) + 4; since PostgreSQL 15 the
  // scale is an 11-bit signed field (negative scales), which the xor/subtract decodes.
  const result = await client.query<{
    name: string;
    typname: string;
    formatted: string;
    precision: number | null;
    scale: number | null;
  }>(
    `SELECT a.attname AS name, t.typname, format_type(a.atttypid, a.atttypmod) AS formatted,
            CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4
                 THEN ((a.atttypmod - 4) >> 16) & 65535 END AS precision,
            CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4
                 THEN (((a.atttypmod - 4) & 2047) # 1024) - 1024 END AS scale
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [child.schema, child.name],
  );
  if (result.rows.length === 0) throw new Error(`partition ${quoteRelation(child)} not found`);
  return result.rows.map((r) => ({
    name: r.name,
    typname: r.typname,
    formatted: r.formatted,
    numericPrecision: r.precision,
    numericScale: r.scale,
  }));
}

export interface PartitionDigest {
  rows: bigint;
  /** The checksum (see checksum.ts) as decimal text. */
  checksum: string;
  /** Microseconds since 1970 of the earliest and latest time value; null when there are none. */
  minTimeMicros: bigint | null;
  maxTimeMicros: bigint | null;
}

/** Row count, checksum and time range of the partition, in the caller's snapshot. */
export async function readPartitionDigest(
  client: pg.ClientBase,
  child: Relation,
  columns: readonly ColdColumn[],
  timeColumn: string,
): Promise<PartitionDigest> {
  const time = epochMicrosSql(quoteIdentifier(timeColumn));
  const result = await client.query<{
    rows: string;
    checksum: string;
    min: string | null;
    max: string | null;
  }>({
    text: `SELECT count(*)::text AS rows, coalesce(sum(h), 0)::text AS checksum,
                  min(t)::text AS min, max(t)::text AS max
             FROM (SELECT ${rowHashSql(columns)} AS h, ${time} AS t FROM ONLY ${quoteRelation(child)}) AS r`,
    types: RAW_TEXT_TYPES,
  });
  const row = result.rows[0]!;
  return {
    rows: BigInt(row.rows),
    checksum: row.checksum,
    minTimeMicros: row.min === null ? null : BigInt(row.min),
    maxTimeMicros: row.max === null ? null : BigInt(row.max),
  };
}

/**
 * The cursor's query: the columns in table order, then the row's hash (rowHashOverSql), so one
 * scan yields both the rows and the database's own checksum of them (no ORDER BY: the checksum
 * ignores order). Each column's canonical text is built once, in a subquery that OFFSET 0 keeps
 * from being merged into the outer query (merging would copy every expression into both the
 * output and the hash); that text is also the value the export reads, timestamps as int8
 * microseconds. Booleans (whose output is t/f, their canonical text true/false) and floats
 * (hashed in binary) pass through as themselves.
 */
export function rowCursorQuery(child: Relation, columns: readonly ColdColumn[]): string {
  const inputs = columns.map((c, i) => {
    const column = quoteIdentifier(c.name);
    const text = c.kind === "boolean" ? undefined : canonicalTextSql(column, c.kind);
    return { kind: c.kind, alias: `c${i}`, select: text ?? column, rendered: text !== undefined };
  });
  const inner = inputs.map((x) => `${x.select} AS ${x.alias}`).join(", ");
  const hash = rowHashOverSql(inputs.map((x) => ({ kind: x.kind, value: x.alias, rendered: x.rendered })));
  const outer = [...inputs.map((x) => x.alias), hash].join(", ");
  return `SELECT ${outer} FROM (SELECT ${inner} FROM ONLY ${quoteRelation(child)} OFFSET 0) AS r`;
}

/** Declares the cursor the rows are fetched through (rowCursorQuery). */
export async function declareRowCursor(
  client: pg.ClientBase,
  child: Relation,
  columns: readonly ColdColumn[],
): Promise<void> {
  await client.query(`DECLARE ${EXPORT_CURSOR} NO SCROLL CURSOR FOR ${rowCursorQuery(child, columns)}`);
}

/** The next `count` rows, each the column values as text (null for NULL) then the row hash; empty at the end. */
export async function fetchRows(client: pg.ClientBase, count: number): Promise<(string | null)[][]> {
  const result = await client.query<(string | null)[]>({
    text: `FETCH FORWARD ${Math.trunc(count)} FROM ${EXPORT_CURSOR}`,
    rowMode: "array",
    types: RAW_TEXT_TYPES,
  });
  return result.rows;
}

/**
 * A Kysely connection (or transaction) as the pg client these readers take, so their statements
 * run on its connection, under its locks. Their results are read as text (every output column of
 * the digest is cast), so the pool's type parsers play no part.
 */
export function clientOf<DB>(db: Kysely<DB>): pg.ClientBase {
  const query = async (text: string | { text: string }, values?: readonly unknown[]) => {
    const statement = typeof text === "string" ? text : text.text;
    return await db.executeQuery(CompiledQuery.raw(statement, [...(values ?? [])]));
  };
  return { query } as unknown as pg.ClientBase;
}
