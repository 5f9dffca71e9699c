// Attaching a standalone table that already holds rows (a restore loads one) as a partition, with
// the library's own step 2 (apply.ts: DEFAULT's rows of the range moved in, ATTACH under
// lock_timeout, retried). Before it, the table is given the bound CHECK constraint and the
// parent's foreign keys NOT VALID (catalog changes, no scan), and they are validated: VALIDATE
// scans the rows under SHARE UPDATE EXCLUSIVE on that table only, so nothing else waits for the
// scan, and the valid constraints let the ATTACH skip its own checks of the rows while it holds
// the parent.
//
// Asked to (replaceEmpty), the table takes the place of an empty partition of exactly the range:
// the attach transaction then holds ACCESS EXCLUSIVE on the parent, detaches and drops the empty
// one, and attaches the table, so readers see the range empty or whole, never missing.
//
// The table keeps its name until the attach transaction renames it to the partition's, so a kill
// at any point leaves either the table (with no CHECK, a NOT VALID one or a valid one: each step
// below is redone or skipped as needed) or the attached partition. The CHECK stays on the
// partition afterwards, as on every partition the library makes: the same table, detached, can be
// attached again without a scan.
import { type Kysely, sql, type Transaction } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import {
  displayRelation,
  MAX_IDENTIFIER_BYTES,
  type Relation,
  relationOidSql,
  relationSql,
} from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type ActionOutcome, type ApplyContext, attachWithRows, newChildSpec } from "./apply.ts";
import { BOUND_CONSTRAINT, boundCheck, isPlannedBound, type NewChild, relationState } from "./standalone.ts";

export interface FilledTable {
  /** The standalone table holding the rows, in the parent's schema, with the parent's columns. */
  readonly table: Relation;
  /** The partition's name; the table is renamed to it in the attach transaction. */
  readonly partition: string;
  readonly from: Date;
  readonly to: Date;
  /** The partition's comment once attached (null: none). */
  readonly comment: string | null;
  /**
   * When the partition's name is an empty partition of the parent with exactly this range, detach
   * and drop it in the attach transaction (under ACCESS EXCLUSIVE on the parent) and attach the
   * table in its place; otherwise a taken name refuses.
   */
  readonly replaceEmpty?: boolean;
}

/** Attaches `filled.table` as the partition [from, to) of the parent (see the top of this file). */
export async function attachFilledTable(ctx: ApplyContext, filled: FilledTable): Promise<ActionOutcome> {
  const { catalog, log } = ctx;
  const { table, partition, from, to } = filled;
  if (table.schema !== catalog.table.schema)
    throw new Error(`${displayRelation(table)} is not in the schema of ${displayRelation(catalog.table)}`);
  if (Buffer.byteLength(partition) > MAX_IDENTIFIER_BYTES)
    throw new Error(
      `${partition} is longer than ${MAX_IDENTIFIER_BYTES} bytes; PostgreSQL would truncate it`,
    );
  const spec = newChildSpec(ctx, partition, from, to);
  const source = await relationState(ctx.db, table);
  if (!source.exists || source.isPartition)
    throw new Error(`${displayRelation(table)} is not a standalone table; nothing to attach`);
  const taken = table.name === partition ? undefined : await relationState(ctx.db, spec.child);
  const replacesEmpty =
    filled.replaceEmpty === true &&
    taken?.isPartition === true &&
    taken.parentOid === catalog.oid &&
    isPlannedBound(taken.partitionBound, from, to);
  if (taken?.exists && !replacesEmpty)
    throw new Error(`${spec.childText} already exists; ${displayRelation(table)} cannot take its name`);
  let lockRetries = await addNotValid(ctx, table, spec, source.hasBoundConstraint);
  await pauseAtFaultPoint("after-create-table", log, "not-valid");
  for (const name of [BOUND_CONSTRAINT, ...(await parentForeignKeys(ctx)).map((k) => k.name)])
    lockRetries += await validate(ctx, table, spec, name);
  await pauseAtFaultPoint("after-create-table", log, "validated");
  const renamed = { table, comment: filled.comment, replacesEmpty };
  const attached = await attachWithRows(ctx, from, spec, renamed);
  return { rows: attached.rows, lockRetries: lockRetries + attached.lockRetries, alreadyDone: false };
}

/**
 * The parent's foreign keys, their definitions with every name schema-qualified (the caller's
 * transaction has an empty search_path, or the names must not be used as SQL).
 */
async function parentForeignKeys(ctx: ApplyContext, db: Kysely<DB> | Transaction<DB> = ctx.db) {
  const r = await sql<{ name: string; def: string }>`
    SELECT k.conname::text AS name, pg_get_constraintdef(k.oid) AS def FROM pg_catalog.pg_constraint k
     WHERE k.conrelid = ${ctx.catalog.oid} AND k.contype = 'f' ORDER BY 1`.execute(db);
  return r.rows;
}

/**
 * In one transaction, the constraints the table lacks, NOT VALID (catalog changes, no scan): the
 * bound CHECK and the parent's foreign keys. ATTACH would otherwise create each foreign key on the
 * partition and check every row against the referenced table while it holds the parent; given a
 * valid equal one, it adopts it without a check.
 */
async function addNotValid(ctx: ApplyContext, table: Relation, spec: NewChild, hasBound: boolean) {
  const what = `add the bound CHECK and foreign keys to ${displayRelation(table)}, NOT VALID`;
  const added = await withLockRetry(ctx.db, { ...spec.retry, contended: table, what }, async (trx) => {
    if (!hasBound)
      await sql`ALTER TABLE ${relationSql(table)} ADD ${boundCheck(spec)} NOT VALID`.execute(trx);
    const present = await sql<{ name: string }>`
      SELECT conname::text AS name FROM pg_catalog.pg_constraint WHERE conrelid = ${relationOidSql(table)}`.execute(
      trx,
    );
    const have = new Set(present.rows.map((k) => k.name));
    await sql`SELECT set_config('search_path', '', true)`.execute(trx);
    for (const fk of await parentForeignKeys(ctx, trx)) {
      if (have.has(fk.name)) continue;
      const def = fk.def.replace(/ NOT VALID$/, "");
      await sql`ALTER TABLE ${relationSql(table)} ADD CONSTRAINT ${sql.id(fk.name)} ${sql.raw(def)} NOT VALID`.execute(
        trx,
      );
    }
  });
  return added.attempts - 1;
}

/**
 * VALIDATE one constraint (a no-op when already valid): a scan under SHARE UPDATE EXCLUSIVE on the
 * table (and ROW SHARE on a foreign key's referenced table), which no writer waits for. A row that
 * breaks it (outside the range, a NULL key, a missing referenced row) fails it, naming the
 * constraint, and nothing is attached.
 */
async function validate(ctx: ApplyContext, table: Relation, spec: NewChild, name: string): Promise<number> {
  const what = `validate ${name} on ${displayRelation(table)}`;
  const validated = await withLockRetry(ctx.db, { ...spec.retry, contended: table, what }, async (trx) => {
    await sql`ALTER TABLE ${relationSql(table)} VALIDATE CONSTRAINT ${sql.id(name)}`.execute(trx);
  });
  return validated.attempts - 1;
}
