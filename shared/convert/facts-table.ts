// Reads the table itself for `migrate convert`: its kind and size, columns, constraints, indexes,
// and the time range of its rows. Read-only; cheap catalog queries plus min/max of the time
// column (an index scan when the column is indexed) and a count of rows at or beyond the boundary.
import { type Kysely, sql } from "kysely";
import "../db/pg-types.ts";
import { columnSql, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { boundLiteral } from "../partitions/bounds.ts";
import type { ColumnFacts, ConstraintFacts, IndexFacts, TableFacts } from "./facts.ts";
import { readChangeTriggers, readDependents, readGrants, readOwnedSequences } from "./facts-dependents.ts";

/** The facts of a table that does not exist. */
function absent(table: Relation): TableFacts {
  return {
    table,
    exists: false,
    relkind: "",
    isPartition: false,
    inheritance: false,
    persistence: "p",
    owner: "",
    comment: null,
    replicaIdentity: "d",
    rowSecurity: false,
    rowEstimate: 0,
    totalBytes: 0,
    columns: [],
    constraints: [],
    indexes: [],
    incomingForeignKeys: [],
    dependentViews: [],
    triggers: [],
    changeTriggers: [],
    rules: [],
    publications: [],
    ownedSequences: [],
    grants: [],
    minTime: null,
    maxTime: null,
    rowsAtOrAfterBoundary: 0,
  };
}

export async function readTableFacts(
  db: Kysely<DB>,
  table: Relation,
  timeColumn: string,
  boundary: Date | null,
): Promise<TableFacts> {
  const row = await readBase(db, table);
  if (!row) return absent(table);
  const oid = row.oid;
  const columns = await readColumns(db, oid);
  const constraints = await readConstraints(db, oid);
  const indexes = await readIndexes(db, oid);
  const dependents = await readDependents(db, oid);
  const changeTriggers = await readChangeTriggers(db, table);
  const ownedSequences = await readOwnedSequences(db, oid);
  const grants = await readGrants(db, oid);
  const timeCol = columns.find((c) => c.name === timeColumn);
  const range =
    timeCol && (row.relkind === "r" || row.relkind === "p")
      ? await readTimeRange(db, table, timeCol, boundary)
      : { minTime: null, maxTime: null, rowsAtOrAfterBoundary: 0 };
  return {
    ...absent(table),
    exists: true,
    relkind: row.relkind,
    isPartition: row.relispartition,
    inheritance: row.inheritance,
    persistence: row.relpersistence,
    owner: row.owner,
    comment: row.comment,
    replicaIdentity: row.relreplident,
    rowSecurity: row.relrowsecurity,
    rowEstimate: row.reltuples,
    totalBytes: row.bytes,
    columns,
    constraints,
    indexes,
    ...dependents,
    changeTriggers,
    ownedSequences,
    grants,
    ...range,
  };
}

async function readBase(db: Kysely<DB>, table: Relation) {
  const base = await sql<{
    oid: number;
    relkind: string;
    relispartition: boolean;
    inheritance: boolean;
    relpersistence: "p" | "u" | "t";
    owner: string;
    comment: string | null;
    relreplident: "d" | "n" | "f" | "i";
    relrowsecurity: boolean;
    reltuples: number;
    bytes: number;
  }>`
    SELECT c.oid::int AS oid, c.relkind::text AS relkind, c.relispartition,
           EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) AS inheritance,
           c.relpersistence::text AS relpersistence, pg_get_userbyid(c.relowner) AS owner,
           obj_description(c.oid, 'pg_class') AS comment, c.relreplident::text AS relreplident,
           c.relrowsecurity, c.reltuples::float8 AS reltuples,
           pg_total_relation_size(c.oid)::float8 AS bytes
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname = ${table.name}`.execute(db);
  return base.rows[0];
}

/**
 * The columns. An identity's sequence is found through its dependency on the column (what
 * pg_get_serial_sequence looks up, without handing it the table's name as text), and shown as
 * that function shows it: `schema.name`, each part quoted as quote_ident would.
 */
async function readColumns(db: Kysely<DB>, oid: number): Promise<ColumnFacts[]> {
  const r = await sql<ColumnFacts>`
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
           a.attidentity::text AS identity,
           CASE WHEN a.attidentity <> '' THEN
             (SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname)
                FROM pg_depend dep
                JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
                JOIN pg_namespace sn ON sn.oid = s.relnamespace
               WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
                 AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype = 'i'
               LIMIT 1)
           END AS "identitySequence",
           pg_get_expr(d.adbin, d.adrelid) AS "defaultExpr", a.attgenerated <> '' AS generated,
           a.attacl IS NOT NULL AS "hasColumnGrants"
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = ${oid} AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum`.execute(db);
  return r.rows;
}

async function readConstraints(db: Kysely<DB>, oid: number): Promise<ConstraintFacts[]> {
  const r = await sql<ConstraintFacts>`
    SELECT k.conname AS name, k.contype::text AS type,
           coalesce((SELECT array_agg(a.attname::text ORDER BY o.ord)
                       FROM unnest(k.conkey) WITH ORDINALITY AS o(attnum, ord)
                       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = o.attnum), '{}') AS columns,
           pg_get_constraintdef(k.oid) AS definition, k.convalidated AS validated, k.connoinherit AS "noInherit",
           CASE WHEN k.conindid <> 0 THEN (SELECT relname FROM pg_class WHERE oid = k.conindid) END AS "indexName"
      FROM pg_constraint k
     WHERE k.conrelid = ${oid} AND k.contype IN ('p', 'u', 'f', 'c', 'x', 't', 'n')
     ORDER BY k.conname`.execute(db);
  return r.rows;
}

async function readIndexes(db: Kysely<DB>, oid: number): Promise<IndexFacts[]> {
  const r = await sql<Omit<IndexFacts, "body"> & { tableRef: string }>`
    SELECT ic.relname AS name, x.indisunique AS unique, x.indisprimary AS primary,
           (SELECT conname FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid) AS "constraintName",
           (x.indisvalid AND x.indisready) AS valid,
           coalesce((SELECT array_agg(coalesce(a.attname::text, '(expression)') ORDER BY o.ord)
                       FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS o(attnum, ord)
                       LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = o.attnum
                      WHERE o.ord <= x.indnkeyatts), '{}') AS columns,
           pg_get_indexdef(x.indexrelid) AS definition, x.indrelid::regclass::text AS "tableRef"
      FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
     WHERE x.indrelid = ${oid}
     ORDER BY ic.relname`.execute(db);
  return r.rows.map(({ tableRef, ...i }) => ({ ...i, body: indexBody(i.definition, tableRef) }));
}

/**
 * " USING btree (device_id, ts) WHERE ..." from a pg_get_indexdef result: what follows
 * "ON <table>" (an index name may itself contain " USING ").
 */
function indexBody(definition: string, tableRef: string): string {
  const marker = ` ON ${tableRef} USING `;
  const on = definition.indexOf(marker);
  if (on >= 0) return definition.slice(on + marker.length - " USING ".length);
  const at = definition.indexOf(" USING ");
  return at < 0 ? definition : definition.slice(at);
}

/** min/max of the time column and, when the boundary is below the max, the rows at or after it. */
async function readTimeRange(
  db: Kysely<DB>,
  table: Relation,
  timeCol: ColumnFacts,
  boundary: Date | null,
): Promise<Pick<TableFacts, "minTime" | "maxTime" | "rowsAtOrAfterBoundary">> {
  const col = columnSql(timeCol.name);
  const t = relationSql(table);
  const range = await sql<{ lo: Date | null; hi: Date | null }>`
    SELECT (SELECT ${col} FROM ${t} WHERE ${col} IS NOT NULL ORDER BY ${col} LIMIT 1) AS lo,
           (SELECT ${col} FROM ${t} WHERE ${col} IS NOT NULL ORDER BY ${col} DESC LIMIT 1) AS hi`.execute(db);
  const minTime = range.rows[0]?.lo ?? null;
  const maxTime = range.rows[0]?.hi ?? null;
  if (!boundary || !maxTime || maxTime.getTime() < boundary.getTime())
    return { minTime, maxTime, rowsAtOrAfterBoundary: 0 };
  // The bound as text of the column's own type: a Date parameter would be sent in the process's
  // time zone, which a timestamp (without time zone) column would silently drop.
  const withZone = timeCol.type.startsWith("timestamp") && timeCol.type.includes("with time zone");
  const text = boundLiteral(boundary, withZone ? "timestamptz" : "timestamp");
  const literal = withZone ? sql`${text}::timestamptz` : sql`${text}::timestamp`;
  const n = await sql<{ n: number }>`
    SELECT count(*)::float8 AS n FROM ${t} WHERE ${col} >= ${literal}`.execute(db);
  return { minTime, maxTime, rowsAtOrAfterBoundary: n.rows[0]?.n ?? 0 };
}
