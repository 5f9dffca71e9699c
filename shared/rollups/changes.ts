// UPDATE and DELETE of raw rows: the triggers that record them (installed by change-tracking.ts;
// change-records.ts consumes what they record).
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
import { type Kysely, type RawBuilder, sql } from "kysely";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { quoteIdentifier, quoteLiteral, quoteRelation } from "../db/quote.ts";
import { type Relation, relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { rollupSourceOf } from "./source.ts";

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

/** The trigger function's arguments: the time column, then the group column. */
function triggerArgs(policy: TablePolicy): [string, string] {
  return [policy.timeColumn, rollupSourceOf(policy).rollup.groupBy];
}

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
    ? `OLD TABLE AS ${quoteIdentifier(OLD_TABLE)} NEW TABLE AS ${quoteIdentifier(NEW_TABLE)}`
    : `OLD TABLE AS ${quoteIdentifier(OLD_TABLE)}`;
  return `CREATE OR REPLACE TRIGGER ${quoteIdentifier(trigger.name)} AFTER ${trigger.event} ON ${quoteRelation(relation)} REFERENCING ${transition} FOR EACH STATEMENT EXECUTE FUNCTION ${quoteRelation(CHANGE_FUNCTION)}(${args.map(quoteLiteral).join(", ")})`;
}

/** The policy's trigger on its source, as SQL. */
export function changeTriggerSql(policy: TablePolicy, trigger: ChangeTrigger): RawBuilder<unknown> {
  // Raw on purpose: the statement's one definition is text (migrate convert keeps it in its plan),
  // and every identifier and literal in it is quoted by changeTriggerStatement.
  return sql.raw(changeTriggerStatement(policyTable(policy), trigger, triggerArgs(policy)));
}

/** The statements as an operator would type them (for dry runs and for a DBA when we may not). */
export function changeTriggerText(db: Kysely<DB>, policy: TablePolicy): string {
  return CHANGE_TRIGGERS.map((t) => `${changeTriggerSql(policy, t).compile(db).sql};`).join(" ");
}

export type TriggerState = "ok" | "missing" | "different" | "disabled";

/**
 * Each change trigger on the source: in place as planned, missing, defined otherwise, or disabled;
 * and whether one of them records another group column than the policy's (the policy's groupBy
 * changed: the records it left name groups of that other column).
 */
export async function inspectChangeTriggers(
  db: Kysely<DB>,
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
