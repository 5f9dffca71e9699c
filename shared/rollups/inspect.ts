// rollup-hourly's (and adoption's) check of a rollup source against the catalog, before a run
// changes anything: the columns the policy names exist with usable types, what adoption would
// refuse, the change-tracking function, and the target's columns. It also reads whether the
// source's group column may hold NULL, which the run then passes to its queries.
import { type Kysely, sql } from "kysely";
import { ingestRefusal } from "../adopt/ingest.ts";
import { INGEST_COLUMN } from "../adopt/ingest-plan.ts";
import { readTargetState, schemaMissingMessage } from "../adopt/target.ts";
import { policyTable, rollupTarget, type TablePolicy } from "../config/policy.ts";
import type { Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { TableProblem } from "../partitions/catalog.ts";
import { CHANGE_FUNCTION } from "./changes.ts";
import { type RollupSource, rollupSourceOf } from "./source.ts";

export const ROLLUP_TARGET_COLUMNS = [
  "metric_key",
  "bucket_ts",
  "sample_count",
  "sum",
  "min",
  "max",
  "avg",
  "updated_at",
];

/**
 * True when column `a` (pg_attribute) of relation `c` (pg_class) cannot hold NULL: attnotnull, and not
 * merely a PostgreSQL 18 NOT NULL constraint added NOT VALID (attnotnull is set, yet existing rows
 * may still be NULL). Earlier versions keep no not-null rows in pg_constraint: the test is then
 * attnotnull alone.
 */
export const VALIDATED_NOT_NULL = sql<boolean>`(a.attnotnull AND NOT EXISTS (
  SELECT 1 FROM pg_catalog.pg_constraint k
   WHERE k.conrelid = c.oid AND k.contype = 'n' AND NOT k.convalidated AND k.conkey = ARRAY[a.attnum]))`;

/** Whether the source's group column may hold NULL (a missing column counts as nullable). */
export async function groupMayBeNull(db: Kysely<DB>, policy: RollupSource): Promise<boolean> {
  const source = policyTable(policy);
  const r = await sql<{ not_null: boolean }>`
    SELECT ${VALIDATED_NOT_NULL} AS not_null
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
     WHERE n.nspname = ${source.schema} AND c.relname = ${source.name}
       AND a.attname = ${policy.rollup.groupBy}`.execute(db);
  return r.rows[0]?.not_null !== true;
}

interface ColumnFacts {
  type: string;
  /** NOT NULL, validated (see VALIDATED_NOT_NULL). */
  notNull: boolean;
}

async function columnsOf(db: Kysely<DB>, q: Relation): Promise<Map<string, ColumnFacts> | undefined> {
  const r = await sql<{ attname: string; type: string; not_null: boolean }>`
    SELECT a.attname, format_type(a.atttypid, NULL) AS type, ${VALIDATED_NOT_NULL} AS not_null
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname = ${q.schema} AND c.relname = ${q.name} AND c.relkind IN ('r', 'p')`.execute(db);
  return r.rows.length === 0
    ? undefined
    : new Map(r.rows.map((row) => [row.attname, { type: row.type, notNull: row.not_null }]));
}

/** What the check found: a problem (a configuration error), and what it read on the way. */
export interface RollupSourceFacts {
  problem?: TableProblem;
  /** Whether the group column may hold NULL; known once the check got as far as that column. */
  groupMayBeNull?: boolean;
}

/** The source needs its time, group and metric columns and ingest_xid; the target its columns. */
export async function inspectRollupSource(
  db: Kysely<DB>,
  policy: TablePolicy,
): Promise<TableProblem | undefined> {
  return (await inspectRollupSourceFacts(db, policy)).problem;
}

export async function inspectRollupSourceFacts(
  db: Kysely<DB>,
  tablePolicy: TablePolicy,
): Promise<RollupSourceFacts> {
  const policy = rollupSourceOf(tablePolicy);
  const { rollup } = policy;
  const source = await columnsOf(db, policyTable(policy));
  if (!source) return { problem: { field: "table", message: `${policy.table} does not exist` } };
  const time = source.get(policy.timeColumn)?.type;
  if (!time?.startsWith("timestamp"))
    return {
      problem: {
        field: "timeColumn",
        message: `column "${policy.timeColumn}" of ${policy.table} ${time ? `is ${time}, not a timestamp` : "does not exist"}`,
      },
    };
  const group = source.get(rollup.groupBy);
  if (!group)
    return {
      problem: {
        field: "rollup.groupBy",
        message: `column "${rollup.groupBy}" does not exist in ${policy.table}`,
      },
    };
  // Read here, with the other columns, so a NOT NULL group column costs the run nothing more.
  const groupMayBeNull = !group.notNull;
  const problem =
    metricProblem(policy.table, rollup.metrics, source) ?? (await laterProblem(db, policy, source));
  return problem ? { problem, groupMayBeNull } : { groupMayBeNull };
}

/** The metric columns exist with the types the policy's metrics need. */
function metricProblem(
  table: string,
  metrics: RollupSource["rollup"]["metrics"],
  source: ReadonlyMap<string, ColumnFacts>,
): TableProblem | undefined {
  const metricColumns = "jsonb" in metrics ? [metrics.jsonb] : metrics.columns;
  for (const c of metricColumns) {
    const type = source.get(c)?.type;
    if (!type) return { field: "rollup.metrics", message: `column "${c}" does not exist in ${table}` };
    if ("jsonb" in metrics && type !== "jsonb")
      return {
        field: "rollup.metrics.jsonb",
        message: `column "${c}" of ${table} is ${type}, not jsonb`,
      };
    if ("columns" in metrics && !/^(smallint|integer|bigint|real|double precision|numeric)$/.test(type))
      return {
        field: "rollup.metrics.columns",
        message: `column "${c}" of ${table} is ${type}, not numeric`,
      };
  }
  return undefined;
}

/** ingest_xid, what adoption would refuse, the change-tracking function, and the target. */
async function laterProblem(
  db: Kysely<DB>,
  policy: RollupSource,
  source: ReadonlyMap<string, ColumnFacts>,
): Promise<TableProblem | undefined> {
  const { rollup } = policy;
  // ingest_xid and the target are made by adoption (shared/adopt) when missing; what is there
  // already must be usable as it is.
  const ingest = source.get(INGEST_COLUMN)?.type;
  if (ingest !== undefined && ingest !== "xid8")
    return {
      field: "table",
      message: `column "${INGEST_COLUMN}" of ${policy.table} is ${ingest}; rollup-hourly needs it to be xid8 DEFAULT pg_current_xact_id() (the inserting transaction). Rename the application's column, or leave this table out of rollups`,
    };
  // What adoption would refuse (another default on ingest_xid, a foreign or multi-level partition,
  // its index name taken...) is refused here, before adoption changes anything.
  const refusal = await ingestRefusal(db, policyTable(policy), policy.timeColumn);
  if (refusal) return { field: "table", message: refusal };
  const tracker = await sql<{ ok: boolean }>`
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = ${CHANGE_FUNCTION.schema} AND p.proname = ${CHANGE_FUNCTION.name}) AS ok`.execute(
    db,
  );
  if (!tracker.rows[0]?.ok)
    return {
      field: "table",
      message: `${CHANGE_FUNCTION.schema}.${CHANGE_FUNCTION.name}() does not exist: the database lacks migration 0007_rollup_changes (change tracking for UPDATE and DELETE). Run \`migrate up\` first`,
    };
  const target = await columnsOf(db, rollupTarget(rollup));
  if (!target) {
    // Adoption creates a missing target, but no schema: the product creates none but its own.
    const state = await readTargetState(db, rollupTarget(rollup));
    return state === "schema_missing"
      ? { field: "rollup.target", message: schemaMissingMessage(rollupTarget(rollup)) }
      : undefined;
  }
  const missing = [rollup.groupColumn, ...ROLLUP_TARGET_COLUMNS].filter((c) => !target.has(c));
  if (missing.length > 0)
    return { field: "rollup.target", message: `${rollup.target} lacks column(s) ${missing.join(", ")}` };
  return undefined;
}
