// The checks made inside every transaction that removes a partition, once it holds the locks.
//
// A run acts on names it read earlier, in its plan, and removes by name. Meanwhile an operator may
// give a name to another table (a rename and a rebuild, two partitions' names swapped), or place a
// hold on a partition. Once a table is locked no name of its can change, so each transaction that
// marks, detaches or removes a partition first locks it and then checks:
// - an attached partition (checkStillPlanned): it is still a partition of the table with the range
//   the plan read, so the name still means an expired partition;
// - a detached table to finish (checkStillMarked): it is not a partition and carries a removal mark
//   for this table, which only a check like the one above ever writes;
// - either: no hold on it has been placed (`telemetry-jobs hold` locks the table it holds, so its
//   hold is either committed before this lock, and seen here, or waits until the removal is over).
// A failed check removes nothing (the transaction rolls back) and names what changed; the next run
// plans again from the catalog and the holds as they are then.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { displayRelation, type Relation, relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { parsePartitionBound } from "../partitions/bounds.ts";
import type { RetentionContext } from "./context.ts";
import { expiryRange } from "./expiry.ts";
import { parseRemovalMark } from "./removal-mark.ts";
import type { RemovePartition } from "./remove.ts";

/** The partition an action removes, and the range the plan read for it. */
type Planned = Pick<RemovePartition, "partition" | "from" | "to">;

/**
 * Throws unless each action's partition is still a partition of the table with its planned range
 * and is not held. Its locks must be held already (or the caller accepts the window until its
 * statement takes them). `detachPending`: a partition whose DETACH CONCURRENTLY an earlier attempt
 * left pending still counts as one (the retry finishes it).
 */
export async function checkStillPlanned(
  ctx: RetentionContext,
  trx: Kysely<DB>,
  actions: readonly Planned[],
  { detachPending = false }: { detachPending?: boolean } = {},
): Promise<number[]> {
  const table = policyTable(ctx.policy);
  const names = actions.map((a) => displayRelation(a.partition));
  // One round trip: the planned partitions (only those: pg_get_expr locks each relation it reads,
  // and a sibling's lock must not be waited for) and the holds on them.
  const r = await sql<{
    oid: number;
    schema: string;
    name: string;
    bound: string | null;
    hold: string | null;
  }>`
    SELECT c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name,
           pg_get_expr(c.relpartbound, c.oid) AS bound, NULL::text AS hold
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = ${relationOidSql(table)} AND (${detachPending} OR NOT i.inhdetachpending)
       AND (n.nspname, c.relname) IN (${sql.join(actions.map((a) => sql`(${a.partition.schema}, ${a.partition.name})`))})
    UNION ALL
    SELECT NULL, ${holdsOn(ctx, names)}`.execute(trx);
  const children = r.rows.filter((c) => c.hold === null);
  const bounds = new Map(children.map((c) => [displayRelation(c), c.bound ?? undefined]));
  const changed = actions.filter((a) => !holdsPlannedRange(bounds.get(displayRelation(a.partition)), a));
  if (changed.length > 0)
    throw new Error(
      `${changed.map((a) => displayRelation(a.partition)).join(", ")} ${changed.length === 1 ? "is" : "are"} no longer the partition${changed.length === 1 ? "" : "s"} of ${displayRelation(table)} this run planned to remove (renamed, replaced or detached meanwhile): nothing was removed. The next run plans again from the catalog as it is then.`,
    );
  refuseHeld(r.rows, detachPending ? "attached (or pending detach)" : "attached");
  const oids = new Map(children.map((c) => [displayRelation(c), Number(c.oid)]));
  return names.map((n) => oids.get(n)!);
}

/**
 * Throws unless each table is detached (not a partition), carries a removal mark for this policy's
 * table, and is not held. The tables must be locked already.
 */
export async function checkStillMarked(
  ctx: RetentionContext,
  trx: Kysely<DB>,
  tables: readonly Relation[],
): Promise<void> {
  const names = tables.map((t) => displayRelation(t));
  const r = await sql<{ schema: string; name: string; mark: string | null; hold: string | null }>`
    SELECT n.nspname::text AS schema, c.relname::text AS name,
           pg_catalog.obj_description(c.oid, 'pg_class') AS mark, NULL::text AS hold
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE (n.nspname, c.relname) IN (${sql.join(tables.map((t) => sql`(${t.schema}, ${t.name})`))})
       AND NOT c.relispartition
    UNION ALL
    SELECT ${holdsOn(ctx, names)}`.execute(trx);
  const marked = new Set(
    r.rows
      .filter((t) => t.hold === null && parseRemovalMark(t.mark ?? "")?.parent === ctx.policy.table)
      .map((t) => displayRelation(t)),
  );
  const unmarked = names.filter((n) => !marked.has(n));
  if (unmarked.length > 0)
    throw new Error(
      `${unmarked.join(", ")} ${unmarked.length === 1 ? "does" : "do"} not carry this run's removal mark for ${ctx.policy.table} (renamed, replaced or attached again meanwhile): nothing was finished. Whatever now has ${unmarked.length === 1 ? "that name" : "those names"} is not this run's; the next run finishes only tables that carry the mark.`,
    );
  refuseHeld(r.rows, "detached");
}

/**
 * The active holds on `names`, as the last four columns of a row of the checks' unions: a NULL
 * schema, the held name, a NULL, and `hold` (its description).
 */
function holdsOn(ctx: RetentionContext, names: readonly string[]) {
  return sql`NULL, h.partition_name, NULL,
           'held until ' || to_char(h.hold_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
             || ' by ' || h.created_by || ': ' || h.reason
      FROM telemetry_jobs.retention_holds h
     WHERE h.partition_name IN (${sql.join(names)}) AND h.hold_until > ${ctx.now}`;
}

function refuseHeld(rows: readonly { name: string; hold: string | null }[], state: string): void {
  const held = rows.filter((r) => r.hold !== null);
  if (held.length === 0) return;
  throw new Error(
    `${held.map((h) => `${h.name} (${h.hold})`).join("; ")}: held while this run was removing ${held.length === 1 ? "it" : "them"}. Nothing was removed in this step; ${held.length === 1 ? "it stays" : "they stay"} ${state} and the next run keeps ${held.length === 1 ? "it" : "them"} until the hold ends.`,
  );
}

/** Whether `bound` (pg_get_expr's text; undefined: not a partition) is the action's range. */
function holdsPlannedRange(bound: string | undefined, action: Planned): boolean {
  if (bound === undefined) return false;
  const range = expiryRange(parsePartitionBound(bound));
  if (!range || range.to !== action.to.getTime()) return false;
  return action.from === null ? !Number.isFinite(range.from) : range.from === action.from.getTime();
}
