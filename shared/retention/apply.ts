// The retention executor. Whole partitions: mark, detach (CONCURRENTLY when PostgreSQL allows it),
// then drop, keep, or move to the archive schema. Rows: batched deletes within one named leaf
// relation, addressed by that relation's own physical block ranges (ctid), never through a
// partitioned parent (ctid repeats across partitions: deleting by a parent's ctid deletes recent
// rows of other partitions too).
import { type Kysely, sql } from "kysely";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { withLockRetry, withLockRetryOnConnection } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import type { Logger } from "../log/logger.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { retentionOf } from "./expiry.ts";
import { removalMarker } from "./facts.ts";
import type { RetentionAction, RetentionMode } from "./plan.ts";

export interface RetentionContext {
  db: Kysely<DB>;
  policy: TablePolicy;
  log: Logger;
  signal: AbortSignal;
  now: Date;
  /** When row deletes must stop (epoch ms): the policy's time budget is per run, not per action. */
  deadline?: number;
}

export interface RetentionOutcome {
  rows: number;
  bytes: number;
  /** How it was done, for the audit trail and the logs (e.g. "detach concurrently, drop"). */
  path: string;
  /** Row deletes stopped at the time budget or on SIGTERM; the next run continues from nextBlock. */
  incomplete?: boolean;
  nextBlock?: number;
}

function retryOptions(ctx: RetentionContext, what: string) {
  return {
    lockTimeoutMs: ctx.policy.lockTimeoutMs,
    budgetMs: ctx.policy.retryBudgetMs,
    what,
    contended: policyTable(ctx.policy),
    signal: ctx.signal,
    onRetry: (i: { attempt: number; waitMs: number; error: unknown }) =>
      ctx.log.warn("lock not available, retrying", { what, ...i }),
  };
}

export async function applyRetentionAction(
  ctx: RetentionContext,
  action: RetentionAction,
  resume: { startBlock: number } = { startBlock: 0 },
): Promise<RetentionOutcome> {
  switch (action.kind) {
    case "remove_partition": {
      await withLockRetry(ctx.db, retryOptions(ctx, `mark ${displayRelation(action.partition)}`), (trx) =>
        sql`COMMENT ON TABLE ${relationSql(action.partition)} IS ${sql.lit(removalMarker(ctx.policy.table, action.mode))}`.execute(
          trx,
        ),
      );
      const detachPath = await detach(ctx, action.partition, action.concurrently);
      const finishPath = await finishRemoval(ctx, action.partition, action.mode, action.to);
      return { rows: action.rowsEstimate, bytes: action.bytes, path: `${detachPath}, ${finishPath}` };
    }
    case "finalize_detach": {
      await onOwnConnection(ctx, `finalize the detach of ${displayRelation(action.partition)}`, (conn) =>
        sql`ALTER TABLE ${relationSql(policyTable(ctx.policy))} DETACH PARTITION ${relationSql(action.partition)} FINALIZE`.execute(
          conn,
        ),
      );
      return {
        rows: 0,
        bytes: 0,
        path: "detach finalize (the marked leftover is finished by the next step or run)",
      };
    }
    case "finish_removal":
      return { rows: 0, bytes: 0, path: await finishRemoval(ctx, action.partition, action.mode, undefined) };
    case "delete_rows":
      return await deleteRowsInBatches(ctx, action, resume.startBlock);
  }
}

async function detach(ctx: RetentionContext, partition: Relation, concurrently: boolean): Promise<string> {
  const parent = relationSql(policyTable(ctx.policy));
  const child = relationSql(partition);
  const shown = displayRelation(partition);
  if (concurrently) {
    // Not allowed in a transaction block: its own connection, lock_timeout set for the session.
    let finalized = false;
    await onOwnConnection(ctx, `detach ${shown} concurrently`, async (conn) => {
      try {
        await sql`ALTER TABLE ${parent} DETACH PARTITION ${child} CONCURRENTLY`.execute(conn);
      } catch (error) {
        // An earlier attempt committed its first transaction, then hit lock_timeout while waiting
        // for older snapshots: the detach is pending and only FINALIZE can complete it.
        if (!isPendingDetachError(error)) throw error;
        ctx.log.info("the detach is pending after a timed-out attempt: finishing it with FINALIZE", {
          partition: shown,
        });
        await sql`ALTER TABLE ${parent} DETACH PARTITION ${child} FINALIZE`.execute(conn);
        finalized = true;
      }
    });
    return `detach concurrently${finalized ? " (finished with FINALIZE)" : ""} (SHARE UPDATE EXCLUSIVE on the parent)`;
  }
  await withLockRetry(ctx.db, retryOptions(ctx, `detach ${shown}`), (trx) =>
    sql`ALTER TABLE ${parent} DETACH PARTITION ${child}`.execute(trx),
  );
  return "detach (ACCESS EXCLUSIVE on the parent, under lock_timeout: the table has a DEFAULT partition)";
}

function isPendingDetachError(error: unknown): boolean {
  return (
    sqlState(error) === SQLSTATE.objectNotInPrerequisiteState &&
    /pending detach/i.test((error as Error).message)
  );
}

/** Runs one statement outside a transaction block, under lock_timeout, retried within the budget. */
async function onOwnConnection(
  ctx: RetentionContext,
  what: string,
  statement: (conn: Kysely<DB>) => Promise<unknown>,
): Promise<void> {
  await withLockRetryOnConnection(
    ctx.db,
    {
      ...retryOptions(ctx, what),
      advice: "If a DETACH CONCURRENTLY was interrupted, the next run finishes it with FINALIZE.",
    },
    statement,
  );
}

async function finishRemoval(
  ctx: RetentionContext,
  partition: Relation,
  mode: RetentionMode,
  to: Date | undefined,
): Promise<string> {
  const table = relationSql(partition);
  const shown = displayRelation(partition);
  const stamp = ctx.now.toISOString();
  switch (mode) {
    case "drop":
      await withLockRetry(ctx.db, retryOptions(ctx, `drop ${shown}`), (trx) =>
        sql`DROP TABLE ${table}`.execute(trx),
      );
      return "drop";
    case "detach":
      await withLockRetry(ctx.db, retryOptions(ctx, `label ${shown}`), (trx) =>
        sql`COMMENT ON TABLE ${table} IS ${sql.lit(
          `telemetry-jobs retention: detached from ${ctx.policy.table} at ${stamp}${to ? ` (rows before ${to.toISOString()})` : ""}`,
        )}`.execute(trx),
      );
      return "kept detached";
    case "archive": {
      const archive = retentionOf(ctx.policy).archiveSchema;
      const archived: Relation = { schema: archive, name: partition.name };
      await withLockRetry(ctx.db, retryOptions(ctx, `archive ${shown}`), async (trx) => {
        await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(archive)}`.execute(trx);
        await sql`ALTER TABLE ${table} SET SCHEMA ${sql.id(archive)}`.execute(trx);
        await sql`COMMENT ON TABLE ${relationSql(archived)} IS ${sql.lit(
          `telemetry-jobs retention: archived from ${ctx.policy.table} at ${stamp}`,
        )}`.execute(trx);
      });
      return `moved to ${displayRelation(archived)}`;
    }
  }
}

/**
 * Deletes rows older than the cutoff from one leaf relation, in batches of physical blocks
 * (`ctid >= '(b,0)' AND ctid < '(b+n,0)'`: a TID range scan, PostgreSQL 14+). Each batch is its
 * own short transaction; a kill loses nothing newer than the cutoff and the next run goes on.
 * A run that stops at its time budget reports the block it reached; the next run starts there
 * (rescanning cleaned blocks from 0 every run would spend each small budget on no work at all).
 */
async function deleteRowsInBatches(
  ctx: RetentionContext,
  action: Extract<RetentionAction, { kind: "delete_rows" }>,
  startBlock: number,
): Promise<RetentionOutcome> {
  const retention = retentionOf(ctx.policy);
  const rel = relationSql(action.relation);
  const shown = displayRelation(action.relation);
  const col = columnSql(ctx.policy.timeColumn);
  const { blocks, blocksPerBatch } = await batchGeometry(ctx, action.relation, retention.batchSize);
  const started = Date.now();
  let deleted = 0;
  let lastProgress = started;
  // One full pass over the relation, starting where the previous run stopped and wrapping round to
  // block 0: rows inserted since (with old timestamps) may sit in space freed before that block.
  const first = startBlock > 0 && startBlock < blocks ? startBlock : 0;
  if (first > 0)
    ctx.log.info("resuming row deletes where the previous run stopped", {
      relation: shown,
      block: first,
      blocks,
    });
  const segments: [number, number][] =
    first > 0
      ? [
          [first, blocks],
          [0, first],
        ]
      : [[0, blocks]];
  let scanned = 0;
  let stoppedAt: number | undefined;
  outer: for (const [from, to] of segments) {
    for (let block = from; block < to; block += blocksPerBatch) {
      if (ctx.signal.aborted || Date.now() > (ctx.deadline ?? started + retention.timeBudgetMs)) {
        stoppedAt = block;
        break outer;
      }
      const lo = `(${block},0)`;
      const hi = `(${Math.min(block + blocksPerBatch, to)},0)`;
      const { result } = await withLockRetry(
        ctx.db,
        retryOptions(ctx, `delete expired rows of ${shown}`),
        async (trx) => {
          // A batch lost in a crash is simply deleted again by the next run, so its commit need
          // not wait for the WAL flush: hundreds of small commits cost no fsync each.
          await sql`SET LOCAL synchronous_commit = off`.execute(trx);
          return await sql`DELETE FROM ONLY ${rel}
             WHERE ctid >= ${lo}::tid AND ctid < ${hi}::tid AND ${col} < ${action.before}`.execute(trx);
        },
      );
      deleted += Number(result.numAffectedRows ?? 0n);
      scanned += Math.min(blocksPerBatch, to - block);
      if (scanned >= 10 * blocksPerBatch) await pauseAtFaultPoint("after-delete-batch", ctx.log);
      if (Date.now() - lastProgress > 5_000) {
        lastProgress = Date.now();
        const rowsPerSecond = Math.round(deleted / ((Date.now() - started) / 1000));
        const remainingEstimate = Math.max(0, action.rows - deleted);
        const progress = { rowsDeleted: deleted, rowsPerSecond, remainingEstimate, blocksDone: scanned };
        ctx.log.info("deleting expired rows", { relation: shown, ...progress, blocks });
      }
      if (retention.batchPauseMs > 0) await new Promise((r) => setTimeout(r, retention.batchPauseMs));
    }
  }
  const incomplete = stoppedAt !== undefined;
  if (incomplete) {
    ctx.log.warn("row deletes stopped at the time budget (or on request); the next run continues", {
      relation: shown,
      rowsDeleted: deleted,
      remainingEstimate: Math.max(0, action.rows - deleted),
      nextBlock: stoppedAt,
    });
  }
  return {
    rows: deleted,
    bytes: 0,
    path: `batched delete by block range (${blocksPerBatch} blocks per batch)`,
    ...(incomplete ? { incomplete, nextBlock: stoppedAt } : {}),
  };
}

/** The relation's size in blocks, and how many blocks make a batch of about `batchSize` rows. */
async function batchGeometry(
  ctx: RetentionContext,
  relation: Relation,
  batchSize: number,
): Promise<{ blocks: number; blocksPerBatch: number }> {
  const size = await sql<{ blocks: string; tuples: number; pages: number }>`
    SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int) AS blocks,
           c.reltuples AS tuples, c.relpages AS pages
      FROM pg_class c WHERE c.oid = ${relationOidSql(relation)}`.execute(ctx.db);
  const blocks = Number(size.rows[0]?.blocks ?? 0);
  const tuplesPerBlock =
    size.rows[0] && size.rows[0].pages > 0 && size.rows[0].tuples > 0
      ? size.rows[0].tuples / size.rows[0].pages
      : 60;
  return { blocks, blocksPerBatch: Math.max(1, Math.floor(batchSize / Math.max(1, tuplesPerBlock))) };
}
