// The rollup-hourly job: the runner with rollup's table selection, checks and work.
import { type Kysely, sql } from "kysely";
import { adoptionLockKeys, adoptionReady, adoptRollupSource } from "../adopt/adopt.ts";
import { ingestRefusal } from "../adopt/ingest.ts";
import { INGEST_COLUMN } from "../adopt/ingest-plan.ts";
import { readTargetState, schemaMissingMessage } from "../adopt/target.ts";
import type { Config } from "../config/load.ts";
import { policyTable, rollupTarget, type TablePolicy } from "../config/policy.ts";
import type { Relation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import type { TableProblem } from "../partitions/catalog.ts";
import { withAdvisoryLocks } from "../run/advisory-lock.ts";
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
    processTable: async (ctx) => {
      const adopted = await adoptFirst(db, ctx, config);
      if (adopted) return adopted;
      return reportNullGroups(
        ctx,
        await manageRollup(db, ctx, {
          now: config.options.now,
          dryRun: config.options.dryRun,
          shard: options.shard,
          rebuild: options.rebuild,
        }),
        config.options.dryRun,
      );
    },
  });
}

/**
 * rollup-hourly's first step: adopt the source (shared/adopt/adopt.ts) unless it is adopted already,
 * under the adoption's own advisory lock (an `adopt` command or another shard's task may be at it).
 * Returns the table's report when the run cannot go on to the rollups: adoption refused, incomplete,
 * busy elsewhere, or planned only (a dry run, which cannot count new rows without ingest_xid).
 */
async function adoptFirst(
  db: Kysely<DB>,
  ctx: TableContext,
  config: Config,
): Promise<TableReport | undefined> {
  const dryRun = config.options.dryRun;
  const ready = await adoptionReady(db, ctx.policy);
  const locked = await withAdvisoryLocks(db, adoptionLockKeys(ctx.policy, ready), () =>
    adoptRollupSource(db, ctx, { dryRun, policies: config.policies }),
  );
  if (!locked.acquired) {
    // Another shard's task checks the same table at the same time (or an `adopt` is running, or
    // partition-manager or retention is at work on a table adoption must change): go on if what
    // the rollups need is there, else leave this table to the next run.
    if (ready) return undefined;
    ctx.log.notice(
      `${locked.busy?.startsWith("adopt:") ? "another run is adopting this table" : "partition-manager or retention is working on this table, which adoption must change"}; its rollups wait for the next run`,
      { table: ctx.policy.table },
    );
    return { status: "ok", actions: {} };
  }
  const outcome = locked.value;
  if (outcome.refusal) return { status: "refused", actions: outcome.actions, error: outcome.refusal };
  if (dryRun && !outcome.complete) {
    ctx.log.info("the rollups start once the table is adopted (the steps above); nothing more to plan", {
      table: ctx.policy.table,
    });
    return { status: "ok", actions: { ...outcome.actions } };
  }
  if (!outcome.complete)
    return {
      status: ctx.signal.aborted ? "interrupted" : "failed",
      actions: outcome.actions,
      error: "adoption is not complete (see the messages above); the next run goes on with it",
    };
  return undefined;
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

async function columnsOf(db: Kysely<any>, q: Relation): Promise<Map<string, ColumnFacts> | undefined> {
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
  const source = await columnsOf(db, policyTable(policy));
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
