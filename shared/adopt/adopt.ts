// Adoption of one rollup source: everything rollup-hourly needs on an application's table, made
// online, idempotently, in this order:
//   1. the rollup target, when missing (target.ts): a new table, nothing the application uses;
//   2. insert tracking on the source (ingest.ts): the ingest_xid column (catalog only) and its
//      (ingest_xid, time) index, built CONCURRENTLY (per partition on a partitioned table);
//   3. UPDATE/DELETE tracking on the source (the two statement triggers, rollups/change-tracking.ts);
//   4. the source's entry for the real-time read (rollups/registry.ts).
// Each step reads the catalog first and does only what is missing, so a run killed anywhere is
// completed by the next one, and a run over an adopted table changes nothing. Every DDL that can
// make writers wait runs under the policy's lock_timeout with retries; CREATE/DROP INDEX
// CONCURRENTLY, which blocks no writer, waits for older transactions up to retryBudgetMs instead
// (ingest.ts), while partition-manager and retention are kept away (adoptionLockKeys).
// The `adopt` command runs this ahead of time; rollup-hourly runs it as its first step, so a table
// added to the policy is adopted by the scheduled job too.
import type { Kysely } from "kysely";
import { policyTable, rollupTarget, type TablePolicy } from "../config/policy.ts";
import { displayRelation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import { type ChangeTracking, ensureChangeTracking } from "../rollups/change-tracking.ts";
import { registerRollupRead } from "../rollups/registry.ts";
import type { RollupContext, RollupSource } from "../rollups/source.ts";
import { AdoptionRefusedError, adoptIngestTracking, ingestTrackingReady } from "./ingest.ts";
import {
  createTarget,
  createTargetStatements,
  readTargetState,
  schemaMissingMessage,
  type TargetShape,
  targetShape,
} from "./target.ts";

export interface AdoptionOutcome {
  /** Everything rollup-hourly needs is in place (false in a dry run that found work to do). */
  complete: boolean;
  /** Actions taken (planned, in a dry run), by kind. */
  actions: Record<string, number>;
  /** Why the table cannot be adopted as it is (the operator must act); nothing was changed by that step. */
  refusal?: string;
  /** What step 3 found or did about the UPDATE/DELETE triggers (for the run's health). */
  changeTracking?: ChangeTracking;
}

export async function adoptRollupSource(
  db: Kysely<DB>,
  ctx: RollupContext,
  options: { dryRun: boolean; policies: readonly TablePolicy[] },
): Promise<AdoptionOutcome> {
  const { policy, log, signal } = ctx;
  const { dryRun } = options;
  const actions: Record<string, number> = {};
  const count = (kind: string, n = 1) => {
    if (n > 0) actions[kind] = (actions[kind] ?? 0) + n;
  };

  // 1. The target.
  const shape = targetShape(policy, options.policies);
  const target = await ensureTarget(db, ctx, shape, dryRun);
  if (target.refusal !== undefined) return { complete: false, actions, refusal: target.refusal };
  if (target.created) count("create_target");

  // 2. Insert tracking.
  let ingest: Awaited<ReturnType<typeof adoptIngestTracking>>;
  try {
    ingest = await adoptIngestTracking(db, {
      source: shape.source,
      timeColumn: policy.timeColumn,
      lockTimeoutMs: policy.lockTimeoutMs,
      retryBudgetMs: policy.retryBudgetMs,
      dryRun,
      log,
      signal,
      record: ctx.record,
    });
  } catch (error) {
    if (error instanceof AdoptionRefusedError) return { complete: false, actions, refusal: error.message };
    throw error;
  }
  count("ingest_tracking", ingest.planned.length);
  // A real run stops here until insert tracking is complete; a dry run goes on listing the rest
  // unless adoption is waiting (nothing planned, not complete: e.g. a detach to be finished first).
  if (!ingest.complete && (!dryRun || ingest.planned.length === 0)) return { complete: false, actions };

  // 3. UPDATE/DELETE tracking: a run without it still rolls inserts up (ensureChangeTracking warns).
  const tracking = await ensureChangeTracking(db, ctx, dryRun);
  if (tracking === "installed" || tracking === "would_install") count("change_tracking");

  // 4. The real-time read's registry entry (bookkeeping in the product's own schema). A database
  // whose telemetry_jobs predates it (jobs of a new release before its `migrate up`) still gets
  // its rollups; only the generic read waits for the migration.
  if (!dryRun) {
    try {
      await registerRollupRead(db, policy);
    } catch (error) {
      if (sqlState(error) !== SQLSTATE.undefinedTable) throw error;
      log.warn(
        "telemetry_jobs.rollup_reads is missing (migration 0010_rollup_reads): the real-time read telemetry_jobs.hourly_series() does not know this table yet. Run `telemetry-jobs migrate up`",
      );
    }
  }

  return { complete: !dryRun || Object.keys(actions).length === 0, actions, changeTracking: tracking };
}

/**
 * Creates the rollup target when it is missing (a dry run says how), and records it. Returns a
 * refusal when the target's schema does not exist, else whether the target was (or would be) made.
 */
async function ensureTarget(
  db: Kysely<DB>,
  ctx: RollupContext,
  shape: TargetShape,
  dryRun: boolean,
): Promise<{ refusal?: string; created: boolean }> {
  const { policy, log, signal } = ctx;
  const shown = displayRelation(shape.target);
  const state = await readTargetState(db, shape.target);
  if (state === "schema_missing")
    return { refusal: `rollup.target ${schemaMissingMessage(shape.target)}`, created: false };
  if (state !== "missing") return { created: false };
  const statements = createTargetStatements(shape).map((s) => `${s.compile(db).sql};`);
  if (dryRun) {
    log.info(`would create the rollup target ${shown}: ${statements.join(" ")}`, { target: shown });
    return { created: true };
  }
  const started = new Date();
  await createTarget(db, shape, {
    lockTimeoutMs: policy.lockTimeoutMs,
    retryBudgetMs: policy.retryBudgetMs,
    signal,
  });
  log.notice(
    `created the rollup target ${shown}${shape.partitioned ? " (partitioned by bucket_ts; partition-manager makes its partitions)" : ""}`,
    { target: shown, partitioned: shape.partitioned },
  );
  await ctx.record({
    kind: "adopt_create_target",
    partition: shown,
    outcome: "ok",
    detail: { partitioned: shape.partitioned, statements },
    startedAt: started,
    finishedAt: new Date(),
  });
  return { created: true };
}

/** What the rollups cannot run without is in place: the target, and ingest_xid with its index. */
export async function adoptionReady(db: Kysely<DB>, policy: RollupSource): Promise<boolean> {
  return (
    (await readTargetState(db, rollupTarget(policy.rollup))) === "present" &&
    (await ingestTrackingReady(db, policyTable(policy), policy.timeColumn))
  );
}

/**
 * The advisory keys an adoption holds. Always its own; while it still has work to do on the
 * source (the ingest column or index), partition-manager's and retention's too, as migrate convert
 * does: a concurrent index build holds each partition's SHARE UPDATE EXCLUSIVE lock while it waits
 * for older transactions (up to retryBudgetMs), and partition-manager's DDL on that partition would
 * queue behind it at each retry, with every insert queued behind partition-manager. They leave the
 * table to their next run instead.
 */
export function adoptionLockKeys(policy: TablePolicy, ready: boolean): string[] {
  return ready
    ? [`adopt:${policy.table}`]
    : [`adopt:${policy.table}`, `partition-manager:${policy.table}`, `retention:${policy.table}`];
}
