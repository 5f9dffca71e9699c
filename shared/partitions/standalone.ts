// Making a partition-to-be: the checks on whatever already has the planned name, and step 1, the
// standalone table built LIKE the parent and carrying a CHECK constraint equal to its bound (made
// or, after a killed run, rebuilt). Also the DEFAULT partition, made the same way and attached.
import { type Kysely, type RawBuilder, sql } from "kysely";
import { type LockRetryOptions, withLockRetry } from "../db/lock-retry.ts";
import { displayRelation, MAX_IDENTIFIER_BYTES, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { ActionOutcome, ApplyContext } from "./apply.ts";
import { parsePartitionBound } from "./bounds.ts";
import { DEFAULT_PARTITION_MARKER } from "./naming.ts";
import type { PartitionAction } from "./plan.ts";

/** Name of the CHECK constraint that marks a standalone table as our partition-to-be. */
export const BOUND_CONSTRAINT = "telemetry_jobs_bound";

export type CreateAction = Extract<PartitionAction, { kind: "create_partition" }>;

/** The child being made, as SQL pieces shared by its steps. */
export interface NewChild {
  readonly child: Relation;
  readonly childText: string;
  readonly col: RawBuilder<unknown>;
  readonly from: RawBuilder<unknown>;
  readonly to: RawBuilder<unknown>;
  readonly retry: Omit<LockRetryOptions, "what">;
}

export interface RelationState {
  exists: boolean;
  isPartition: boolean;
  /** When a partition: the oid and name of its parent, and its bound as PostgreSQL prints it. */
  parentOid: number | null;
  parentName: string | null;
  partitionBound: string | null;
  hasBoundConstraint: boolean;
  boundConstraintDef: string | null;
  comment: string | null;
}

export async function relationState(db: Kysely<DB>, rel: Relation): Promise<RelationState> {
  const r = await sql<{
    relispartition: boolean;
    parent_oid: number | null;
    parent_schema: string | null;
    parent_name: string | null;
    bound: string | null;
    def: string | null;
    comment: string | null;
  }>`
    SELECT c.relispartition, i.inhparent::int AS parent_oid, pn.nspname::text AS parent_schema,
           p.relname::text AS parent_name, pg_get_expr(c.relpartbound, c.oid) AS bound,
           (SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k
             WHERE k.conrelid = c.oid AND k.conname = ${BOUND_CONSTRAINT}) AS def,
           obj_description(c.oid, 'pg_class') AS comment
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND c.relispartition
      LEFT JOIN pg_class p ON p.oid = i.inhparent
      LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
     WHERE n.nspname = ${rel.schema} AND c.relname = ${rel.name}`.execute(db);
  const row = r.rows[0];
  if (!row)
    return {
      exists: false,
      isPartition: false,
      parentOid: null,
      parentName: null,
      partitionBound: null,
      hasBoundConstraint: false,
      boundConstraintDef: null,
      comment: null,
    };
  return {
    exists: true,
    isPartition: row.relispartition,
    parentOid: row.parent_oid,
    parentName:
      row.parent_schema !== null && row.parent_name !== null
        ? displayRelation({ schema: row.parent_schema, name: row.parent_name })
        : null,
    partitionBound: row.bound,
    hasBoundConstraint: row.def !== null,
    boundConstraintDef: row.def,
    comment: row.comment,
  };
}

/** True when `bound` (as pg_get_expr prints it) is exactly FROM (from) TO (to). */
export function isPlannedBound(bound: string | null, from: Date, to: Date): boolean {
  if (bound === null) return false;
  const parsed = parsePartitionBound(bound);
  return (
    parsed.kind === "range" &&
    parsed.from instanceof Date &&
    parsed.to instanceof Date &&
    parsed.from.getTime() === from.getTime() &&
    parsed.to.getTime() === to.getTime()
  );
}

/** The column list of a table made to become `parent`'s partition. */
export function likeParent(parent: Relation) {
  // Not INCLUDING IDENTITY: the child must share the parent's sequence, not get its own.
  return sql`(LIKE ${relationSql(parent)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES
    INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED INCLUDING STATISTICS)`;
}

/** The CHECK constraint equal to the child's bound, as an ADD clause of ALTER TABLE. */
export function boundCheck({ col, from, to }: NewChild) {
  return sql`CONSTRAINT ${sql.id(BOUND_CONSTRAINT)} CHECK (${col} IS NOT NULL AND ${col} >= ${from} AND ${col} < ${to})`;
}

/**
 * Refuses (throws) whatever must not be touched under the planned name; true when the planned
 * partition is already attached with exactly its bound; false when step 1 is still to do.
 */
export async function alreadyMade(
  ctx: ApplyContext,
  action: CreateAction,
  { child, childText }: NewChild,
): Promise<{ done: true } | { done: false; exists: boolean }> {
  const { db, catalog } = ctx;
  const parent = catalog.table;
  if (Buffer.byteLength(action.partition) > MAX_IDENTIFIER_BYTES) {
    // PostgreSQL would silently truncate it, and the truncated name would then stand for several
    // intervals. The policy check refuses such templates; this guards every other way in.
    throw new Error(
      `${childText} is longer than ${MAX_IDENTIFIER_BYTES} bytes and PostgreSQL would truncate it; set a shorter "naming" template. Nothing was changed.`,
    );
  }
  const before = await relationState(db, child);
  if (before.isPartition) {
    // Done only when it is this table's partition with exactly the planned bound.
    if (before.parentOid === catalog.oid && isPlannedBound(before.partitionBound, action.from, action.to)) {
      return { done: true };
    }
    throw new Error(
      `${childText} already exists as a partition of ${before.parentName ?? "another table"} (${before.partitionBound}), ` +
        `not as the partition of ${displayRelation(parent)} for [${action.from.toISOString()}, ${action.to.toISOString()}); ` +
        "rename it or change the naming template. Nothing was changed.",
    );
  }
  if (before.exists && !before.hasBoundConstraint) {
    throw new Error(
      `${childText} already exists as a plain table that telemetry-jobs did not create (no ${BOUND_CONSTRAINT} constraint); ` +
        "rename or drop it, or change the naming template. Nothing was changed.",
    );
  }

  if (before.exists && before.comment?.startsWith("telemetry-jobs retention:")) {
    // Retention detached this table (its comment says so). Re-attaching it would put expired
    // data back; docs/runbooks/retention.md says how to restore it on purpose.
    throw new Error(
      `${childText} was detached by retention ("${before.comment}"); it is not re-attached automatically. ` +
        "To restore it, follow docs/runbooks/retention.md; to make a new empty partition, rename or drop it first. Nothing was changed.",
    );
  }
  return { done: false, exists: before.exists };
}

/** Step 1; returns how many attempts had to be retried for a lock. */
export async function buildStandalone(
  ctx: ApplyContext,
  action: CreateAction,
  spec: NewChild,
  exists: boolean,
): Promise<number> {
  const { db, catalog, log } = ctx;
  const parent = catalog.table;
  const { child, childText, retry } = spec;
  // Step 1: the standalone table and its bound constraint, atomically: after a crash, either
  // nothing exists or a table that carries our constraint does.
  let lockRetries = 0;
  if (!exists) {
    const made = await withLockRetry(db, { ...retry, what: `create ${childText}` }, async (trx) => {
      await sql`CREATE TABLE ${relationSql(child)} ${likeParent(parent)}`.execute(trx);
      await sql`ALTER TABLE ${relationSql(child)} ADD ${boundCheck(spec)}`.execute(trx);
    });
    lockRetries += made.attempts - 1;
    log.debug("standalone table created", { partition: action.partition });
  } else {
    // A killed run's leftover. It is empty by construction (rows only move inside the attach
    // transaction), but it has the parent's columns as they were then: rebuild it from the parent
    // as it is now, or an application migration in between (a new column) would make ATTACH refuse
    // it on every later run.
    log.info("resuming an interrupted creation: rebuilding the leftover standalone table", {
      partition: action.partition,
    });
    const rebuilt = await withLockRetry(db, { ...retry, what: `rebuild ${childText}` }, async (trx) => {
      // Not FROM ONLY: rows in partitions or inheritance children of it count too.
      const has = await sql<{ has: boolean }>`
        SELECT EXISTS (SELECT 1 FROM ${relationSql(child)}) AS has`.execute(trx);
      if (has.rows[0]?.has) {
        throw new Error(
          `${childText} is a standalone table left by an interrupted creation, but it holds rows that telemetry-jobs did not put there; ` +
            "move them into the parent table and drop it (or rename it), then run again. Nothing was changed.",
        );
      }
      await sql`DROP TABLE ${relationSql(child)}`.execute(trx);
      await sql`CREATE TABLE ${relationSql(child)} ${likeParent(parent)}`.execute(trx);
      await sql`ALTER TABLE ${relationSql(child)} ADD ${boundCheck(spec)}`.execute(trx);
    });
    lockRetries += rebuilt.attempts - 1;
  }
  return lockRetries;
}

export async function createDefaultPartition(ctx: ApplyContext, name: string): Promise<ActionOutcome> {
  const { db, policy, catalog, log } = ctx;
  const schema = catalog.table.schema;
  const parent = catalog.table;
  const rel: Relation = { schema, name };
  const relText = displayRelation(rel);
  const before = await relationState(db, rel);
  if (before.isPartition) {
    if (before.parentOid === catalog.oid && before.partitionBound === "DEFAULT") {
      return { rows: 0, lockRetries: 0, alreadyDone: true };
    }
    throw new Error(
      `${relText} already exists as a partition of ${before.parentName ?? "another table"} (${before.partitionBound}); rename it or turn defaultPartition off. Nothing was changed.`,
    );
  }
  if (before.exists && before.comment !== DEFAULT_PARTITION_MARKER) {
    throw new Error(
      `${relText} already exists and was not created by telemetry-jobs; rename it or turn defaultPartition off`,
    );
  }
  const { attempts } = await withLockRetry(
    db,
    {
      lockTimeoutMs: policy.lockTimeoutMs,
      budgetMs: policy.retryBudgetMs,
      what: `create DEFAULT partition ${relText}`,
      contended: parent,
      onRetry: (i) => log.warn("lock not available, retrying", { partition: name, ...i }),
    },
    async (trx) => {
      if (!before.exists) {
        await sql`CREATE TABLE ${relationSql(rel)} ${likeParent(parent)}`.execute(trx);
        await sql`COMMENT ON TABLE ${relationSql(rel)} IS ${sql.lit(DEFAULT_PARTITION_MARKER)}`.execute(trx);
      }
      await sql`ALTER TABLE ${relationSql(parent)} ATTACH PARTITION ${relationSql(rel)} DEFAULT`.execute(trx);
    },
  );
  return { rows: 0, lockRetries: attempts - 1, alreadyDone: false };
}
