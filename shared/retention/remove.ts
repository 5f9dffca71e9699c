// Removing whole partitions child by child, and finishing detached tables.
//
// Child by child (removeOne): when the run's removals cannot be done together (remove-together.ts:
// the parent is busy, or the partitions are exported), each is exported and verified (mode
// "export"), marked, detached (DETACH ... CONCURRENTLY where the table allows it: SHARE UPDATE
// EXCLUSIVE, which writers and readers never wait for; two transactions and a wait for older
// snapshots), then finished. Finishing (finishTogether) drops, labels or archives detached tables:
// a run's own, and those a killed run left detached and marked.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { withLockRetry, withLockRetryOnConnection } from "../db/lock-retry.ts";
import { displayRelation, type Relation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { type AuditOutcomes, type RetentionContext, type RetentionOutcome, retryOptions } from "./context.ts";
import { detachPinned, pendingDetach } from "./detach-pinned.ts";
import { retentionOf } from "./expiry.ts";
import { type Confirmed, confirmBeforeDrop, confirmUnderLock, exportRangeMark } from "./export-finish.ts";
import { exportBeforeDetach, type VerifiedExport } from "./export-step.ts";
import { exportOf } from "./export-target.ts";
import type { RetentionAction, RetentionMode } from "./plan.ts";
import { checkStillMarked, checkStillPlanned } from "./removal-guards.ts";
import { archivedMarker, detachedMarker, removalMarker } from "./removal-mark.ts";
import { unmarkNotDetached } from "./unmark.ts";

export type RemovePartition = Extract<RetentionAction, { kind: "remove_partition" }>;

/**
 * Child by child: export and verify (mode "export"), mark, detach (CONCURRENTLY when the action
 * allows it), finish.
 */
export async function removeOne(
  ctx: RetentionContext,
  action: RemovePartition,
  audit?: AuditOutcomes,
): Promise<RetentionOutcome> {
  const exported = action.exportTo === undefined ? undefined : await exportBeforeDetach(ctx, action);
  if (exported) await pauseAtFaultPoint("retention-export-before-detach", ctx.log);
  const child = relationSql(action.partition);
  const mark = removalMarker(ctx.policy.table, action.mode, action);
  let markedOid: number | undefined;
  await withLockRetry(ctx.db, retryOptions(ctx, `mark ${displayRelation(action.partition)}`), async (trx) => {
    // The lock COMMENT takes, first: the name then means the same table until the commit, and the
    // mark goes only on a partition that is still the expired one the plan read.
    await sql`LOCK TABLE ${child} IN SHARE UPDATE EXCLUSIVE MODE`.execute(trx);
    [markedOid] = await checkStillPlanned(ctx, trx, [action]);
    await sql`COMMENT ON TABLE ${child} IS ${sql.lit(mark)}`.execute(trx);
    if (exported)
      await exportRangeMark(
        ctx.policy.timeColumn,
        action.partition,
        exported.target,
        exportOf(ctx.policy)!.to,
      ).execute(trx);
  });
  await pauseAtFaultPoint("retention-after-mark", ctx.log);
  const sent = { detach: false };
  const detachPath = await detach(ctx, action, sent).catch(async (error: unknown) => {
    await unmarkNotDetached(ctx, { oid: markedOid!, planned: action.partition }, mark, sent.detach);
    throw error;
  });
  if (exported) await pauseAtFaultPoint("retention-export-after-detach", ctx.log);
  const outcome = (finishPath: string | undefined): RetentionOutcome => ({
    rows: action.rowsEstimate,
    bytes: action.bytes,
    path: `${detachPath}, ${finishPath}`,
  });
  const [finishPath] = await finishTogether(
    ctx,
    [{ relation: action.partition, to: action.to, exported }],
    action.mode,
    audit && ((trx, done) => audit(trx, [outcome(done[0])])),
  );
  return { ...outcome(finishPath), audited: audit !== undefined };
}

/**
 * Detaches the marked partition, checked again first (checkStillPlanned): in the detach's own
 * transaction once it holds the locks; for DETACH CONCURRENTLY, which cannot run in one, by a
 * second session that pins the name until the detach is bound to the partition (detach-pinned.ts).
 */
async function detach(
  ctx: RetentionContext,
  action: RemovePartition,
  /** Set once a DETACH (or FINALIZE) of the partition has been sent: it may have taken effect. */
  sent: { detach: boolean },
): Promise<string> {
  const parent = relationSql(policyTable(ctx.policy));
  const child = relationSql(action.partition);
  const shown = displayRelation(action.partition);
  if (action.concurrently) {
    // Not allowed in a transaction block: its own connection, lock_timeout set for the session.
    let finalized = false;
    await onOwnConnection(ctx, `detach ${shown} concurrently`, (conn) =>
      detachPinned(ctx, action, conn, async () => {
        try {
          sent.detach = true;
          await sql`ALTER TABLE ${parent} DETACH PARTITION ${child} CONCURRENTLY`.execute(conn);
        } catch (error) {
          // An earlier attempt committed its first transaction and did not finish (typically
          // lock_timeout while waiting for older snapshots): the detach is pending, and only
          // FINALIZE can complete it.
          if (!(await leftPendingDetach(conn, error, action.partition))) throw error;
          ctx.log.info(
            "the partition is pending detach already (an earlier attempt's first step committed): finishing it with FINALIZE",
            {
              partition: shown,
            },
          );
          await sql`ALTER TABLE ${parent} DETACH PARTITION ${child} FINALIZE`.execute(conn);
          finalized = true;
        }
      }),
    );
    return `detach concurrently${finalized ? " (finished with FINALIZE)" : ""} (SHARE UPDATE EXCLUSIVE on the parent)`;
  }
  await withLockRetry(ctx.db, retryOptions(ctx, `detach ${shown}`), async (trx) => {
    // The parent's lock and the partition's, which the DETACH takes too; then the check, while no
    // name of the partition can change.
    await sql`LOCK TABLE ONLY ${parent} IN ACCESS EXCLUSIVE MODE; LOCK TABLE ONLY ${child} IN ACCESS EXCLUSIVE MODE`.execute(
      trx,
    );
    await checkStillPlanned(ctx, trx, [action]);
    sent.detach = true;
    await sql`ALTER TABLE ${parent} DETACH PARTITION ${child}`.execute(trx);
  });
  return "detach (ACCESS EXCLUSIVE on the parent, under lock_timeout: the table has a DEFAULT partition)";
}

/**
 * Whether the DETACH ... CONCURRENTLY of `partition` failed with `error` (SQLSTATE 55000) while
 * the partition is pending detach: only FINALIZE completes it then, whatever the error's reason (it
 * is pending already; or a DEFAULT partition added since refuses a concurrent detach). Read from
 * the catalog: the error's text is in the server's language (lc_messages, which a session cannot
 * change without superuser) and names the pending partition without its schema; and PostgreSQL
 * raises it for whichever partition of the table is pending, while another one's is not this
 * partition's to FINALIZE (the plan finalizes that one as an action of its own).
 */
export async function leftPendingDetach(
  db: Kysely<DB>,
  error: unknown,
  partition: Relation,
): Promise<boolean> {
  return sqlState(error) === SQLSTATE.objectNotInPrerequisiteState && (await pendingDetach(db, partition));
}

/** Finishes a DETACH CONCURRENTLY that a killed or timed-out run left pending. */
export async function finalizeDetach(ctx: RetentionContext, partition: Relation): Promise<void> {
  await onOwnConnection(ctx, `finalize the detach of ${displayRelation(partition)}`, (conn) =>
    sql`ALTER TABLE ${relationSql(policyTable(ctx.policy))} DETACH PARTITION ${relationSql(partition)} FINALIZE`.execute(
      conn,
    ),
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

/** A detached table to finish, and the upper bound of the range it held (for the label). */
export interface Detached {
  readonly relation: Relation;
  readonly to?: Date | undefined;
  /** This run's verified export of it (mode "export"); a killed run's leftover has none. */
  readonly exported?: VerifiedExport | undefined;
}

/**
 * Drops, labels or archives detached tables, all in one transaction: each has its removal mark
 * until this commits, so a failure (a view on one of them) leaves every one to the next run.
 * Returns what was done to each, in order; `audit`, when given, writes the audit rows of that in
 * the same transaction, so that no table is removed without them, whatever kills the run.
 */
export async function finishTogether(
  ctx: RetentionContext,
  tables: readonly Detached[],
  mode: RetentionMode,
  audit?: (trx: Kysely<DB>, done: readonly string[]) => Promise<void>,
): Promise<string[]> {
  const stamp = ctx.now.toISOString();
  const shown =
    tables.length === 1 ? displayRelation(tables[0]!.relation) : `${tables.length} detached tables`;
  switch (mode) {
    case "drop": {
      // No exported table (this run's, or a killed export's leftover, whatever the mode is now) is
      // dropped unless its export is verified against it as it is now, and again under the drop's
      // own lock (confirmUnderLock): rows written into it by name meanwhile are never dropped.
      const confirmed: (Confirmed | undefined)[] = [];
      for (const t of tables) confirmed.push(await confirmBeforeDrop(ctx, t.relation, t.exported));
      const done = tables.map((_, i) => `${confirmed[i] ? `${confirmed[i].how}, ` : ""}drop`);
      await withLockRetry(ctx.db, retryOptions(ctx, `drop ${shown}`), async (trx) => {
        await lockAndCheckMarked(ctx, trx, tables, "ACCESS EXCLUSIVE");
        for (const [i, c] of confirmed.entries())
          if (c) await confirmUnderLock(ctx, trx, tables[i]!.relation, c.manifest);
        await sql`DROP TABLE ${sql.join(tables.map((t) => relationSql(t.relation)))}`.execute(trx);
        await audit?.(trx, done);
        // Inside the finishing transaction: dropped, not committed (a kill rolls the drop back).
        await pauseAtFaultPoint("retention-in-finish", ctx.log, mode);
      });
      return done;
    }
    case "detach": {
      const done = tables.map(() => "kept detached");
      await withLockRetry(ctx.db, retryOptions(ctx, `label ${shown}`), async (trx) => {
        await lockAndCheckMarked(ctx, trx, tables, "SHARE UPDATE EXCLUSIVE");
        for (const { relation, to } of tables)
          await sql`COMMENT ON TABLE ${relationSql(relation)} IS ${sql.lit(
            detachedMarker(ctx.policy.table, stamp, to),
          )}`.execute(trx);
        await audit?.(trx, done);
        // Inside the finishing transaction: labelled, not committed (the marks are still theirs).
        await pauseAtFaultPoint("retention-in-finish", ctx.log, mode);
      });
      return done;
    }
    case "archive": {
      const archive = retentionOf(ctx.policy).archiveSchema;
      const archived = tables.map((t): Relation => ({ schema: archive, name: t.relation.name }));
      const done = archived.map((a) => `moved to ${displayRelation(a)}`);
      await withLockRetry(ctx.db, retryOptions(ctx, `archive ${shown}`), async (trx) => {
        await lockAndCheckMarked(ctx, trx, tables, "ACCESS EXCLUSIVE");
        await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(archive)}`.execute(trx);
        for (const [i, { relation }] of tables.entries()) {
          await sql`ALTER TABLE ${relationSql(relation)} SET SCHEMA ${sql.id(archive)}`.execute(trx);
          await sql`COMMENT ON TABLE ${relationSql(archived[i]!)} IS ${sql.lit(
            archivedMarker(ctx.policy.table, stamp),
          )}`.execute(trx);
        }
        await audit?.(trx, done);
        // Inside the finishing transaction: moved and labelled, not committed.
        await pauseAtFaultPoint("retention-in-finish", ctx.log, mode);
      });
      return done;
    }
  }
}

/**
 * Takes the lock the finishing statement would take on each table (so that no name of theirs can
 * change), then checks that each still carries this table's removal mark and is not held.
 */
async function lockAndCheckMarked(
  ctx: RetentionContext,
  trx: Kysely<DB>,
  tables: readonly Detached[],
  mode: "ACCESS EXCLUSIVE" | "SHARE UPDATE EXCLUSIVE",
): Promise<void> {
  const relations = tables.map((t) => t.relation);
  await sql`LOCK TABLE ${sql.join(relations.map(relationSql))} IN ${sql.raw(mode)} MODE`.execute(trx);
  await checkStillMarked(ctx, trx, relations);
}
