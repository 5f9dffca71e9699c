// UPDATE and DELETE of raw rows: the triggers that record them, and how a run consumes the records.
//
// Inserts are found by ingest_xid (the inserting transaction). An UPDATE keeps the old ingest_xid
// and a DELETE leaves no row behind, so rollup-hourly puts two statement-level triggers on each
// source table, AFTER UPDATE and AFTER DELETE, each with transition tables, calling
// telemetry_jobs.record_rollup_changes(time column, group column). A statement adds one row per
// distinct (group value, hour) it touched, old and new row versions alike, to
// telemetry_jobs.rollup_changes, in its own transaction. There is no INSERT trigger: inserts pay
// nothing. The job adopts application tables itself: a run whose source lacks the triggers creates
// them (CREATE OR REPLACE TRIGGER takes SHARE ROW EXCLUSIVE on the table, briefly, under
// lock_timeout, retried within the policy's budget).
//
// What PostgreSQL fires (PostgreSQL 14 to 18): a statement naming a partitioned table fires the
// parent's statement triggers with the rows of every partition it touched in the transition
// tables, and an UPDATE that moves a row to another partition shows the row once in the old and
// once in the new transition table. A statement naming a partition fires that partition's own
// triggers only, and statement triggers are never cloned to partitions: retention's batched
// deletes (DELETE FROM ONLY one leaf), dropped or detached partitions, and partition-manager's
// moves out of DEFAULT are never recorded. On a plain table retention's deletes do fire the
// triggers; their hours lie before the raw-data horizon, whose records a run drops unread.
// TRUNCATE fires neither.
//
// Consuming: a run's REPEATABLE READ step sees exactly the records of the transactions committed in
// its snapshot, and their raw-row changes with them. Records of final hours within the horizon add
// their buckets to the ones the step recomputes from raw rows; the step deletes what it consumed,
// so a record still visible to a reader means "not rolled up yet" (the real-time read serves those
// hours from raw rows). Kept for later: records of open hours (recomputed whole once final) and of
// a rebuild still pending (recomputed by the rebuild, then by a later step).
import { type Kysely, type RawBuilder, sql, type Transaction } from "kysely";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { LockBudgetExceededError, withLockRetry } from "../db/lock-retry.ts";
import { displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import { sqlState } from "../db/sqlstate.ts";
import type { TableContext } from "../run/runner.ts";
import type { HourRange, ShardSpec } from "./plan.ts";
import { shardPredicate } from "./sql.ts";

/** The trigger function (migration 0007_rollup_changes). */
export const CHANGE_FUNCTION = { schema: "telemetry_jobs", name: "record_rollup_changes" } as const;

export interface ChangeTrigger {
  name: string;
  event: "UPDATE" | "DELETE";
  /** pg_trigger.tgtype: AFTER, FOR EACH STATEMENT, this event only. */
  tgtype: number;
  newTable: boolean;
}

/** The two triggers a source carries; names are fixed, so a run recognises (and repairs) them. */
export const CHANGE_TRIGGERS: readonly ChangeTrigger[] = [
  { name: "telemetry_jobs_rollup_delete", event: "DELETE", tgtype: 8, newTable: false },
  { name: "telemetry_jobs_rollup_update", event: "UPDATE", tgtype: 16, newTable: true },
];
const OLD_TABLE = "rollup_old_rows";
const NEW_TABLE = "rollup_new_rows";

function triggerArgs(policy: TablePolicy): [string, string] {
  return [policy.timeColumn, policy.rollup!.groupBy];
}

const quotedId = (part: string) => `"${part.replaceAll('"', '""')}"`;
const quotedLiteral = (value: string) => `'${value.replaceAll("'", "''")}'`;

/**
 * CREATE OR REPLACE TRIGGER for one of the two triggers on `relation`, recording `args` (the time
 * column, then the group column): idempotent, SHARE ROW EXCLUSIVE on the relation. Pure text, the
 * one definition of the triggers: rollup-hourly installs them with it, and `migrate convert` moves
 * them with it between the plain table and the partitioned one. Every identifier is quoted, each
 * part of the relation on its own.
 */
export function changeTriggerStatement(
  relation: Relation,
  trigger: ChangeTrigger,
  args: readonly string[],
): string {
  const transition = trigger.newTable
    ? `OLD TABLE AS ${quotedId(OLD_TABLE)} NEW TABLE AS ${quotedId(NEW_TABLE)}`
    : `OLD TABLE AS ${quotedId(OLD_TABLE)}`;
  return `CREATE OR REPLACE TRIGGER ${quotedId(trigger.name)} AFTER ${trigger.event} ON ${quotedId(relation.schema)}.${quotedId(relation.name)} REFERENCING ${transition} FOR EACH STATEMENT EXECUTE FUNCTION ${quotedId(CHANGE_FUNCTION.schema)}.${quotedId(CHANGE_FUNCTION.name)}(${args.map(quotedLiteral).join(", ")})`;
}

/** The policy's trigger on its source, as SQL. */
export function changeTriggerSql(policy: TablePolicy, trigger: ChangeTrigger): RawBuilder<unknown> {
  return sql.raw(changeTriggerStatement(policyTable(policy), trigger, triggerArgs(policy)));
}

/** The statements as an operator would type them (for dry runs and for a DBA when we may not). */
export function changeTriggerText(db: Kysely<any>, policy: TablePolicy): string {
  return CHANGE_TRIGGERS.map((t) => `${changeTriggerSql(policy, t).compile(db).sql};`).join(" ");
}

export type TriggerState = "ok" | "missing" | "different" | "disabled";

/**
 * Each change trigger on the source: in place as planned, missing, defined otherwise, or disabled;
 * and whether one of them records another group column than the policy's (the policy's groupBy
 * changed: the records it left name groups of that other column).
 */
export async function inspectChangeTriggers(
  db: Kysely<any>,
  policy: TablePolicy,
): Promise<{ states: Map<string, TriggerState>; groupChanged: boolean }> {
  const argBytes = Buffer.concat(
    triggerArgs(policy).flatMap((a) => [Buffer.from(a, "utf8"), Buffer.from([0])]),
  );
  const r = await sql<{
    name: string;
    tgtype: number;
    enabled: string;
    ours: boolean;
    same_args: boolean;
    args: Buffer;
    old_table: string | null;
    new_table: string | null;
    plain: boolean;
  }>`
    SELECT tg.tgname AS name, tg.tgtype::int AS tgtype, tg.tgenabled::text AS enabled,
           tg.tgfoid = (SELECT p.oid FROM pg_catalog.pg_proc p
                          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                         WHERE n.nspname = ${CHANGE_FUNCTION.schema} AND p.proname = ${CHANGE_FUNCTION.name}
                           AND p.pronargs = 0) AS ours,
           tg.tgargs = ${argBytes}::bytea AS same_args, tg.tgargs AS args,
           tg.tgoldtable::text AS old_table, tg.tgnewtable::text AS new_table,
           (tg.tgqual IS NULL AND cardinality(tg.tgattr::int2[]) = 0) AS plain
      FROM pg_catalog.pg_trigger tg
     WHERE tg.tgrelid = ${relationOidSql(policyTable(policy))}
       AND tg.tgname = ANY(${CHANGE_TRIGGERS.map((t) => t.name)}::text[])`.execute(db);
  const states = new Map<string, TriggerState>();
  const group = triggerArgs(policy)[1];
  // tgargs: each argument followed by a NUL byte
  const groupChanged = r.rows.some((row) => {
    const args = row.args.toString("utf8").split("\0");
    return row.ours && args.length >= 2 && args[1] !== group;
  });
  for (const t of CHANGE_TRIGGERS) {
    const row = r.rows.find((x) => x.name === t.name);
    if (!row) states.set(t.name, "missing");
    else if (
      !row.ours ||
      !row.same_args ||
      !row.plain ||
      row.tgtype !== t.tgtype ||
      row.old_table !== OLD_TABLE ||
      row.new_table !== (t.newTable ? NEW_TABLE : null)
    )
      states.set(t.name, "different");
    // 'D' disabled; 'R' fires only while session_replication_role = replica
    else if (row.enabled === "D" || row.enabled === "R") states.set(t.name, "disabled");
    else states.set(t.name, "ok");
  }
  return { states, groupChanged };
}

export type ChangeTracking = "present" | "installed" | "would_install" | "not_installed" | "disabled";

/**
 * Makes sure the source carries both change triggers, as planned: creates or corrects them under
 * lock_timeout, retried within the policy's retry budget (a writer in the middle of a transaction
 * on the table holds a lock that conflicts; it is never waited for longer than lock_timeout at a
 * time). A dry run only says what it would do. A trigger an operator disabled is left disabled,
 * with a warning. When the lock budget runs out or the job's role may not create triggers on the
 * table, the run goes on without (inserts are still rolled up), warns with the statements to run,
 * and the next run tries again.
 */
export async function ensureChangeTracking(
  db: Kysely<any>,
  ctx: TableContext,
  dryRun: boolean,
): Promise<ChangeTracking> {
  const { policy, log } = ctx;
  const source = policyTable(policy);
  const shown = displayRelation(source);
  const { states, groupChanged } = await inspectChangeTriggers(db, policy);
  const todo = CHANGE_TRIGGERS.filter((t) => {
    const s = states.get(t.name);
    return s === "missing" || s === "different";
  });
  const disabled = CHANGE_TRIGGERS.filter((t) => states.get(t.name) === "disabled");
  if (todo.length === 0) {
    if (disabled.length === 0) return "present";
    log.warn(
      `change tracking on ${shown} is disabled (${disabled.map((t) => t.name).join(", ")}): UPDATE and DELETE of its rows do not reach the rollups or the real-time read. Enable it again with ALTER TABLE ${relationSql(source).compile(db).sql} ENABLE TRIGGER ...; then rebuild the hours changed meanwhile (--from/--to)`,
      { disabled: disabled.map((t) => t.name) },
    );
    return "disabled";
  }
  const statements = changeTriggerText(db, policy);
  if (dryRun) {
    log.info(
      `would install change tracking on ${shown} (UPDATE and DELETE statement triggers): ${statements}`,
      {
        triggers: todo.map((t) => t.name),
      },
    );
    return "would_install";
  }
  const started = new Date();
  try {
    const { attempts } = await withLockRetry(
      db,
      {
        lockTimeoutMs: policy.lockTimeoutMs,
        budgetMs: policy.retryBudgetMs,
        what: `install change tracking on ${shown}`,
        contended: source,
        signal: ctx.signal,
        onRetry: ({ attempt, waitMs, error }) =>
          log.info(
            `change tracking on ${shown}: lock not available (${sqlState(error)}), retrying in ${waitMs} ms`,
            {
              attempt,
            },
          ),
      },
      async (trx) => {
        for (const t of todo) await changeTriggerSql(policy, t).execute(trx);
        // Records of another group column would be read as values of this one: drop them.
        if (groupChanged)
          await sql`DELETE FROM telemetry_jobs.rollup_changes
                     WHERE source_schema = ${source.schema} AND source_name = ${source.name}`.execute(trx);
      },
    );
    if (groupChanged)
      log.warn(
        `change tracking on ${shown} recorded another group column than rollup.groupBy "${policy.rollup!.groupBy}": its records were dropped. A rollup grouped by another column needs a rebuild of the hours it keeps (--from/--to)`,
      );
    log.notice(
      `installed change tracking on ${shown}: AFTER UPDATE and AFTER DELETE statement triggers record the (group, hour) of changed rows; inserts fire nothing. Changes made before now were not recorded: if rows were corrected or deleted, rebuild those hours (--from/--to)`,
      {
        triggers: todo.map((t) => t.name),
        replaced: todo.filter((t) => states.get(t.name) === "different").length,
        attempts,
      },
    );
    await ctx.record({
      kind: "rollup_change_tracking",
      partition: shown,
      outcome: "ok",
      detail: { triggers: todo.map((t) => t.name), attempts },
      startedAt: started,
      finishedAt: new Date(),
    });
    return "installed";
  } catch (error) {
    if (!(error instanceof LockBudgetExceededError) && sqlState(error) !== "42501") throw error;
    log.warn(
      `change tracking not installed on ${shown}: ${(error as Error).message}. UPDATE and DELETE of its rows do not reach the rollups until it is; the next run tries again. To install it by hand (as the table's owner): ${statements}`,
      { sqlstate: sqlState(error) },
    );
    return "not_installed";
  }
}

export interface ChangeConsumption {
  /** Change records consumed (deleted) by this step. */
  records: number;
  /** Distinct (group, hour) buckets they added to the ones recomputed bucket by bucket. */
  buckets: number;
  /** Records of hours before the raw-data horizon, dropped unread. */
  beforeHorizon: number;
}

/**
 * Adds to the temp table rollup_touched (g, h, n) the buckets of the change records this step
 * recomputes, and deletes every record it is done with, all within the caller's REPEATABLE READ
 * transaction (only records committed in its snapshot are seen, and deleted):
 * - records of `ranges` (final hours from the horizon on, outside the hours recomputed whole):
 *   their buckets are recomputed one by one;
 * - records of hours recomputed whole by this step (newly final): consumed as they are;
 * - records of hours before `horizon`: dropped (never recomputed, the rollups stay);
 * - records of open hours (at or after finalBefore) and of `pending` (a rebuild not done yet) from
 *   the horizon on: kept for a later run.
 * Only the shard's groups; group values go back to the source column's type through its input
 * function, so the recompute joins on the column as it is.
 */
export async function consumeChanges(
  trx: Transaction<any>,
  policy: TablePolicy,
  shard: ShardSpec,
  step: { ranges: readonly HourRange[]; finalBefore: Date; horizon: Date | null; pending: HourRange | null },
): Promise<ChangeConsumption> {
  const source = policyTable(policy);
  const inRanges =
    step.ranges.length === 0
      ? sql`false`
      : sql.join(
          step.ranges.map((r) => sql`(c.bucket_ts >= ${r.from} AND c.bucket_ts < ${r.to})`),
          sql` OR `,
        );
  const beforeHorizon = step.horizon ? sql`c.bucket_ts < ${step.horizon}` : sql`false`;
  const deferred = step.pending
    ? sql`(c.bucket_ts >= ${step.pending.from} AND c.bucket_ts < ${step.pending.to} AND NOT ${beforeHorizon})`
    : sql`false`;
  const r = await sql<{ records: string; buckets: string; before_horizon: string }>`
    WITH consumed AS (
      DELETE FROM telemetry_jobs.rollup_changes c
       WHERE c.source_schema = ${source.schema} AND c.source_name = ${source.name}
         AND c.bucket_ts < ${step.finalBefore} AND NOT ${deferred}
         AND ${shardPredicate(sql`c.group_value`, shard)}
      RETURNING c.group_value, c.bucket_ts, ${inRanges} AS recompute, ${beforeHorizon} AS before_horizon
    ),
    buckets AS (SELECT DISTINCT group_value, bucket_ts FROM consumed WHERE recompute),
    added AS (
      INSERT INTO pg_temp.rollup_touched (g, h, n)
      SELECT (pg_catalog.json_populate_record(NULL::pg_temp.rollup_touched,
                                              pg_catalog.json_build_object('g', b.group_value))).g,
             b.bucket_ts, 0
        FROM buckets b
       WHERE NOT EXISTS (SELECT 1 FROM pg_temp.rollup_touched t WHERE t.g::text = b.group_value AND t.h = b.bucket_ts)
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM consumed) AS records, (SELECT count(*) FROM buckets) AS buckets,
           (SELECT count(*) FROM consumed WHERE before_horizon) AS before_horizon,
           (SELECT count(*) FROM added) AS added`.execute(trx);
  const row = r.rows[0]!;
  if (Number(row.buckets) > 0) await sql`ANALYZE pg_temp.rollup_touched`.execute(trx);
  return {
    records: Number(row.records),
    buckets: Number(row.buckets),
    beforeHorizon: Number(row.before_horizon),
  };
}

/** Change records of the source not consumed yet (for dry runs). */
export async function pendingChangeBuckets(db: Kysely<any>, policy: TablePolicy): Promise<number> {
  const source = policyTable(policy);
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM (
      SELECT DISTINCT group_value, bucket_ts FROM telemetry_jobs.rollup_changes
       WHERE source_schema = ${source.schema} AND source_name = ${source.name}) AS x`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}
