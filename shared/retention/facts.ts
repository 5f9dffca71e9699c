// Reads what the retention planner needs: the partition catalog (real bounds), which children hold
// any row, how many rows older than the cutoff each row-delete target has (counted, not estimated:
// the dry run promises counts), unfinished removals from a killed run, the holds, and for a table
// with a rollup block, the rollup frontier and how many of those expired rows are not final yet.
import { type Kysely, sql } from "kysely";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { boundRange } from "../partitions/bounds.ts";
import { readCatalog, type TableProblem } from "../partitions/catalog.ts";
import { readRollupFrontier } from "../rollups/frontier.ts";
import { straddlesCutoff } from "./expiry.ts";
import { listHolds } from "./holds.ts";
import { type RetentionFacts, type RetentionMode, rowDeleteLimit } from "./plan.ts";

/** Comment put on a partition before it is detached, so that a killed run's leftover is finished. */
export function removalMarker(parent: string, mode: RetentionMode): string {
  return `telemetry-jobs retention: removing from ${parent}, mode ${mode}`;
}
const MARKER_PATTERN = /^telemetry-jobs retention: removing from (\S+), mode (drop|detach|archive)$/;

/** For `partitioned: false` policies: a plain table with a timestamp column. */
export async function inspectPlainTable(
  db: Kysely<DB>,
  policy: TablePolicy,
): Promise<TableProblem | undefined> {
  const q = policyTable(policy);
  const r = await sql<{ relkind: string; key_type: string | null }>`
    SELECT c.relkind::text AS relkind,
           (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attname = ${policy.timeColumn} AND NOT a.attisdropped) AS key_type
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${q.schema} AND c.relname = ${q.name}`.execute(db);
  const row = r.rows[0];
  if (!row) return { field: "table", message: `${policy.table} does not exist` };
  if (row.relkind === "p") {
    return {
      field: "table",
      message: `${policy.table} is partitioned: remove "partitioned": false from its policy`,
    };
  }
  if (row.relkind !== "r") return { field: "table", message: `${policy.table} is not a table` };
  if (row.key_type === null) {
    return {
      field: "timeColumn",
      message: `column "${policy.timeColumn}" does not exist in ${policy.table}`,
    };
  }
  if (!row.key_type.startsWith("timestamp")) {
    return {
      field: "timeColumn",
      message: `column "${policy.timeColumn}" of ${policy.table} is ${row.key_type}, not a timestamp`,
    };
  }
  return undefined;
}

/**
 * Rows older than the cutoff, and among them those at or after `limit` (the row-delete limit of a
 * rolled-up table: rows there must stay). `limit` undefined: no such limit (0 kept); null: every
 * expired row is kept.
 */
async function countExpired(
  db: Kysely<DB>,
  relation: Relation,
  column: string,
  cutoff: Date,
  limit: Date | null | undefined,
): Promise<{ expired: number; notFinal: number }> {
  const col = columnSql(column);
  const notFinal =
    limit === undefined
      ? sql`0`
      : limit === null
        ? sql`count(*)`
        : sql`count(*) FILTER (WHERE ${col} >= ${limit})`;
  const r = await sql<{ n: string; not_final: string }>`
    SELECT count(*) AS n, ${notFinal} AS not_final
      FROM ONLY ${relationSql(relation)} WHERE ${col} < ${cutoff}`.execute(db);
  return { expired: Number(r.rows[0]?.n ?? 0), notFinal: Number(r.rows[0]?.not_final ?? 0) };
}

export async function readRetentionFacts(
  db: Kysely<DB>,
  policy: TablePolicy,
  cutoff: Date,
  lock: { lockTimeoutMs: number; budgetMs: number },
): Promise<RetentionFacts> {
  const table = policyTable(policy);
  const holds = await listHolds(db);
  const frontier = policy.rollup ? await readRollupFrontier(db, policy.rollup.target) : undefined;
  // Rows at or after this stay whatever the cutoff says (undefined: the table is not rolled up).
  const limit = frontier ? rowDeleteLimit(cutoff, frontier) : undefined;
  const notFinalRows = new Map<string, number>();
  const rollup = frontier ? { frontier, notFinalRows } : undefined;
  const unfinishedRemovals = await readUnfinishedRemovals(db, policy.table);

  if (!policy.partitioned) {
    const expired = await withLockRetry(
      db,
      { ...lock, what: `count expired rows of ${policy.table}`, contended: table },
      (trx) => countExpired(trx, table, policy.timeColumn, cutoff, limit),
    );
    notFinalRows.set(displayRelation(table), expired.result.notFinal);
    return {
      table: policy.table,
      catalog: undefined,
      childHasRows: new Map(),
      expiredRows: new Map([[displayRelation(table), expired.result.expired]]),
      unfinishedRemovals,
      holds,
      archiveClashes: new Map(),
      rollup,
    };
  }

  const catalog = await readCatalog(db, table, policy.timeColumn, policy.interval, lock);
  const { result } = await withLockRetry(
    db,
    { ...lock, what: `inspect the partitions of ${policy.table}`, contended: table },
    async (trx) => {
      const expiredRows = new Map<string, number>();
      const children = catalog.children.filter((c) => !c.detachPending);
      const childHasRows = await whichHaveRows(
        trx,
        children.map((c) => ({ schema: c.schema, name: c.name })),
      );
      for (const child of children) {
        const relation: Relation = { schema: child.schema, name: child.name };
        const name = displayRelation(relation);
        const range = boundRange(child.bound);
        if (policy.retention?.exactCutoff && range && straddlesCutoff(range, cutoff)) {
          const n = await countExpired(trx, relation, policy.timeColumn, cutoff, limit);
          expiredRows.set(name, n.expired);
          notFinalRows.set(name, n.notFinal);
        }
      }
      if (catalog.defaultPartition) {
        const def: Relation = {
          schema: catalog.defaultPartition.schema,
          name: catalog.defaultPartition.name,
        };
        const n = await countExpired(trx, def, policy.timeColumn, cutoff, limit);
        expiredRows.set(displayRelation(def), n.expired);
        notFinalRows.set(displayRelation(def), n.notFinal);
      }
      return { childHasRows, expiredRows };
    },
  );
  const candidates = [
    ...catalog.children.map((c) => ({ schema: c.schema, name: c.name })),
    ...unfinishedRemovals.map((u) => u.partition),
  ];
  const archiveClashes =
    policy.retention?.mode === "archive"
      ? await findArchiveClashes(db, candidates, policy.retention.archiveSchema)
      : new Map<string, string[]>();
  return { table: policy.table, catalog, ...result, unfinishedRemovals, holds, archiveClashes, rollup };
}

/** displayRelation(relation) -> whether it has a row, for every relation at once (one round trip). */
async function whichHaveRows(db: Kysely<DB>, relations: readonly Relation[]): Promise<Map<string, boolean>> {
  if (relations.length === 0) return new Map();
  const r = await sql<{ has: boolean[] }>`
    SELECT ARRAY[${sql.join(relations.map((x) => sql`EXISTS (SELECT 1 FROM ONLY ${relationSql(x)})`))}] AS has`.execute(
    db,
  );
  const has = r.rows[0]?.has ?? [];
  return new Map(relations.map((x, i) => [displayRelation(x), has[i] === true]));
}

/** Tables a killed run detached from `table` but did not yet drop or archive (marked by comment). */
async function readUnfinishedRemovals(
  db: Kysely<DB>,
  table: string,
): Promise<RetentionFacts["unfinishedRemovals"]> {
  // From the comments (few) to their tables, not a comment lookup for every table of the database.
  const unfinished = await sql<{ schema: string; name: string; comment: string }>`
    SELECT n.nspname::text AS schema, c.relname::text AS name, d.description AS comment
      FROM pg_catalog.pg_description d
      JOIN pg_catalog.pg_class c ON c.oid = d.objoid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
       AND c.relkind = 'r' AND NOT c.relispartition
       AND d.description LIKE 'telemetry-jobs retention: removing from %'`.execute(db);
  return unfinished.rows.flatMap((row) => {
    const m = MARKER_PATTERN.exec(row.comment);
    return m && m[1] === table
      ? [{ partition: { schema: row.schema, name: row.name }, mode: m[2] as RetentionMode }]
      : [];
  });
}

/**
 * For each relation, the names that moving it into `archiveSchema` would need and that the schema
 * already holds. ALTER TABLE ... SET SCHEMA moves, under their own names, the table, its indexes,
 * the sequences it owns, and its row type and array type; any one of them taken there makes the move
 * fail (relations and types share the name check, so each name is looked up among both).
 */
async function findArchiveClashes(
  db: Kysely<DB>,
  relations: readonly Relation[],
  archiveSchema: string,
): Promise<Map<string, string[]>> {
  const clashes = new Map<string, string[]>();
  if (relations.length === 0) return clashes;
  const r = await sql<{ schema: string; name: string; taken: string[] }>`
    SELECT n.nspname::text AS schema, c.relname::text AS name,
           array_agg(DISTINCT moved.name::text ORDER BY moved.name::text) AS taken
      FROM unnest(${relations.map((x) => x.schema)}::text[], ${relations.map((x) => x.name)}::text[]) AS want(schema, name)
      JOIN pg_catalog.pg_namespace n ON n.nspname = want.schema
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = want.name
      JOIN LATERAL (
             SELECT c.relname
             UNION ALL
             SELECT ic.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = c.oid
             UNION ALL
             SELECT s.relname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
                AND d.refobjid = c.oid AND d.deptype IN ('a', 'i') AND s.relkind = 'S'
             UNION ALL
             SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = c.reltype
             UNION ALL
             SELECT a.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type a ON a.oid = t.typarray
              WHERE t.oid = c.reltype
           ) AS moved(name) ON true
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class x JOIN pg_catalog.pg_namespace xn ON xn.oid = x.relnamespace
                    WHERE xn.nspname = ${archiveSchema} AND x.relname = moved.name)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_type y JOIN pg_catalog.pg_namespace yn ON yn.oid = y.typnamespace
                    WHERE yn.nspname = ${archiveSchema} AND y.typname = moved.name)
     GROUP BY 1, 2`.execute(db);
  for (const row of r.rows) clashes.set(displayRelation({ schema: row.schema, name: row.name }), row.taken);
  return clashes;
}
