// Adds rollup change-tracking (ingest_xid column and (ingest_xid, time) index) to an application's
// existing table while it is being written to. The plan comes from ingest-plan.ts; this file reads
// the catalog and carries the plan out, one action at a time, re-reading the catalog at the start of
// every run so that a run killed anywhere is finished by the next.
//
// Locks each step takes:
// - add_column / set_default: ACCESS EXCLUSIVE on the table (and, for a partitioned table, on every
//   partition) for one short catalog-only transaction. ADD COLUMN without a default and SET DEFAULT
//   afterwards rewrite nothing (a volatile default given in ADD COLUMN would rewrite every row); the
//   existing rows keep NULL, which rollups read as "older than any snapshot". Run under SET LOCAL
//   lock_timeout and retried (withLockRetry), so writers queue behind us for at most lock_timeout.
//   set_default on one partition (one attached later without the default) locks that partition only.
// - create_parent_index (CREATE INDEX ... ON ONLY): SHARE on the partitioned parent only (not on
//   its partitions), catalog only, for milliseconds; same lock_timeout and retries. SHARE conflicts
//   with inserts through the parent, so this too must not wait long.
// - build_index_concurrently / drop_invalid_index: SHARE UPDATE EXCLUSIVE on the table or partition,
//   which does not conflict with INSERT/UPDATE/DELETE. See runConcurrently for the timeout.
// - attach_index (ALTER INDEX ... ATTACH PARTITION): ACCESS SHARE on the parent and the partition,
//   SHARE UPDATE EXCLUSIVE on the parent index and ACCESS EXCLUSIVE on the partition's index (which
//   inserts into that partition need), catalog only; same lock_timeout and retries.
import { type Kysely, sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { displayRelation, quoteIdent, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import type { Logger } from "../log/logger.ts";
import type { AuditAction } from "../run/audit.ts";
import {
  describeIngestAction,
  INGEST_COLUMN,
  INGEST_DEFAULT,
  type IngestAction,
  type IngestDetachPendingFact,
  type IngestFacts,
  type IngestIndexFact,
  type IngestPartitionFact,
  ingestIndexName,
  planIngestTracking,
} from "./ingest-plan.ts";

export class AdoptionRefusedError extends Error {
  override readonly name = "AdoptionRefusedError";
}

export interface IngestAdoptionOptions {
  source: Relation;
  timeColumn: string;
  lockTimeoutMs: number;
  retryBudgetMs: number;
  dryRun: boolean;
  log: Logger;
  signal: AbortSignal;
  /** One audit row per action carried out (or failed); not called on dry runs. */
  record?: (action: Omit<AuditAction, "table">) => Promise<void>;
}

export interface IngestAdoptionResult {
  /** The planned actions, as the statements an operator would type. */
  planned: string[];
  /** Actions carried out by this run. */
  done: number;
  /** Column and a valid index are in place once this run ends. */
  complete: boolean;
}

interface IndexRow {
  table_oid: string;
  name: string;
  valid: boolean;
  partitioned: boolean;
  leading: boolean;
  exact: boolean;
  attached_to: string | null;
}

/**
 * What the catalog says about the table, its ingest_xid column, its partitions and their indexes.
 * Reads catalogs only: no lock on the table, so a session holding ACCESS EXCLUSIVE does not block it.
 * (pg_get_expr is given relation 0 so it does not open the table to name columns.)
 */
export async function readIngestFacts(
  db: Kysely<any>,
  source: Relation,
  timeColumn: string,
): Promise<IngestFacts> {
  const ourName = ingestIndexName(source.name);
  const base = await sql<{
    oid: string | null;
    relkind: string | null;
    time_exists: boolean;
    col_type: string | null;
    col_default: string | null;
    col_exists: boolean;
  }>`
    WITH t AS (SELECT ${relationOidSql(source)} AS oid)
    SELECT t.oid::text AS oid, c.relkind::text AS relkind,
           EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = t.oid AND a.attname = ${timeColumn} AND a.attnum > 0 AND NOT a.attisdropped) AS time_exists,
           col.attnum IS NOT NULL AS col_exists,
           pg_catalog.format_type(col.atttypid, col.atttypmod) AS col_type,
           (SELECT pg_catalog.pg_get_expr(d.adbin, 0) FROM pg_catalog.pg_attrdef d
             WHERE d.adrelid = t.oid AND d.adnum = col.attnum) AS col_default
      FROM t
      LEFT JOIN pg_catalog.pg_class c ON c.oid = t.oid
      LEFT JOIN pg_catalog.pg_attribute col
             ON col.attrelid = t.oid AND col.attname = ${INGEST_COLUMN} AND col.attnum > 0 AND NOT col.attisdropped`.execute(
    db,
  );
  const row = base.rows[0];
  const empty: IngestFacts = {
    table: source,
    timeColumn,
    relkind: undefined,
    timeColumnExists: false,
    column: null,
    indexes: [],
    indexNameTaken: false,
    partitions: [],
    detachPending: [],
  };
  if (!row?.oid || !row.relkind) return empty;

  // Each partition's own ingest_xid default (a row inserted directly into it takes that one), and
  // whether a DETACH ... CONCURRENTLY of it was interrupted (such a partition is left out).
  const all = await sql<{
    oid: string;
    schema: string;
    name: string;
    relkind: string;
    is_default: boolean;
    detach_pending: boolean;
    has_column: boolean;
    col_default: string | null;
    bound: string | null;
  }>`
    SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
           COALESCE(pt.partdefid = c.oid, false) AS is_default, i.inhdetachpending AS detach_pending,
           col.attnum IS NOT NULL AS has_column,
           (SELECT pg_catalog.pg_get_expr(d.adbin, 0) FROM pg_catalog.pg_attrdef d
             WHERE d.adrelid = c.oid AND d.adnum = col.attnum) AS col_default,
           pg_catalog.pg_get_expr(c.relpartbound, 0) AS bound
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = i.inhparent
      LEFT JOIN pg_catalog.pg_attribute col
             ON col.attrelid = c.oid AND col.attname = ${INGEST_COLUMN} AND col.attnum > 0 AND NOT col.attisdropped
     WHERE i.inhparent = ${row.oid}::oid
     ORDER BY n.nspname, c.relname`.execute(db);
  const parts = all.rows.filter((p) => !p.detach_pending);
  const detachPending: IngestDetachPendingFact[] = all.rows
    .filter((p) => p.detach_pending)
    .map((p) => ({ relation: { schema: p.schema, name: p.name }, hasColumn: p.has_column }));

  const oids = [row.oid, ...parts.map((p) => p.oid)];
  // For each index of the table and its partitions: usable for rollups (leading), exactly our shape
  // (exact; ATTACH demands identical definitions), and which partitioned index it is attached to.
  const indexes = await sql<IndexRow>`
    SELECT x.indrelid::text AS table_oid, ic.relname AS name,
           (x.indisvalid AND x.indisready) AS valid, ic.relkind = 'I' AS partitioned,
           lead.ok AS leading,
           (lead.ok AND x.indnatts = 2 AND NOT x.indisunique) AS exact,
           (SELECT p.relname FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class p ON p.oid = h.inhparent
             WHERE h.inhrelid = ic.oid) AS attached_to
      FROM pg_catalog.pg_index x
      JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam
      CROSS JOIN LATERAL (
        SELECT am.amname = 'btree' AND x.indpred IS NULL AND x.indexprs IS NULL AND x.indnkeyatts >= 2
               AND x.indkey[0] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = x.indrelid AND a.attname = ${INGEST_COLUMN} AND NOT a.attisdropped)
               AND x.indkey[1] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = x.indrelid AND a.attname = ${timeColumn} AND NOT a.attisdropped)
               AS ok) lead
     WHERE x.indrelid = ANY(${oids}::oid[])
     ORDER BY ic.relname`.execute(db);
  const byTable = new Map<string, IngestIndexFact[]>();
  for (const i of indexes.rows) {
    const list = byTable.get(i.table_oid) ?? [];
    list.push({
      name: i.name,
      valid: i.valid,
      partitioned: i.partitioned,
      leading: i.leading === true,
      exact: i.exact === true,
      attachedTo: i.attached_to,
    });
    byTable.set(i.table_oid, list);
  }

  const partitions: IngestPartitionFact[] = [];
  for (const p of parts) {
    const relation = { schema: p.schema, name: p.name };
    const own = byTable.get(p.oid) ?? [];
    const childName = ingestIndexName(p.name);
    partitions.push({
      relation,
      relkind: p.relkind,
      isDefault: p.is_default,
      indexes: own,
      childNameTaken: !own.some((i) => i.name === childName) && (await nameUsed(db, p.schema, childName)),
      columnDefault: p.col_default,
      bound: p.bound,
    });
  }
  const own = byTable.get(row.oid) ?? [];
  return {
    table: source,
    timeColumn,
    relkind: row.relkind,
    timeColumnExists: row.time_exists,
    column: row.col_exists ? { type: row.col_type ?? "", default: row.col_default } : null,
    indexes: own,
    indexNameTaken: !own.some((i) => i.name === ourName) && (await nameUsed(db, source.schema, ourName)),
    partitions,
    detachPending,
  };
}

async function nameUsed(db: Kysely<any>, schema: string, name: string): Promise<boolean> {
  const r = await sql<{
    used: boolean;
  }>`SELECT ${relationOidSql({ schema, name })} IS NOT NULL AS used`.execute(db);
  return r.rows[0]?.used === true;
}

/**
 * The table has an xid8 ingest_xid with its default, on every partition too (partitions being
 * detached aside), and a valid index usable by rollup-hourly.
 */
export async function ingestTrackingReady(
  db: Kysely<any>,
  source: Relation,
  timeColumn: string,
): Promise<boolean> {
  const f = await readIngestFacts(db, source, timeColumn);
  if (f.column?.type !== "xid8" || f.column.default !== INGEST_DEFAULT) return false;
  if (f.relkind === "r") return f.indexes.some((i) => i.valid && i.leading);
  if (f.relkind === "p")
    return (
      f.partitions.every((p) => p.columnDefault === INGEST_DEFAULT) &&
      f.indexes.some((i) => i.partitioned && i.valid && i.leading)
    );
  return false;
}

/**
 * Why adoption would refuse this table, if it would; reads the catalog only and changes nothing,
 * so a table can be refused before anything else is done to it.
 */
export async function ingestRefusal(
  db: Kysely<any>,
  source: Relation,
  timeColumn: string,
): Promise<string | undefined> {
  return planIngestTracking(await readIngestFacts(db, source, timeColumn)).refusal;
}

export async function adoptIngestTracking(
  db: Kysely<any>,
  o: IngestAdoptionOptions,
): Promise<IngestAdoptionResult> {
  const shown = displayRelation(o.source);
  const log = o.log.child({ table: shown });
  const facts = await readIngestFacts(db, o.source, o.timeColumn);
  const plan = planIngestTracking(facts);
  if (plan.refusal !== undefined) throw new AdoptionRefusedError(plan.refusal);
  if (plan.postponed !== undefined) {
    log.warn(plan.postponed, { detachPending: facts.detachPending.map((p) => displayRelation(p.relation)) });
    return { planned: [], done: 0, complete: false };
  }
  logDetachPending(log, facts);
  // Rollups may already have run on this table: rows that slipped past them are worth a warning.
  const adoptedBefore = facts.column?.default === INGEST_DEFAULT;
  const planned = plan.actions.map(describeIngestAction);
  if (o.dryRun) {
    for (const text of planned) log.info(`would run: ${text}`);
    if (planned.length === 0) log.info(`change tracking is already in place on ${shown}`);
    return { planned, done: 0, complete: planned.length === 0 };
  }
  if (planned.length === 0) {
    log.info(`change tracking is already in place on ${shown}`);
    return { planned, done: 0, complete: true };
  }

  let done = 0;
  let actions = plan.actions;
  // The table can change under us: a partition created after the catalog was read, but before the
  // parent index existed, has no index, and the parent stays invalid. So the catalog is read again
  // after the plan and whatever is still missing is done too, a few rounds at most (a table that
  // keeps changing is left to the next run).
  for (let round = 1; ; round++) {
    for (const action of actions) {
      if (o.signal.aborted) {
        log.notice(`stopping: ${done} of ${planned.length} actions done; the next run finishes the rest`);
        return { planned, done, complete: false };
      }
      await runAction(db, o, log, action);
      done++;
      if (action.kind === "set_default" && action.partitionOf && adoptedBefore) warnNullRows(log, action);
    }
    const after = planIngestTracking(await readIngestFacts(db, o.source, o.timeColumn));
    if (after.refusal !== undefined) throw new AdoptionRefusedError(after.refusal);
    if (after.postponed !== undefined) {
      log.warn(after.postponed);
      return { planned, done, complete: false };
    }
    if (after.actions.length === 0) return { planned, done, complete: true };
    const remaining = after.actions.map(describeIngestAction);
    if (round === MAX_ROUNDS || o.signal.aborted) {
      log.warn(
        `change tracking on ${shown} is not complete yet (the table keeps changing); the next run continues`,
        {
          remaining,
        },
      );
      return { planned, done, complete: false };
    }
    log.notice(`${shown} changed while adoption ran; ${remaining.length} more actions`, { remaining });
    planned.push(...remaining);
    actions = after.actions;
  }
}

const MAX_ROUNDS = 3;

/**
 * Partitions with an interrupted DETACH ... CONCURRENTLY are left out (they are leaving the table).
 * One without ingest_xid (the column was added after the detach began) keeps PostgreSQL 18 from
 * finishing the detach, which the operator has to hear about.
 */
function logDetachPending(log: Logger, facts: IngestFacts): void {
  if (facts.detachPending.length === 0) return;
  const shown = displayRelation(facts.table);
  const finalize = (p: IngestDetachPendingFact) =>
    `ALTER TABLE ${shown} DETACH PARTITION ${displayRelation(p.relation)} FINALIZE`;
  log.info(
    `skipping ${facts.detachPending.map((p) => displayRelation(p.relation)).join(", ")}: an interrupted DETACH ... CONCURRENTLY ` +
      "is taking them out of the table (retention finishes it with FINALIZE)",
  );
  for (const p of facts.detachPending.filter((d) => !d.hasColumn))
    log.warn(
      `partition ${displayRelation(p.relation)} of ${shown} is half detached (DETACH ... CONCURRENTLY was interrupted) and has no ` +
        `${INGEST_COLUMN}: the column was added after the detach began. Finish the detach: ${finalize(p)}. PostgreSQL 18 ` +
        `refuses that FINALIZE ("could not convert row type") while ${shown} has ${INGEST_COLUMN} and the partition has not, and ` +
        `the partition cannot be altered meanwhile; there the way out is ALTER TABLE ${shown} DROP COLUMN ${INGEST_COLUMN}, the ` +
        "FINALIZE, adoption again, and rollup-hourly --from/--to over the hours not rolled up yet",
      { partition: displayRelation(p.relation) },
    );
}

/** A partition of an adopted table was found without the default, now set: say what was missed. */
function warnNullRows(log: Logger, a: Extract<IngestAction, { kind: "set_default" }>): void {
  const p = displayRelation(a.table);
  log.warn(
    `partition ${p} had no default for ${INGEST_COLUMN} (attached without it, e.g. made with CREATE TABLE ... (LIKE ...)); ` +
      `set now. Rows inserted directly into ${p} since it was attached have NULL ${INGEST_COLUMN}, which rollup-hourly never ` +
      "takes for new: those that arrived after their hour had been rolled up were not rolled up. Rebuild those hours with " +
      `rollup-hourly --from <start> --to <end>${a.bound ? ` (the partition holds ${a.bound})` : ""}`,
    { partition: p },
  );
}

/** One action: logged at notice before and after (with its duration) and recorded, failed or not. */
async function runAction(
  db: Kysely<any>,
  o: IngestAdoptionOptions,
  log: Logger,
  action: IngestAction,
): Promise<void> {
  const title = titleOf(action);
  log.notice(`${title}: ${describeIngestAction(action)}`);
  const startedAt = new Date();
  try {
    await execute(db, o, action);
  } catch (error) {
    const finishedAt = new Date();
    log.error(
      `${title} failed after ${finishedAt.getTime() - startedAt.getTime()} ms: ${(error as Error).message}`,
    );
    await o.record?.({
      ...auditOf(action),
      outcome: "failed",
      error: (error as Error).message,
      startedAt,
      finishedAt,
    });
    throw error;
  }
  const finishedAt = new Date();
  log.notice(`${title}: done in ${finishedAt.getTime() - startedAt.getTime()} ms`);
  await o.record?.({ ...auditOf(action), outcome: "ok", startedAt, finishedAt });
}

function titleOf(a: IngestAction): string {
  switch (a.kind) {
    case "add_column":
      return `adding column ${INGEST_COLUMN} to ${displayRelation(a.table)}`;
    case "set_default":
      return `setting the default of ${a.partitionOf ? "partition " : ""}${displayRelation(a.table)}.${INGEST_COLUMN}`;
    case "create_parent_index":
      return `creating partitioned index ${quoteIdent(a.index)} on ${displayRelation(a.table)}`;
    case "drop_invalid_index":
      return `dropping invalid leftover index ${displayRelation(a.index)}`;
    case "build_index_concurrently":
      return a.step
        ? `building index ${quoteIdent(a.index)} (${a.step.n} of ${a.step.of} partitions)`
        : `building index ${quoteIdent(a.index)} on ${displayRelation(a.on)}`;
    case "attach_index":
      return a.revalidate
        ? `re-attaching ${displayRelation(a.childIndex)} so that ${displayRelation(a.parentIndex)} is marked valid`
        : `attaching index ${displayRelation(a.childIndex)} to ${displayRelation(a.parentIndex)}`;
  }
}

function auditOf(a: IngestAction): Pick<AuditAction, "kind" | "partition" | "detail"> {
  const statement = describeIngestAction(a);
  switch (a.kind) {
    case "add_column":
      return { kind: "adopt_ingest_column", detail: { action: a.kind, statement } };
    case "set_default":
      return a.partitionOf
        ? {
            kind: "adopt_ingest_column",
            partition: displayRelation(a.table),
            detail: { action: a.kind, statement },
          }
        : { kind: "adopt_ingest_column", detail: { action: a.kind, statement } };
    case "create_parent_index":
      return { kind: "adopt_ingest_index", detail: { action: a.kind, statement } };
    case "drop_invalid_index":
    case "build_index_concurrently":
      return {
        kind: "adopt_ingest_index",
        partition: displayRelation(a.on),
        detail: { action: a.kind, statement },
      };
    case "attach_index":
      return {
        kind: "adopt_ingest_index",
        partition: displayRelation(a.partition),
        detail: { action: a.kind, statement },
      };
  }
}

async function execute(db: Kysely<any>, o: IngestAdoptionOptions, a: IngestAction): Promise<void> {
  const retry = (what: string, contended: Relation) => ({
    lockTimeoutMs: o.lockTimeoutMs,
    budgetMs: o.retryBudgetMs,
    what,
    contended,
    signal: o.signal,
    onRetry: (info: { attempt: number; waitMs: number }) =>
      o.log.warn(`${what}: lock not available within lock_timeout; rolled back, retrying`, info),
  });
  const col = sql.id(INGEST_COLUMN);
  switch (a.kind) {
    case "add_column":
      // Two statements in one transaction: ADD COLUMN with no default (catalog only), then the
      // default for rows inserted from now on, which also rewrites nothing.
      await withLockRetry(
        db,
        retry(`add ${INGEST_COLUMN} to ${displayRelation(a.table)}`, a.table),
        async (trx) => {
          await sql`ALTER TABLE ${relationSql(a.table)} ADD COLUMN ${col} xid8`.execute(trx);
          await sql`ALTER TABLE ${relationSql(a.table)} ALTER COLUMN ${col} SET DEFAULT pg_current_xact_id()`.execute(
            trx,
          );
        },
      );
      return;
    case "set_default":
      await withLockRetry(
        db,
        retry(`set default of ${displayRelation(a.table)}.${INGEST_COLUMN}`, a.table),
        (trx) =>
          sql`ALTER TABLE ${relationSql(a.table)} ALTER COLUMN ${col} SET DEFAULT pg_current_xact_id()`.execute(
            trx,
          ),
      );
      return;
    case "create_parent_index":
      await withLockRetry(
        db,
        retry(`create index ${quoteIdent(a.index)} on ${displayRelation(a.table)}`, a.table),
        (trx) =>
          sql`CREATE INDEX IF NOT EXISTS ${sql.id(a.index)} ON ONLY ${relationSql(a.table)} (${col}, ${sql.id(a.timeColumn)})`.execute(
            trx,
          ),
      );
      return;
    case "drop_invalid_index":
      await runConcurrently(db, o.retryBudgetMs, (conn) =>
        sql`DROP INDEX CONCURRENTLY IF EXISTS ${relationSql(a.index)}`.execute(conn),
      );
      return;
    case "build_index_concurrently":
      await buildConcurrently(db, o, a);
      return;
    case "attach_index":
      await withLockRetry(
        db,
        retry(`attach ${displayRelation(a.childIndex)} to ${displayRelation(a.parentIndex)}`, a.partition),
        (trx) =>
          sql`ALTER INDEX ${relationSql(a.parentIndex)} ATTACH PARTITION ${relationSql(a.childIndex)}`.execute(
            trx,
          ),
      );
      return;
  }
}

/**
 * A statement that cannot run in a transaction block (CONCURRENTLY), on a connection of its own,
 * under a session lock_timeout of the whole retry budget. Such a statement holds SHARE UPDATE
 * EXCLUSIVE, which INSERT/UPDATE/DELETE do not conflict with, and then waits, through ordinary lock
 * waits, for transactions that modified the table (before each of its two scans) and for those
 * holding older snapshots. A short lock_timeout would cut those waits and throw the build away;
 * none at all could hang behind a forgotten open transaction. Waiting there blocks no writer.
 */
async function runConcurrently(
  db: Kysely<any>,
  timeoutMs: number,
  work: (conn: Kysely<any>) => Promise<unknown>,
): Promise<void> {
  await db.connection().execute(async (conn) => {
    await sql`SELECT set_config('lock_timeout', ${`${Math.max(1, Math.round(timeoutMs))}ms`}, false)`.execute(
      conn,
    );
    try {
      await work(conn);
    } finally {
      await sql`RESET lock_timeout`.execute(conn).catch(() => {});
    }
  });
}

async function buildConcurrently(
  db: Kysely<any>,
  o: IngestAdoptionOptions,
  a: Extract<IngestAction, { kind: "build_index_concurrently" }>,
): Promise<void> {
  const index: Relation = { schema: a.on.schema, name: a.index };
  try {
    await runConcurrently(db, o.retryBudgetMs, (conn) =>
      sql`CREATE INDEX CONCURRENTLY ${sql.id(a.index)} ON ${relationSql(a.on)} (${sql.id(INGEST_COLUMN)}, ${sql.id(a.timeColumn)})`.execute(
        conn,
      ),
    );
  } catch (error) {
    // A failed concurrent build leaves an INVALID index that every write still maintains: drop it
    // now rather than leave it to the next run. That drop waits for the same transactions, so it
    // may fail too; the next run's plan drops it then.
    // Only an INVALID index on this table is ours to drop (a name clash must not cost a valid one).
    let cleanup = "the invalid index it left was dropped";
    try {
      const left = await sql<{ invalid: boolean }>`
        SELECT NOT x.indisvalid AS invalid FROM pg_catalog.pg_index x
         WHERE x.indexrelid = ${relationOidSql(index)} AND x.indrelid = ${relationOidSql(a.on)}`.execute(db);
      if (left.rows[0]?.invalid === true)
        await runConcurrently(db, o.retryBudgetMs, (conn) =>
          sql`DROP INDEX CONCURRENTLY IF EXISTS ${relationSql(index)}`.execute(conn),
        );
      else cleanup = "it left no invalid index";
    } catch (dropError) {
      cleanup = `dropping the invalid index it left failed too (${(dropError as Error).message}); the next run drops it`;
    }
    const lock = sqlState(error) === SQLSTATE.lockNotAvailable;
    throw new Error(
      `CREATE INDEX CONCURRENTLY ${displayRelation(index)} on ${displayRelation(a.on)} failed` +
        (lock
          ? ` waiting ${o.retryBudgetMs} ms (retryBudgetMs) for older transactions on the table to end`
          : `: ${(error as Error).message}`) +
        `; ${cleanup}. Nothing else was changed; the next run retries` +
        (lock ? ". Find the long transaction in pg_stat_activity, or raise retryBudgetMs." : "."),
      { cause: error },
    );
  }
}
