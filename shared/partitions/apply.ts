// The partition executor: carries out one planned action against PostgreSQL.
//
// A child is built as a standalone table (LIKE the parent: columns, defaults, CHECK and NOT NULL
// constraints, indexes), given a CHECK constraint equal to its bound, and then ATTACHed, which needs
// only SHARE UPDATE EXCLUSIVE on the parent, so selects go on (and inserts too, when there is no
// DEFAULT partition; see step 2). CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE. The valid CHECK lets ATTACH skip the
// scan of the child. Rows of the new range that sit in DEFAULT are moved in the same transaction as
// the ATTACH, so they are never invisible and the ATTACH never fails on them (SQLSTATE 23514).
//
// Every step is idempotent: a run killed at any point leaves either nothing, or a standalone table
// carrying our bound constraint, which the next run recognises and finishes.
import { type Kysely, sql, type Transaction } from "kysely";
import type { TablePolicy } from "../config/policy.ts";
import { withLockRetry } from "../db/lock-retry.ts";
import {
  columnSql,
  displayRelation,
  MAX_IDENTIFIER_BYTES,
  type Relation,
  relationOidSql,
  relationSql,
} from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE } from "../db/sqlstate.ts";
import type { Logger } from "../log/logger.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { boundLiteral, parsePartitionBound } from "./bounds.ts";
import type { TableCatalog } from "./catalog.ts";
import { DEFAULT_PARTITION_MARKER } from "./naming.ts";
import type { PartitionAction } from "./plan.ts";

/** Name of the CHECK constraint that marks a standalone table as our partition-to-be. */
export const BOUND_CONSTRAINT = "telemetry_jobs_bound";

export interface ApplyContext {
  db: Kysely<DB>;
  policy: TablePolicy;
  catalog: TableCatalog;
  log: Logger;
  /** The run's logical now: whether a range is still in the future decides the parent's lock. */
  now: Date;
  signal?: AbortSignal;
}

export interface ActionOutcome {
  /** Rows moved out of DEFAULT into the new child. */
  rows: number;
  /** Transactions that had to be retried because a lock was not available within lock_timeout. */
  lockRetries: number;
  /** True when the object already existed in its final state (a concurrent or earlier run made it). */
  alreadyDone: boolean;
}

export async function applyPartitionAction(
  ctx: ApplyContext,
  action: PartitionAction,
): Promise<ActionOutcome> {
  switch (action.kind) {
    case "create_partition":
      return await createPartition(ctx, action);
    case "create_default_partition":
      return await createDefaultPartition(ctx, action.partition);
  }
}

interface RelationState {
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

async function relationState(db: Kysely<DB>, rel: Relation): Promise<RelationState> {
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
function isPlannedBound(bound: string | null, from: Date, to: Date): boolean {
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

/** How long the attach transaction may queue for the parent lock while writers queue behind it. */
export const PARENT_LOCK_WAIT_MS = 200;

function likeParent(parent: Relation) {
  // Not INCLUDING IDENTITY: the child must share the parent's sequence, not get its own.
  return sql`(LIKE ${relationSql(parent)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES
    INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED INCLUDING STATISTICS)`;
}

async function createPartition(
  ctx: ApplyContext,
  action: Extract<PartitionAction, { kind: "create_partition" }>,
): Promise<ActionOutcome> {
  const { db, policy, catalog, log } = ctx;
  const schema = catalog.table.schema;
  const parent = catalog.table;
  const child: Relation = { schema, name: action.partition };
  const childText = displayRelation(child);
  const col = columnSql(catalog.keyColumn);
  const from = sql.lit(boundLiteral(action.from, catalog.keyType));
  const to = sql.lit(boundLiteral(action.to, catalog.keyType));
  const retry = {
    lockTimeoutMs: policy.lockTimeoutMs,
    budgetMs: policy.retryBudgetMs,
    contended: parent,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    onRetry: ({ attempt, waitMs, error }: { attempt: number; waitMs: number; error: unknown }) =>
      log.warn("lock not available, retrying", { partition: action.partition, attempt, waitMs, error }),
  };

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
      return { rows: 0, lockRetries: 0, alreadyDone: true };
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

  // Step 1: the standalone table and its bound constraint, atomically: after a crash, either
  // nothing exists or a table that carries our constraint does.
  let lockRetries = 0;
  if (!before.exists) {
    const made = await withLockRetry(db, { ...retry, what: `create ${childText}` }, async (trx) => {
      await sql`CREATE TABLE ${relationSql(child)} ${likeParent(parent)}`.execute(trx);
      await sql`ALTER TABLE ${relationSql(child)} ADD CONSTRAINT ${sql.id(BOUND_CONSTRAINT)}
        CHECK (${col} IS NOT NULL AND ${col} >= ${from} AND ${col} < ${to})`.execute(trx);
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
      const has = await sql<{ has: boolean }>`
        SELECT EXISTS (SELECT 1 FROM ONLY ${relationSql(child)}) AS has`.execute(trx);
      if (has.rows[0]?.has) {
        throw new Error(
          `${childText} is a standalone table left by an interrupted creation, but it holds rows that telemetry-jobs did not put there; ` +
            "move them into the parent table and drop it (or rename it), then run again. Nothing was changed.",
        );
      }
      await sql`DROP TABLE ${relationSql(child)}`.execute(trx);
      await sql`CREATE TABLE ${relationSql(child)} ${likeParent(parent)}`.execute(trx);
      await sql`ALTER TABLE ${relationSql(child)} ADD CONSTRAINT ${sql.id(BOUND_CONSTRAINT)}
        CHECK (${col} IS NOT NULL AND ${col} >= ${from} AND ${col} < ${to})`.execute(trx);
    });
    lockRetries += rebuilt.attempts - 1;
  }
  await pauseAtFaultPoint("after-create-table", log);

  // Step 2: move DEFAULT's rows of this range and attach, in one transaction.
  //
  // With a DEFAULT partition, an INSERT that has already routed its row to DEFAULT but waits for
  // DEFAULT's lock while we attach would, once we commit, fail with "new row for relation ... violates
  // partition constraint" (PostgreSQL rechecks DEFAULT's constraint because of concurrent attaches;
  // our locking test hit exactly this). So in that case we also hold SHARE ROW EXCLUSIVE on the
  // parent for this short transaction: writers wait for it, and no insert fails.
  // Lock order, chosen by the benchmark:
  //   1. ACCESS EXCLUSIVE on DEFAULT, waiting up to lock_timeout: only DEFAULT's readers and rows
  //      routed to DEFAULT wait for us, never ordinary inserts. (Taking the parent first and then
  //      waiting for a long reader of DEFAULT made every insert wait the whole lock_timeout; taking
  //      DEFAULT with NOWAIT instead starved the attach under a steady whole-table reader.)
  //   2. SHARE ROW EXCLUSIVE on the parent with a short wait (PARENT_LOCK_WAIT_MS): inserts queue
  //      behind us only that long. An insert routed to DEFAULT holds the parent and waits for DEFAULT:
  //      our short wait times out long before deadlock_timeout, we roll back, and it goes on.
  // The parent lock, by case (parentLockFor):
  // - Rows move: ACCESS EXCLUSIVE, so that readers wait too. A
  // READ COMMITTED statement plans with the partition list it sees when it locks the parent; one
  // that locked the parent before us and then waited for DEFAULT would, after our commit, read
  // DEFAULT without the moved rows and not read the new partition at all: rows that exist would be
  // missing from its answer (a rollup that read them so would keep an empty hour for good). Under
  // ACCESS EXCLUSIVE such a statement cannot be half-way: either it holds the parent and we time
  // out and retry after it, or it waits for our commit and plans with the new partition. Every
  // attempt makes new reads and writes queue behind it for up to PARENT_LOCK_WAIT_MS, so it is not
  // made at all while a transaction that has held the parent longer than that is still open (an
  // idle-in-transaction session, a long report): we back off instead, without joining the queue.
  // - Nothing moves and the range starts at least FUTURE_MARGIN_MS after both the run's now and the
  //   server's clock (premaking): SHARE UPDATE EXCLUSIVE, ATTACH's own lock, which writers do not
  //   notice. ATTACH still scans all of DEFAULT to prove the range absent, but only under DEFAULT's
  //   lock: ordinary inserts no longer wait for that scan, however many rows DEFAULT keeps (rows
  //   dated years ahead stay there by design). The price: an insert of a row dated in that range,
  //   routed to DEFAULT during the scan, fails after our commit ("violates partition constraint")
  //   instead of waiting. The margin keeps that to device clocks more than a day ahead (a device
  //   set to the wrong time zone is at most 14 hours off); the application sees an error, no row
  //   is lost silently.
  // - Otherwise (a range that starts within the margin, where inserts are likely): SHARE ROW
  //   EXCLUSIVE: writers wait for the scan, none fails.
  // Without a DEFAULT the attach needs only SHARE UPDATE EXCLUSIVE, which writers do not notice.
  const def = catalog.defaultPartition;
  const attached = await withLockRetry(db, { ...retry, what: `attach ${childText}` }, async (trx) => {
    if (def) {
      await sql`LOCK TABLE ${relationSql(def)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
      const probe = await sql<{ any: boolean; server_now: Date }>`
        SELECT EXISTS (SELECT 1 FROM ONLY ${relationSql(def)} WHERE ${col} >= ${from} AND ${col} < ${to}) AS any,
               clock_timestamp() AS server_now`.execute(trx);
      const rowsMove = probe.rows[0]?.any === true;
      const latestNow = Math.max(ctx.now.getTime(), probe.rows[0]!.server_now.getTime());
      const parentMode = parentLockFor(rowsMove, action.from, latestNow);
      const wait = Math.min(policy.lockTimeoutMs, PARENT_LOCK_WAIT_MS);
      if (rowsMove) await refuseWhileLongHoldersOf(trx, parent, wait);
      await sql`SELECT set_config('lock_timeout', ${`${wait}ms`}, true)`.execute(trx);
      await sql`LOCK TABLE ${relationSql(parent)} IN ${parentMode} MODE`.execute(trx);
      await sql`SELECT set_config('lock_timeout', ${`${policy.lockTimeoutMs}ms`}, true)`.execute(trx);
    } else {
      await sql`LOCK TABLE ${relationSql(parent)} IN SHARE UPDATE EXCLUSIVE MODE`.execute(trx);
    }
    const moved = def ? await moveFromDefault(trx, ctx, child, from, to) : 0;
    await pauseAtFaultPoint("after-move-rows", log);
    await sql`ALTER TABLE ${relationSql(parent)} ATTACH PARTITION ${relationSql(child)}
      FOR VALUES FROM (${from}) TO (${to})`.execute(trx);
    return moved;
  });
  lockRetries += attached.attempts - 1;
  return { rows: attached.result, lockRetries, alreadyDone: false };
}

/** How far ahead of now a range must start for premaking it to leave inserts alone (see above). */
export const FUTURE_MARGIN_MS = 86_400_000;

/** The parent's lock mode for an attach beside a DEFAULT partition (the cases are explained above). */
function parentLockFor(rowsMove: boolean, from: Date, latestNowMs: number) {
  if (rowsMove) return sql`ACCESS EXCLUSIVE`;
  return from.getTime() >= latestNowMs + FUTURE_MARGIN_MS
    ? sql`SHARE UPDATE EXCLUSIVE`
    : sql`SHARE ROW EXCLUSIVE`;
}

/**
 * Throws a retryable "lock not available" (the retry loop backs off) while another transaction
 * that has been open longer than `waitMs` holds any lock on `relation`: our ACCESS EXCLUSIVE request
 * would only time out after making every new reader and writer queue behind it.
 */
async function refuseWhileLongHoldersOf(trx: Transaction<DB>, relation: Relation, waitMs: number) {
  const r = await sql<{ pid: number; mode: string; state: string | null }>`
    SELECT l.pid, l.mode, a.state
      FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = ${relationOidSql(relation)} AND l.granted
       AND l.pid <> pg_backend_pid()
       AND a.xact_start < clock_timestamp() - make_interval(secs => ${waitMs / 1000})
     LIMIT 1`.execute(trx);
  const holder = r.rows[0];
  if (!holder) return;
  throw Object.assign(
    new Error(
      `${displayRelation(relation)} is held by pid ${holder.pid} (${holder.mode}, ${holder.state ?? "?"}) in a transaction older than ${waitMs} ms; not queueing for ACCESS EXCLUSIVE behind it`,
    ),
    { code: SQLSTATE.lockNotAvailable },
  );
}

/**
 * Moves the DEFAULT partition's rows of [from, to) into `child`. The caller holds ACCESS EXCLUSIVE
 * on DEFAULT (the ATTACH needs it anyway), so no row of that range can arrive in DEFAULT between the
 * move and the ATTACH. DELETE ... RETURNING feeds the INSERT: each row is moved exactly once.
 */
async function moveFromDefault(
  trx: Transaction<DB>,
  ctx: ApplyContext,
  child: Relation,
  from: ReturnType<typeof sql.lit>,
  to: ReturnType<typeof sql.lit>,
): Promise<number> {
  const def = ctx.catalog.defaultPartition!;
  const defaultRel = relationSql(def);
  const col = columnSql(ctx.catalog.keyColumn);
  // The columns as they are now, under our lock on the parent (which keeps ALTER TABLE out), not as
  // the catalog read at the start of the run saw them: a column the application added since would
  // otherwise be left out of the copy and take its default in every moved row.
  const current = await sql<{ name: string }>`
    SELECT attname::text AS name FROM pg_catalog.pg_attribute
     WHERE attrelid = ${ctx.catalog.oid} AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
     ORDER BY attnum`.execute(trx);
  const cols = sql.join(current.rows.map((c) => columnSql(c.name)));
  const r = await sql`
    WITH moved AS (
      DELETE FROM ${defaultRel} WHERE ${col} >= ${from} AND ${col} < ${to} RETURNING ${cols}
    )
    INSERT INTO ${relationSql(child)} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM moved`.execute(
    trx,
  );
  const rows = Number(r.numAffectedRows ?? 0n);
  if (rows > 0) ctx.log.info("moved rows out of the DEFAULT partition", { partition: child.name, rows });
  return rows;
}

async function createDefaultPartition(ctx: ApplyContext, name: string): Promise<ActionOutcome> {
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
