// Reads what PostgreSQL knows about a managed table: its partition key, its children with their
// real bounds (pg_inherits + pg_get_expr(relpartbound); a name is only a label), the DEFAULT
// partition and which intervals its rows fall into, row estimates and sizes. Read-only.
import { type Kysely, sql } from "kysely";
import type { QualifiedName } from "../config/identifiers.ts";
import "../db/pg-types.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationSql } from "../db/relation.ts";
import { type PartitionBound, parsePartitionBound } from "./bounds.ts";
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
  /** DEFAULT carries partition-manager's guard constraint (left by an earlier run); absent: it does not. */
  readonly defaultGuard?: boolean;
}

/** Why a table cannot be managed as configured; the message names the fix. */
export interface TableProblem {
  /** The policy field at fault, as a path below tables[i] (e.g. "timeColumn", "rollup.target"). */
  readonly field: string;
  readonly message: string;
}

interface TableRow {
  oid: number;
  relkind: string;
  strategy: string | null;
  key_columns: string[] | null;
  key_type: string | null;
}

export async function inspectTable<DB>(
  db: Kysely<DB>,
  table: QualifiedName,
  timeColumn: string,
): Promise<{ ok: true; oid: number; keyType: KeyType } | { ok: false; problem: TableProblem }> {
  const r = await sql<TableRow>`
    SELECT c.oid, c.relkind::text AS relkind, pt.partstrat::text AS strategy,
           (SELECT array_agg(a.attname::text ORDER BY k.ord)
              FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key_columns,
           (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attname = ${timeColumn} AND NOT a.attisdropped) AS key_type
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
     WHERE n.nspname = ${table.schema} AND c.relname = ${table.name}`.execute(db);
  const row = r.rows[0];
  const name = displayRelation(table);
  if (!row)
    return {
      ok: false,
      problem: {
        field: "table",
        message: `${name} does not exist (check the name, or run the migration that creates it)`,
      },
    };
  if (row.relkind !== "p") {
    return {
      ok: false,
      problem: {
        field: "table",
        message: `${name} is not a partitioned table; partition-manager manages RANGE-partitioned tables (see \`telemetry-jobs migrate convert\`)`,
      },
    };
  }
  if (row.strategy !== "r")
    return { ok: false, problem: { field: "table", message: `${name} is not partitioned BY RANGE` } };
  if (row.key_type === null) {
    return {
      ok: false,
      problem: { field: "timeColumn", message: `column "${timeColumn}" does not exist in ${name}` },
    };
  }
  if (row.key_type !== "timestamp with time zone" && row.key_type !== "timestamp without time zone") {
    return {
      ok: false,
      problem: {
        field: "timeColumn",
        message: `column "${timeColumn}" of ${name} is ${row.key_type}, not timestamptz or timestamp`,
      },
    };
  }
  if (row.key_columns?.length !== 1 || row.key_columns[0] !== timeColumn) {
    return {
      ok: false,
      problem: {
        field: "timeColumn",
        message: `${name} is partitioned on (${(row.key_columns ?? []).join(", ")}), not on "${timeColumn}"`,
      },
    };
  }
  return {
    ok: true,
    oid: row.oid,
    keyType: row.key_type === "timestamp with time zone" ? "timestamptz" : "timestamp",
  };
}

interface ChildRow {
  oid: number;
  schema: string;
  name: string;
  bound: string;
  row_estimate: string;
  bytes: string;
  detach_pending: boolean;
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

async function readCatalogIn<DB>(
  db: Kysely<DB>,
  table: QualifiedName,
  timeColumn: string,
  interval: PartitionInterval,
): Promise<TableCatalog> {
  const inspected = await inspectTable(db, table, timeColumn);
  if (!inspected.ok) throw new Error(inspected.problem.message);
  const { oid, keyType } = inspected;
  const children = await sql<ChildRow>`
    SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name,
           pg_get_expr(c.relpartbound, c.oid) AS bound,
           greatest(c.reltuples, 0)::bigint AS row_estimate,
           pg_total_relation_size(c.oid) AS bytes,
           i.inhdetachpending AS detach_pending
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
  }));
  const defaultPartition = parsed.find((c) => c.bound.kind === "default");
  const columns = await sql<{ name: string }>`
    SELECT attname::text AS name FROM pg_attribute
     WHERE attrelid = ${oid} AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
     ORDER BY attnum`.execute(db);

  let defaultBuckets: DefaultBucket[] = [];
  let defaultNullKeyRows = 0;
  let defaultGuard = false;
  if (defaultPartition) {
    const guard = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_constraint
       WHERE conrelid = ${defaultPartition.oid} AND conname = ${DEFAULT_GUARD_CONSTRAINT}`.execute(db);
    defaultGuard = (guard.rows[0]?.n ?? 0) > 0;
    const def = defaultPartition;
    const rel = relationSql(def);
    const col = columnSql(timeColumn);
    // timestamptz is truncated in UTC; a timestamp column already is UTC by convention.
    const keyExpr = keyType === "timestamptz" ? sql`(${col} AT TIME ZONE 'UTC')` : col;
    const buckets = await sql<{ start: Date | null; rows: string }>`
      SELECT date_trunc(${TRUNC_UNIT[interval]}, ${keyExpr}) AS start, count(*) AS rows
        FROM ${rel} GROUP BY 1 ORDER BY 1`.execute(db);
    for (const b of buckets.rows) {
      if (b.start === null) defaultNullKeyRows += Number(b.rows);
      else defaultBuckets.push({ start: b.start, rows: Number(b.rows) });
    }
    defaultBuckets = defaultBuckets.filter((b) => Number.isFinite(b.start.getTime()));
  }
  return {
    table: { schema: table.schema, name: table.name, oid },
    oid,
    keyColumn: timeColumn,
    keyType,
    children: parsed.filter((c) => c.bound.kind !== "default"),
    defaultPartition,
    defaultBuckets,
    defaultNullKeyRows,
    columns: columns.rows.map((c) => c.name),
    defaultGuard,
  };
}
