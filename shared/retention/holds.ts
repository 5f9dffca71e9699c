// Retention holds: "keep this partition past its cutoff until <date>, because <reason>".
import { type Kysely, sql } from "kysely";
import { displayRelation, type Relation, relationOidSql, relationSql, sameRelation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import { markedParent, parseRemovalMark, rangeText } from "./removal-mark.ts";

export interface RetentionHold {
  /** schema.partition */
  readonly partition: string;
  readonly until: Date;
  readonly reason: string;
  readonly createdBy: string;
}

export async function listHolds(db: Kysely<DB>): Promise<RetentionHold[]> {
  const rows = await db
    .selectFrom("telemetry_jobs.retention_holds")
    .select(["partition_name", "hold_until", "reason", "created_by"])
    .orderBy("partition_name")
    .execute();
  return rows.map((r) => ({
    partition: r.partition_name,
    until: r.hold_until,
    reason: r.reason,
    createdBy: r.created_by,
  }));
}

/** How long placing a hold waits for a removal of the partition that has already begun. */
const HOLD_LOCK_WAIT = "30s";

/**
 * Stores the hold, holding the partition's ACCESS SHARE lock until it commits. A drop or a move
 * takes ACCESS EXCLUSIVE, locks the partition and then reads the holds (removal-guards.ts): a hold
 * committed before that lock is seen there, and one placed after it waits for the drop to end and
 * fails with "does not exist". No stronger lock: SHARE UPDATE EXCLUSIVE, which the other removal
 * steps take, would also wait for VACUUM (hours, for an anti-wraparound vacuum of an old
 * partition, the usual one to hold). So a removal that had begun may still take the partition out
 * of its table (a mark, a detach that checked its name before the hold); the hold then keeps it
 * from being dropped, and the returned note says what state it is in and how to put it back.
 * Undefined: nothing of the kind.
 */
export async function placeHold(
  db: Kysely<DB>,
  hold: { partition: Relation; until: Date; reason: string },
): Promise<string | undefined> {
  const name = displayRelation(hold.partition);
  try {
    return await lockAndStore(db, hold, name);
  } catch (error) {
    if (sqlState(error) === SQLSTATE.undefinedTable)
      throw new Error(
        `${name} no longer exists under that name: it was dropped or moved (by retention, or by hand) while the hold waited for it. Nothing was written.`,
      );
    if (sqlState(error) === SQLSTATE.lockNotAvailable)
      throw new Error(
        `${name} was locked for over ${HOLD_LOCK_WAIT} (retention may be dropping it, or another job has it in ACCESS EXCLUSIVE: VACUUM FULL, an ALTER TABLE...): nothing was written. Run the same command again in a moment.`,
      );
    throw error;
  }
}

async function lockAndStore(
  db: Kysely<DB>,
  hold: { partition: Relation; until: Date; reason: string },
  name: string,
): Promise<string | undefined> {
  return await db.transaction().execute(async (trx) => {
    await sql`SET LOCAL lock_timeout = ${sql.lit(HOLD_LOCK_WAIT)}; LOCK TABLE ONLY ${relationSql(hold.partition)} IN ACCESS SHARE MODE`.execute(
      trx,
    );
    await trx
      .insertInto("telemetry_jobs.retention_holds")
      .values({ partition_name: name, hold_until: hold.until, reason: hold.reason })
      .onConflict((oc) =>
        oc.column("partition_name").doUpdateSet({ hold_until: hold.until, reason: hold.reason }),
      )
      .execute();
    return await removalUnderWay(trx, hold.partition);
  });
}

/** What a removal already did to `partition`, for the hold's note; undefined: nothing. */
async function removalUnderWay(db: Kysely<DB>, partition: Relation): Promise<string | undefined> {
  const r = await sql<{ partition: boolean; pending: boolean; comment: string | null }>`
    SELECT c.relispartition AS partition, coalesce(bool_or(i.inhdetachpending), false) AS pending,
           pg_catalog.obj_description(c.oid, 'pg_class') AS comment
      FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
     WHERE c.oid = ${relationOidSql(partition)}
     GROUP BY c.oid, c.relispartition`.execute(db);
  const row = r.rows[0];
  const mark = parseRemovalMark(row?.comment ?? "");
  if (!row || !mark) return undefined;
  const range = mark.range && rangeText(mark.range);
  const putBack = `ALTER TABLE <its table> ATTACH PARTITION ${displayRelation(partition)} FOR VALUES FROM ... TO ...${range ? ` (its range: ${range})` : ""}`;
  if (!row.partition)
    return `retention had already detached it (its comment marks a removal under way); the hold keeps it from being dropped. To put its rows back in the table: ${putBack}`;
  if (row.pending)
    return `retention is detaching it (DETACH CONCURRENTLY pending); the hold keeps it from being dropped, but it leaves the table. To put its rows back once it is detached: ${putBack}`;
  return `retention has begun removing it (its comment marks a removal under way); the hold keeps it from being dropped, but a detach already checked may still take it out of the table. If it does: ${putBack}`;
}

export async function releaseHold(db: Kysely<DB>, partition: string): Promise<boolean> {
  const r = await db
    .deleteFrom("telemetry_jobs.retention_holds")
    .where("partition_name", "=", partition)
    .executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/** A table the policy manages: its parts, and the policy's name for it (retention's markers use it). */
export interface ManagedTable {
  readonly relation: Relation;
  readonly table: string;
}

/**
 * Why a hold on `partition` would protect nothing, or undefined when retention can act on it: a
 * partition of one of the managed tables, or a table retention took out of one (its comment says
 * "telemetry-jobs retention: removing from / detached from / archived from <table>"): a killed run's
 * leftover that the next run would finish removing, or a detached or archived partition being
 * recovered. A typo would otherwise be stored as a hold on nothing while retention drops the
 * partition the operator meant to keep. The message names the closest partition when there is one.
 */
export async function holdTargetProblem(
  db: Kysely<DB>,
  partition: Relation,
  managed: readonly ManagedTable[],
): Promise<string | undefined> {
  const r = await sql<{ schema: string; name: string; parent_schema: string; parent_name: string }>`
    SELECT cn.nspname AS schema, c.relname AS name, pn.nspname AS parent_schema, p.relname AS parent_name
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
      JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
      JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
     WHERE p.relkind = 'p'`.execute(db);
  const isManaged = (row: { parent_schema: string; parent_name: string }) =>
    managed.some((m) => sameRelation(m.relation, { schema: row.parent_schema, name: row.parent_name }));
  const children = r.rows.filter(isManaged);
  if (children.some((c) => sameRelation(c, partition))) return undefined;
  const takenOut = await retentionMarkerParent(db, partition);
  if (takenOut !== undefined && managed.some((m) => m.table === takenOut)) return undefined;
  const shown = displayRelation(partition);
  const other = r.rows.find((c) => sameRelation(c, partition));
  if (other)
    return `${shown} is a partition of ${displayRelation({ schema: other.parent_schema, name: other.parent_name })}, which is not in the policy: retention never touches it, so a hold would protect nothing`;
  const closest = closestName(
    shown,
    children.map((c) => displayRelation(c)),
  );
  return `${shown} is not a partition of any table in the policy, nor one retention took out of it${closest ? `; did you mean ${closest}?` : ""} (\`telemetry-jobs status\` lists the partitions of each managed table)`;
}

/** The managed table named by retention's comment on a table it took out (see removal-mark.ts). */
async function retentionMarkerParent(db: Kysely<DB>, table: Relation): Promise<string | undefined> {
  const r = await sql<{ comment: string | null }>`
    SELECT pg_catalog.obj_description(c.oid, 'pg_class') AS comment
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${table.schema} AND c.relname = ${table.name} AND NOT c.relispartition`.execute(db);
  return markedParent(r.rows[0]?.comment ?? "");
}

/** The candidate nearest to `wanted` by edit distance, when it is near enough to be a typo. */
function closestName(wanted: string, candidates: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of candidates) {
    const distance = editDistance(wanted, name);
    if (!best || distance < best.distance) best = { name, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(wanted.length / 5)) ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = current;
  }
  return previous[b.length]!;
}
