// What the catalog says about a table adoption adds insert tracking to (the ingest_xid column and
// its (ingest_xid, time) index): the table, its ingest_xid column, its partitions and every index of
// them. ingest-plan.ts turns these facts into the actions still missing.
import { type Kysely, sql } from "kysely";
import { type Relation, relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { INGEST_COLUMN, ingestIndexName } from "./ingest-plan.ts";

export interface IngestIndexFact {
  /** Index name; it lives in the schema of the table it indexes. */
  name: string;
  /** indisvalid and indisready: usable by queries (an interrupted concurrent build leaves false). */
  valid: boolean;
  /** relkind 'I': the index of a partitioned table. */
  partitioned: boolean;
  /** btree, no predicate or expressions, first two key columns (ingest_xid, time): serves rollups. */
  leading: boolean;
  /** Exactly what we would build, (ingest_xid, time), not unique: the only shape ATTACH accepts. */
  exact: boolean;
  /** Name of the partitioned index this one is attached to (same schema as the parent table). */
  attachedTo: string | null;
}

export interface IngestPartitionFact {
  relation: Relation;
  /** 'r' plain, 'p' partitioned (a second level), 'f' foreign, anything else as relkind. */
  relkind: string;
  isDefault: boolean;
  indexes: IngestIndexFact[];
  /** The name we would give this partition's index is used by a relation that is not its index. */
  childNameTaken: boolean;
  /** The partition's own default for ingest_xid (pg_get_expr); null without one or without the column. */
  columnDefault: string | null;
  /** Its partition bound as PostgreSQL prints it ("FOR VALUES FROM (...) TO (...)"), for messages. */
  bound: string | null;
}

/** A partition whose DETACH ... CONCURRENTLY was interrupted: leaving the table, so left out. */
export interface IngestDetachPendingFact {
  relation: Relation;
  /** It has an ingest_xid column (it had one before the detach began). */
  hasColumn: boolean;
}

export interface IngestFacts {
  table: Relation;
  timeColumn: string;
  /** relkind of the table; undefined when it does not exist. */
  relkind: string | undefined;
  timeColumnExists: boolean;
  /** The ingest_xid column, if any: its type (format_type) and default (pg_get_expr), if any. */
  column: { type: string; default: string | null } | null;
  /** Indexes of the table itself (for a partitioned table: the partitioned indexes). */
  indexes: IngestIndexFact[];
  /** The name we would give the table's index is used by a relation that is not its index. */
  indexNameTaken: boolean;
  /** Direct partitions, in a stable order; empty for a plain table. Not those being detached. */
  partitions: IngestPartitionFact[];
  /** Direct partitions with an interrupted DETACH ... CONCURRENTLY, in a stable order. */
  detachPending: IngestDetachPendingFact[];
}

interface IndexRow {
  table_oid: string;
  name: string;
  valid: boolean;
  partitioned: boolean;
  leading: boolean;
  exact: boolean;
  attached_to: string | null;
}

/**
 * What the catalog says about the table, its ingest_xid column, its partitions and their indexes.
 * Reads catalogs only: no lock on the table, so a session holding ACCESS EXCLUSIVE does not block it.
 * (pg_get_expr is given relation 0 so it does not open the table to name columns.)
 */
export async function readIngestFacts(
  db: Kysely<DB>,
  source: Relation,
  timeColumn: string,
): Promise<IngestFacts> {
  const ourName = ingestIndexName(source.name);
  const row = await readTable(db, source, timeColumn);
  if (!row?.oid || !row.relkind)
    return {
      table: source,
      timeColumn,
      relkind: undefined,
      timeColumnExists: false,
      column: null,
      indexes: [],
      indexNameTaken: false,
      partitions: [],
      detachPending: [],
    };
  const { parts, detachPending } = await readPartitions(db, row.oid);
  const byTable = await readIndexes(db, [row.oid, ...parts.map((p) => p.oid)], timeColumn);
  const partitions: IngestPartitionFact[] = [];
  for (const p of parts) {
    const relation = { schema: p.schema, name: p.name };
    const own = byTable.get(p.oid) ?? [];
    const childName = ingestIndexName(p.name);
    partitions.push({
      relation,
      relkind: p.relkind,
      isDefault: p.is_default,
      indexes: own,
      childNameTaken: !own.some((i) => i.name === childName) && (await nameUsed(db, p.schema, childName)),
      columnDefault: p.col_default,
      bound: p.bound,
    });
  }
  const own = byTable.get(row.oid) ?? [];
  return {
    table: source,
    timeColumn,
    relkind: row.relkind,
    timeColumnExists: row.time_exists,
    column: row.col_exists ? { type: row.col_type ?? "", default: row.col_default } : null,
    indexes: own,
    indexNameTaken: !own.some((i) => i.name === ourName) && (await nameUsed(db, source.schema, ourName)),
    partitions,
    detachPending,
  };
}

/** The table's oid and relkind, its time column, and its ingest_xid column with its default. */
async function readTable(db: Kysely<DB>, source: Relation, timeColumn: string) {
  const base = await sql<{
    oid: string | null;
    relkind: string | null;
    time_exists: boolean;
    col_type: string | null;
    col_default: string | null;
    col_exists: boolean;
  }>`
    WITH t AS (SELECT ${relationOidSql(source)} AS oid)
    SELECT t.oid::text AS oid, c.relkind::text AS relkind,
           EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = t.oid AND a.attname = ${timeColumn} AND a.attnum > 0 AND NOT a.attisdropped) AS time_exists,
           col.attnum IS NOT NULL AS col_exists,
           pg_catalog.format_type(col.atttypid, col.atttypmod) AS col_type,
           (SELECT pg_catalog.pg_get_expr(d.adbin, 0) FROM pg_catalog.pg_attrdef d
             WHERE d.adrelid = t.oid AND d.adnum = col.attnum) AS col_default
      FROM t
      LEFT JOIN pg_catalog.pg_class c ON c.oid = t.oid
      LEFT JOIN pg_catalog.pg_attribute col
             ON col.attrelid = t.oid AND col.attname = ${INGEST_COLUMN} AND col.attnum > 0 AND NOT col.attisdropped`.execute(
    db,
  );
  return base.rows[0];
}

/**
 * The table's direct partitions: each one's own ingest_xid default (a row inserted directly into
 * it takes that one), and whether a DETACH ... CONCURRENTLY of it was interrupted (such a partition
 * is left out, and listed apart).
 */
async function readPartitions(db: Kysely<DB>, tableOid: string) {
  const all = await sql<{
    oid: string;
    schema: string;
    name: string;
    relkind: string;
    is_default: boolean;
    detach_pending: boolean;
    has_column: boolean;
    col_default: string | null;
    bound: string | null;
  }>`
    SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
           COALESCE(pt.partdefid = c.oid, false) AS is_default, i.inhdetachpending AS detach_pending,
           col.attnum IS NOT NULL AS has_column,
           (SELECT pg_catalog.pg_get_expr(d.adbin, 0) FROM pg_catalog.pg_attrdef d
             WHERE d.adrelid = c.oid AND d.adnum = col.attnum) AS col_default,
           pg_catalog.pg_get_expr(c.relpartbound, 0) AS bound
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = i.inhparent
      LEFT JOIN pg_catalog.pg_attribute col
             ON col.attrelid = c.oid AND col.attname = ${INGEST_COLUMN} AND col.attnum > 0 AND NOT col.attisdropped
     WHERE i.inhparent = ${tableOid}::oid
     ORDER BY n.nspname, c.relname`.execute(db);
  const parts = all.rows.filter((p) => !p.detach_pending);
  const detachPending: IngestDetachPendingFact[] = all.rows
    .filter((p) => p.detach_pending)
    .map((p) => ({ relation: { schema: p.schema, name: p.name }, hasColumn: p.has_column }));
  return { parts, detachPending };
}

/**
 * Every index of the given tables, by table oid: usable for rollups (leading), exactly our shape
 * (exact; ATTACH demands identical definitions), and which partitioned index it is attached to.
 */
async function readIndexes(
  db: Kysely<DB>,
  oids: readonly string[],
  timeColumn: string,
): Promise<Map<string, IngestIndexFact[]>> {
  const indexes = await sql<IndexRow>`
    SELECT x.indrelid::text AS table_oid, ic.relname AS name,
           (x.indisvalid AND x.indisready) AS valid, ic.relkind = 'I' AS partitioned,
           lead.ok AS leading,
           (lead.ok AND x.indnatts = 2 AND NOT x.indisunique) AS exact,
           (SELECT p.relname FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class p ON p.oid = h.inhparent
             WHERE h.inhrelid = ic.oid) AS attached_to
      FROM pg_catalog.pg_index x
      JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam
      CROSS JOIN LATERAL (
        SELECT am.amname = 'btree' AND x.indpred IS NULL AND x.indexprs IS NULL AND x.indnkeyatts >= 2
               AND x.indkey[0] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = x.indrelid AND a.attname = ${INGEST_COLUMN} AND NOT a.attisdropped)
               AND x.indkey[1] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = x.indrelid AND a.attname = ${timeColumn} AND NOT a.attisdropped)
               AS ok) lead
     WHERE x.indrelid = ANY(${oids}::oid[])
     ORDER BY ic.relname`.execute(db);
  const byTable = new Map<string, IngestIndexFact[]>();
  for (const i of indexes.rows) {
    const list = byTable.get(i.table_oid) ?? [];
    list.push({
      name: i.name,
      valid: i.valid,
      partitioned: i.partitioned,
      leading: i.leading === true,
      exact: i.exact === true,
      attachedTo: i.attached_to,
    });
    byTable.set(i.table_oid, list);
  }
  return byTable;
}

async function nameUsed(db: Kysely<DB>, schema: string, name: string): Promise<boolean> {
  const r = await sql<{
    used: boolean;
  }>`SELECT ${relationOidSql({ schema, name })} IS NOT NULL AS used`.execute(db);
  return r.rows[0]?.used === true;
}
