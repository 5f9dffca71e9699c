// Carries out one insert-tracking action (ingest-actions.ts), logged before and after; the plan
// executor records it in the audit table (auditOf), whether it succeeds or fails. Locks
// each kind of action takes:
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
import { displayRelation, quoteIdent, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import type { AuditAction } from "../run/audit.ts";
import { describeIngestAction, type IngestAction } from "./ingest-actions.ts";
import { buildConcurrently, runConcurrently } from "./ingest-concurrent.ts";
import { INGEST_COLUMN } from "./ingest-plan.ts";

/** What an action's audit row names. */
export interface IngestAudit {
  kind: "adopt_ingest_column" | "adopt_ingest_index";
  partition?: string;
  detail: { action: IngestAction["kind"]; statement: string };
}

/** What running an action needs: the policy's lock limits, where to log, and the audit. */
export interface ActionRunOptions {
  lockTimeoutMs: number;
  retryBudgetMs: number;
  log: Logger;
  signal: AbortSignal;
  /** One audit row per action carried out (or failed); not called on dry runs. */
  record?: (action: Omit<AuditAction, "table">) => Promise<void>;
}

/**
 * One action: logged at notice before and after (with its duration), and its failure too. The
 * audit row is the plan executor's (auditOf says what it names).
 */
export async function applyIngestAction(
  db: Kysely<DB>,
  o: ActionRunOptions,
  log: Logger,
  action: IngestAction,
): Promise<void> {
  const title = titleOf(action);
  log.notice(`${title}: ${describeIngestAction(action)}`);
  const startedAt = Date.now();
  try {
    await execute(db, o, action);
  } catch (error) {
    log.error(`${title} failed after ${Date.now() - startedAt} ms: ${(error as Error).message}`);
    throw error;
  }
  log.notice(`${title}: done in ${Date.now() - startedAt} ms`);
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

/** The audit row's kind, partition and detail for an action. */
export function auditOf(a: IngestAction): IngestAudit {
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

async function execute(db: Kysely<DB>, o: ActionRunOptions, a: IngestAction): Promise<void> {
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
      await buildConcurrently(db, o.retryBudgetMs, a);
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
