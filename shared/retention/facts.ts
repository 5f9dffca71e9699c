// Reads what the retention planner needs: the partition catalog (real bounds), which children hold
// any row, how many rows older than the cutoff each row-delete target has (counted, or above a bound
// estimated where a run deletes in time order: expired-rows.ts), unfinished removals from a killed run, the holds, for a table with
// a rollup block, the rollup frontier and how many of those expired rows are not final yet, and in
// mode export, the manifests already in the expired partitions' export directories.
import { type Kysely, sql } from "kysely";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import { displayRelation, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { type InspectedTable, readCatalogIn, type TableProblem } from "../partitions/catalog.ts";
import { readRollupFrontier } from "../rollups/frontier.ts";
import { findArchiveClashes } from "./archive-clashes.ts";
import { type RowCounting, type RowEstimates, readExpiredRows } from "./expired-rows.ts";
import { expiryRange, straddlesCutoff } from "./expiry.ts";
import { readExistingExports } from "./export-facts.ts";
import { listHolds } from "./holds.ts";
import { type RetentionFacts, type RetentionMode, rowDeleteLimit } from "./plan.ts";
import { parseRemovalMark } from "./removal-mark.ts";

/** A table a killed run detached but did not finish, with what its mark (or catalog) says of it. */
export interface UnfinishedRemoval {
  readonly partition: Relation;
  readonly mode: RetentionMode;
  /** From the mark; undefined: a mark without one. */
  readonly range?: { readonly from: Date | null; readonly to: Date };
  /** The mark's estimate, else the table's own (pg_class.reltuples); undefined: never counted. */
  readonly rowsEstimate?: number;
}

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

export async function readRetentionFacts(
  db: Kysely<DB>,
  policy: TablePolicy,
  cutoff: Date,
  lock: { lockTimeoutMs: number; budgetMs: number },
  options: { counting: RowCounting; inspected?: InspectedTable | undefined },
): Promise<RetentionFacts & { unfinishedRemovals: readonly UnfinishedRemoval[] }> {
  const { counting, inspected } = options;
  const table = policyTable(policy);
  const holds = await listHolds(db);
  const frontier = policy.rollup ? await readRollupFrontier(db, policy.rollup.target) : undefined;
  // Rows at or after this stay whatever the cutoff says (undefined: the table is not rolled up).
  const limit = frontier ? rowDeleteLimit(cutoff, frontier) : undefined;
  const notFinalRows = new Map<string, number>();
  const rollup = frontier ? { frontier, notFinalRows } : undefined;
  const { unfinished: unfinishedRemovals, exportMarked } = await readRemovalMarks(db, policy.table);

  if (!policy.partitioned) {
    const expired = await withLockRetry(
      db,
      { ...lock, what: `count expired rows of ${policy.table}`, contended: table },
      (trx) => readExpiredRows(trx, table, { column: policy.timeColumn, cutoff, limit, counting }),
    );
    notFinalRows.set(displayRelation(table), expired.result.notFinal);
    return {
      table: policy.table,
      catalog: undefined,
      childHasRows: new Map(),
      expiredRows: new Map([[displayRelation(table), expired.result.expired]]),
      rowEstimates: new Map([[displayRelation(table), expired.result.estimated]]),
      unfinishedRemovals,
      holds,
      archiveClashes: new Map(),
      rollup,
    };
  }

  // One transaction under lock_timeout for the catalog and the rows: sizes and rows take ACCESS
  // SHARE on the children (see readCatalog).
  const { result } = await withLockRetry(
    db,
    { ...lock, what: `inspect the partitions of ${policy.table}`, contended: table },
    (trx) => readPartitionedRows(trx, policy, { cutoff, limit, counting, notFinalRows, inspected }),
  );
  const { catalog, childHasRows, expiredRows, rowEstimates } = result;
  const candidates = [
    ...catalog.children.map((c) => ({ schema: c.schema, name: c.name })),
    ...unfinishedRemovals.map((u) => u.partition),
  ];
  const archiveClashes =
    policy.retention?.mode === "archive"
      ? await findArchiveClashes(db, candidates, policy.retention.archiveSchema)
      : new Map<string, string[]>();
  const existingExports = await readExistingExports(db, policy, catalog, cutoff, lock);
  return {
    table: policy.table,
    catalog,
    childHasRows,
    expiredRows,
    rowEstimates,
    unfinishedRemovals,
    holds,
    archiveClashes,
    rollup,
    existingExports,
    exportMarked,
  };
}

/**
 * The catalog, which children have rows, and the expired rows of DEFAULT and (exactCutoff) of the
 * child straddling the cutoff, their rows not final yet into `notFinalRows`; in the caller's transaction.
 */
async function readPartitionedRows(
  trx: Kysely<DB>,
  policy: TablePolicy,
  at: {
    cutoff: Date;
    limit: Date | null | undefined;
    counting: RowCounting;
    notFinalRows: Map<string, number>;
    inspected: InspectedTable | undefined;
  },
) {
  const table = policyTable(policy);
  const catalog = await readCatalogIn<DB>(trx, table, policy.timeColumn, policy.interval, {
    ...(at.inspected ? { inspected: at.inspected } : {}),
    partitionsOnly: true,
  });
  const children = catalog.children.filter((c) => !c.detachPending);
  const childHasRows = await whichHaveRows(
    trx,
    children.map((c) => ({ schema: c.schema, name: c.name })),
  );
  const counted: Relation[] = [];
  for (const child of children) {
    const range = expiryRange(child.bound);
    if (policy.retention?.exactCutoff && range && straddlesCutoff(range, at.cutoff))
      counted.push({ schema: child.schema, name: child.name });
  }
  const def = catalog.defaultPartition;
  if (def) counted.push({ schema: def.schema, name: def.name });
  const expiredRows = new Map<string, number>();
  const rowEstimates = new Map<string, RowEstimates>();
  for (const relation of counted) {
    const { cutoff, limit, counting } = at;
    const n = await readExpiredRows(trx, relation, { column: policy.timeColumn, cutoff, limit, counting });
    expiredRows.set(displayRelation(relation), n.expired);
    at.notFinalRows.set(displayRelation(relation), n.notFinal);
    rowEstimates.set(displayRelation(relation), n.estimated);
  }
  return { catalog, childHasRows, expiredRows, rowEstimates };
}

/**
 * displayRelation(relation) -> whether it has a row, for every relation at once (one round trip).
 * Not FROM ONLY: a child that is itself partitioned holds its rows in its own partitions.
 */
async function whichHaveRows(db: Kysely<DB>, relations: readonly Relation[]): Promise<Map<string, boolean>> {
  if (relations.length === 0) return new Map();
  const r = await sql<{ has: boolean[] }>`
    SELECT ARRAY[${sql.join(relations.map((x) => sql`EXISTS (SELECT 1 FROM ${relationSql(x)})`))}] AS has`.execute(
    db,
  );
  const has = r.rows[0]?.has ?? [];
  return new Map(relations.map((x, i) => [displayRelation(x), has[i] === true]));
}

/**
 * Tables a killed run detached from `table` but did not yet drop or archive (marked by comment);
 * and partitions still attached that carry a killed export run's mark on a column (killed between
 * marking and detaching), by displayRelation, of any table: only this table's are ever looked up.
 */
async function readRemovalMarks(
  db: Kysely<DB>,
  table: string,
): Promise<{ unfinished: UnfinishedRemoval[]; exportMarked: ReadonlySet<string> }> {
  // From the comments (few) to their tables, not a comment lookup for every table of the database.
  const marks = await sql<{
    schema: string;
    name: string;
    comment: string;
    reltuples: number;
    on_column: boolean;
  }>`
    SELECT n.nspname::text AS schema, c.relname::text AS name, d.description AS comment,
           c.reltuples::float8 AS reltuples, d.objsubid <> 0 AS on_column
      FROM pg_catalog.pg_description d
      JOIN pg_catalog.pg_class c ON c.oid = d.objoid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE d.classoid = 'pg_catalog.pg_class'::regclass
       AND ((d.objsubid = 0 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
             AND d.description LIKE 'telemetry-jobs retention: removing from %')
         OR (d.objsubid <> 0 AND c.relispartition
             AND d.description LIKE 'telemetry-jobs retention: exporting [%'))`.execute(db);
  const exportMarked = new Set(
    marks.rows.filter((r) => r.on_column).map((r) => displayRelation({ schema: r.schema, name: r.name })),
  );
  const unfinished = marks.rows.flatMap((row): UnfinishedRemoval[] => {
    if (row.on_column) return [];
    const mark = parseRemovalMark(row.comment);
    if (mark?.parent !== table) return [];
    const range = mark.range && { from: mark.range.from, to: mark.range.to };
    // reltuples is -1 for a table never vacuumed or analyzed: no estimate.
    const rowsEstimate =
      mark.range?.rowsEstimate ?? (row.reltuples >= 0 ? Math.round(row.reltuples) : undefined);
    return [
      {
        partition: { schema: row.schema, name: row.name },
        mode: mark.mode,
        ...(range ? { range } : {}),
        ...(rowsEstimate !== undefined ? { rowsEstimate } : {}),
      },
    ];
  });
  return { unfinished, exportMarked };
}
