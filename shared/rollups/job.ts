// The rollup-hourly job: the runner with rollup's table selection, checks and work.
import { type Kysely, sql } from "kysely";
import { parseQualifiedName } from "../config/identifiers.ts";
import type { Config } from "../config/load.ts";
import type { TablePolicy } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import type { TableProblem } from "../partitions/catalog.ts";
import { type RunResult, runJob, type TableContext, type TableReport } from "../run/runner.ts";
import { nullGroupTally, startNullGroupTally, VALIDATED_NOT_NULL } from "./apply.ts";
import { CHANGE_FUNCTION } from "./changes.ts";
import { manageRollup } from "./manage.ts";
import type { HourRange, ShardSpec } from "./plan.ts";

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

export async function runRollupJob(
  db: Kysely<DB>,
  config: Config,
  log: Logger,
  signal: AbortSignal,
  options: { shard: ShardSpec; rebuild?: HourRange | undefined },
): Promise<RunResult> {
  return await runJob({
    job: "rollup-hourly",
    config,
    db,
    log,
    signal,
    lockScope: `shard ${options.shard.index}/${options.shard.count}`,
    appliesTo: (policy) => policy.rollup !== undefined,
    inspect: inspectRollupSource,
    processTable: async (ctx) =>
      reportNullGroups(
        ctx,
        await manageRollup(db, ctx, {
          now: config.options.now,
          dryRun: config.options.dryRun,
          shard: options.shard,
          rebuild: options.rebuild,
        }),
        config.options.dryRun,
      ),
  });
}

/**
 * Rows with a NULL group value were skipped (they belong to no bucket): a WARN with the count, and
 * nullGroupRowsSkipped in the table's health (so in the run summary), for every source whose group
 * column may hold NULL. Sources with a NOT NULL group column report nothing new.
 */
function reportNullGroups(ctx: TableContext, report: TableReport, dryRun: boolean): TableReport {
  const tally = nullGroupTally(ctx.policy);
  if (dryRun || !tally?.mayBeNull || !report.health) return report;
  const rollup = ctx.policy.rollup!;
  if (tally.rows > 0)
    ctx.log.warn(
      `${tally.rows} rows with a NULL ${rollup.groupBy} were skipped: a NULL group is no bucket of the (${rollup.groupColumn}, metric_key, hour) key. Give those rows a group (then rebuild their hours with --from/--to), or delete them`,
      { rows: tally.rows, groupBy: rollup.groupBy },
    );
  return { ...report, health: { ...report.health, nullGroupRowsSkipped: tally.rows } };
}

interface ColumnFacts {
  type: string;
  /** NOT NULL, validated (see VALIDATED_NOT_NULL). */
  notNull: boolean;
}

async function columnsOf(db: Kysely<any>, table: string): Promise<Map<string, ColumnFacts> | undefined> {
  const q = parseQualifiedName(table)!;
  const r = await sql<{ attname: string; type: string; not_null: boolean }>`
    SELECT a.attname, format_type(a.atttypid, NULL) AS type, ${VALIDATED_NOT_NULL} AS not_null
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname = ${q.schema} AND c.relname = ${q.name} AND c.relkind IN ('r', 'p')`.execute(db);
  return r.rows.length === 0
    ? undefined
    : new Map(r.rows.map((row) => [row.attname, { type: row.type, notNull: row.not_null }]));
}

/** The source needs its time, group and metric columns and ingest_xid; the target its columns. */
export async function inspectRollupSource(
  db: Kysely<any>,
  policy: TablePolicy,
): Promise<TableProblem | undefined> {
  const rollup = policy.rollup!;
  const source = await columnsOf(db, policy.table);
  if (!source) return { field: "table", message: `${policy.table} does not exist` };
  const time = source.get(policy.timeColumn)?.type;
  if (!time?.startsWith("timestamp"))
    return {
      field: "timeColumn",
      message: `column "${policy.timeColumn}" of ${policy.table} ${time ? `is ${time}, not a timestamp` : "does not exist"}`,
    };
  const group = source.get(rollup.groupBy);
  if (!group)
    return {
      field: "rollup.groupBy",
      message: `column "${rollup.groupBy}" does not exist in ${policy.table}`,
    };
  // Read here, with the other columns, so a NOT NULL group column costs the run nothing more.
  startNullGroupTally(policy, !group.notNull);
  const metricColumns = "jsonb" in rollup.metrics ? [rollup.metrics.jsonb] : rollup.metrics.columns;
  for (const c of metricColumns) {
    const type = source.get(c)?.type;
    if (!type) return { field: "rollup.metrics", message: `column "${c}" does not exist in ${policy.table}` };
    if ("jsonb" in rollup.metrics && type !== "jsonb")
      return {
        field: "rollup.metrics.jsonb",
        message: `column "${c}" of ${policy.table} is ${type}, not jsonb`,
      };
    if (
      "columns" in rollup.metrics &&
      !/^(smallint|integer|bigint|real|double precision|numeric)$/.test(type)
    )
      return {
        field: "rollup.metrics.columns",
        message: `column "${c}" of ${policy.table} is ${type}, not numeric`,
      };
  }
  if (source.get("ingest_xid")?.type !== "xid8")
    return {
      field: "table",
      message: `${policy.table} has no ingest_xid xid8 column, which rollup-hourly uses to find new rows. Add it without a rewrite: ALTER TABLE ${policy.table} ADD COLUMN ingest_xid xid8; ALTER TABLE ${policy.table} ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id(); then an index on (ingest_xid, ${policy.timeColumn}) built without blocking writes: CREATE INDEX CONCURRENTLY on a plain table; on a partitioned one, per partition and then attached (docs/runbooks/rollups.md)`,
    };
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
  const target = await columnsOf(db, rollup.target);
  if (!target) return { field: "rollup.target", message: `${rollup.target} does not exist` };
  const missing = [rollup.groupColumn, ...ROLLUP_TARGET_COLUMNS].filter((c) => !target.has(c));
  if (missing.length > 0)
    return { field: "rollup.target", message: `${rollup.target} lacks column(s) ${missing.join(", ")}` };
  return undefined;
}
