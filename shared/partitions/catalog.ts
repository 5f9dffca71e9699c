// Reads what PostgreSQL knows about a managed table: its partition key, its children with their
// real bounds (pg_inherits + pg_get_expr(relpartbound); a name is only a label), the DEFAULT
// partition and which intervals its rows fall into, row estimates and sizes. Read-only.
import { type Kysely, type RawBuilder, sql } from "kysely";
import type { QualifiedName } from "../config/identifiers.ts";
import "../db/pg-types.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationSql } from "../db/relation.ts";
import { type PartitionBound, parsePartitionBound } from "./bounds.ts";
import { inspectTable } from "./inspect-table.ts";
import { DEFAULT_GUARD_CONSTRAINT } from "./naming.ts";
import type { PartitionInterval } from "./time.ts";

export type KeyType = "timestamptz" | "timestamp";

export interface ChildPartition {
  readonly schema: string;
  readonly name: string;
  /** As read from pg_class (hand-made catalogs in tests may leave it out). */
  readonly oid?: number;
  readonly bound: PartitionBound;
  readonly boundText: string;
  readonly rowEstimate: number;
  readonly bytes: number;
  /** A DETACH ... CONCURRENTLY that was interrupted and awaits FINALIZE. */
  readonly detachPending: boolean;
  /**
   * A foreign key refers to another table from it, or to it from another (its own, or cloned from
   * its parent's): a DETACH or DROP of it locks that other table too.
   */
  readonly foreignKeys?: boolean;
  /** Itself partitioned (sub-partitioned): its rows are in its own partitions, none in it. */
  readonly partitioned?: boolean;
}

export interface DefaultBucket {
  /** Interval start (UTC) of a group of DEFAULT rows. */
  readonly start: Date;
  readonly rows: number;
}

export interface TableCatalog {
  readonly table: Relation;
  readonly oid: number;
  readonly keyColumn: string;
  readonly keyType: KeyType;
  readonly children: readonly ChildPartition[];
  readonly defaultPartition: ChildPartition | undefined;
  /** DEFAULT rows grouped by policy interval (empty when there is no DEFAULT or it is empty). */
  readonly defaultBuckets: readonly DefaultBucket[];
  /** Rows in DEFAULT whose key is NULL: no range partition can take them. */
  readonly defaultNullKeyRows: number;
  /** Insertable columns in order, for moving rows between relations. */
  readonly columns: readonly string[];
  /**
   * DEFAULT carries partition-manager's guard constraint (left by an earlier run); absent: it does
   * not, or it was not read (CatalogReadOptions.partitionsOnly).
   */
  readonly defaultGuard?: boolean;
}

export { inspectTable, type TableProblem } from "./inspect-table.ts";

interface ChildRow {
  oid: number;
  schema: string;
  name: string;
  bound: string;
  row_estimate: string;
  bytes: string;
  detach_pending: boolean;
  foreign_keys: boolean;
  partitioned: boolean;
}

const TRUNC_UNIT: Record<PartitionInterval, string> = {
  hourly: "hour",
  daily: "day",
  weekly: "week", // date_trunc('week') starts on ISO Monday
  monthly: "month",
  quarterly: "quarter",
  yearly: "year",
};

/** How long reading DEFAULT's rows may wait for its lock (a session may hold ACCESS EXCLUSIVE on it). */
export interface CatalogLockOptions {
  lockTimeoutMs: number;
  budgetMs: number;
}

export async function readCatalog<DB>(
  db: Kysely<DB>,
  table: QualifiedName,
  timeColumn: string,
  interval: PartitionInterval,
  lock: CatalogLockOptions = { lockTimeoutMs: 2_000, budgetMs: 30_000 },
): Promise<TableCatalog> {
  // Sizes (pg_total_relation_size) and DEFAULT's rows take ACCESS SHARE locks on the children: the
  // whole read runs under lock_timeout and is retried, so a session holding ACCESS EXCLUSIVE cannot
  // hang the job, and the read sees one consistent snapshot.
  const { result } = await withLockRetry(
    db,
    { ...lock, what: `read the catalog of ${displayRelation(table)}`, contended: table },
    (trx) => readCatalogIn(trx, table, timeColumn, interval),
  );
  return result;
}

/** What inspectTable found of a table fit to manage. */
export interface InspectedTable {
  readonly oid: number;
  readonly keyType: KeyType;
}

/** What a reader of the catalog already knows, or does not need. */
export interface CatalogReadOptions {
  /**
   * The table's oid and key type as inspectTable read them earlier in the run (when the policies
   * were checked), used while the name still means that oid. A key cannot change, but the table
   * may have been renamed away and another made under its name since (a rebuild and swap): then it
   * is inspected again, and the old one's children are never acted on.
   */
  readonly inspected?: InspectedTable;
  /**
   * Only the children and the DEFAULT partition: no columns, no guard, and no DEFAULT rows by
   * interval (a scan of DEFAULT); `columns` and `defaultBuckets` stay empty.
   */
  readonly partitionsOnly?: boolean;
}

/**
 * The sum of `expr` over the leaves under child `c` (aliased l), for a child that is itself
 * partitioned: PostgreSQL keeps no rows or storage for a partitioned table, only for its leaves, so
 * its own reltuples and size say 0 however much it holds.
 */
function leavesSum(expr: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`SELECT coalesce(sum(${expr}), 0) FROM pg_partition_tree(c.oid) t
               JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf`;
}

/** The catalog as read in `db`, a transaction under lock_timeout (see readCatalog). */
export async function readCatalogIn<DB>(
  db: Kysely<DB>,
  table: QualifiedName,
  timeColumn: string,
  interval: PartitionInterval,
  options: CatalogReadOptions = {},
): Promise<TableCatalog> {
  const cached = options.inspected;
  const { oid, keyType } =
    cached && (await oidOfName(db, table)) === cached.oid
      ? cached
      : await inspectOrThrow(db, table, timeColumn);
  const children = await sql<ChildRow>`
    SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name,
           pg_get_expr(c.relpartbound, c.oid) AS bound,
           CASE WHEN c.relkind = 'p' THEN (${leavesSum(sql`greatest(l.reltuples, 0)`)})
                ELSE greatest(c.reltuples, 0) END::bigint AS row_estimate,
           CASE WHEN c.relkind = 'p' THEN (${leavesSum(sql`pg_total_relation_size(l.oid)`)})
                ELSE pg_total_relation_size(c.oid) END AS bytes,
           i.inhdetachpending AS detach_pending, c.relkind = 'p' AS partitioned,
           EXISTS (SELECT 1 FROM pg_constraint k
                    WHERE k.contype = 'f' AND c.oid IN (k.conrelid, k.confrelid)) AS foreign_keys
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = ${oid}
     ORDER BY c.relname`.execute(db);
  const parsed: ChildPartition[] = children.rows.map((c) => ({
    oid: c.oid,
    schema: c.schema,
    name: c.name,
    bound: parsePartitionBound(c.bound),
    boundText: c.bound,
    rowEstimate: Number(c.row_estimate),
    bytes: Number(c.bytes),
    detachPending: c.detach_pending,
    foreignKeys: c.foreign_keys,
    ...(c.partitioned ? { partitioned: true } : {}),
  }));
  const defaultPartition = parsed.find((c) => c.bound.kind === "default");
  const partitions = {
    table: { schema: table.schema, name: table.name, oid },
    oid,
    keyColumn: timeColumn,
    keyType,
    children: parsed.filter((c) => c.bound.kind !== "default"),
    defaultPartition,
  };
  if (options.partitionsOnly)
    return { ...partitions, defaultBuckets: [], defaultNullKeyRows: 0, columns: [] };
  const columns = await sql<{ name: string }>`
    SELECT attname::text AS name FROM pg_attribute
     WHERE attrelid = ${oid} AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
     ORDER BY attnum`.execute(db);
  const def = defaultPartition
    ? await readDefaultRows(db, defaultPartition, timeColumn, keyType, interval)
    : { defaultBuckets: [], defaultNullKeyRows: 0, defaultGuard: false };
  return { ...partitions, ...def, columns: columns.rows.map((c) => c.name) };
}

/** The oid the name means now (undefined: none). */
async function oidOfName<DB>(db: Kysely<DB>, table: QualifiedName): Promise<number | undefined> {
  const r = await sql<{ oid: number }>`
    SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname = ${table.name}`.execute(db);
  return r.rows[0]?.oid;
}

async function inspectOrThrow<DB>(db: Kysely<DB>, table: QualifiedName, timeColumn: string) {
  const inspected = await inspectTable(db, table, timeColumn);
  if (!inspected.ok) throw new Error(inspected.problem.message);
  return inspected;
}

/** DEFAULT's rows by interval, those with a NULL key, and whether it carries the guard. */
async function readDefaultRows<DB>(
  db: Kysely<DB>,
  def: ChildPartition,
  timeColumn: string,
  keyType: KeyType,
  interval: PartitionInterval,
): Promise<{ defaultBuckets: DefaultBucket[]; defaultNullKeyRows: number; defaultGuard: boolean }> {
  const guard = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_constraint
     WHERE conrelid = ${def.oid} AND conname = ${DEFAULT_GUARD_CONSTRAINT}`.execute(db);
  const defaultGuard = (guard.rows[0]?.n ?? 0) > 0;
  const rel = relationSql(def);
  const col = columnSql(timeColumn);
  // timestamptz is truncated in UTC; a timestamp column already is UTC by convention.
  const keyExpr = keyType === "timestamptz" ? sql`(${col} AT TIME ZONE 'UTC')` : col;
  const buckets = await sql<{ start: Date | null; rows: string }>`
    SELECT date_trunc(${TRUNC_UNIT[interval]}, ${keyExpr}) AS start, count(*) AS rows
      FROM ${rel} GROUP BY 1 ORDER BY 1`.execute(db);
  const defaultBuckets: DefaultBucket[] = [];
  let defaultNullKeyRows = 0;
  for (const b of buckets.rows) {
    if (b.start === null) defaultNullKeyRows += Number(b.rows);
    else defaultBuckets.push({ start: b.start, rows: Number(b.rows) });
  }
  return {
    defaultBuckets: defaultBuckets.filter((b) => Number.isFinite(b.start.getTime())),
    defaultNullKeyRows,
    defaultGuard,
  };
}
