// Adoption of one rollup source: everything rollup-hourly needs on an application's table, made
// online, idempotently, in this order:
//   1. the rollup target, when missing (target.ts): a new table, nothing the application uses;
//   2. insert tracking on the source (ingest.ts): the ingest_xid column (catalog only) and its
//      (ingest_xid, time) index, built CONCURRENTLY (per partition on a partitioned table);
//   3. UPDATE/DELETE tracking on the source (the two statement triggers, rollups/change-tracking.ts);
//   4. the source's entry for the real-time read (rollups/registry.ts).
// Each step reads the catalog first (steps 1 and 2 from what adoptUnderLocks read once for the
// run) and does only what is missing, so a run killed anywhere is completed by the next one, and a
// run over an adopted table changes nothing. Steps 1 and 2 hand their actions to the plan executor
// (shared/run/execute-plan.ts), which logs them, stops at a dry run and audits each one. Every DDL
// that can make writers wait runs under the policy's lock_timeout with retries; CREATE/DROP INDEX
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
import { executePlanOrThrow } from "../rollups/plan-run.ts";
import { registerRollupRead } from "../rollups/registry.ts";
import type { RollupContext, RollupSource } from "../rollups/source.ts";
import { type LockedResult, withAdvisoryLocks } from "../run/advisory-lock.ts";
import { AdoptionRefusedError, adoptIngestTracking, ingestFactsReady } from "./ingest.ts";
import { type IngestFacts, readIngestFacts } from "./ingest-facts.ts";
import {
  createTarget,
  createTargetStatements,
  readTargetState,
  schemaMissingMessage,
  type TargetShape,
  type TargetState,
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

/** What adoption reads of the catalog first: the target's state and the source's insert tracking. */
export interface AdoptionFacts {
  target: TargetState;
  ingest: IngestFacts;
}

export async function readAdoptionFacts(db: Kysely<DB>, policy: RollupSource): Promise<AdoptionFacts> {
  return {
    target: await readTargetState(db, rollupTarget(policy.rollup)),
    ingest: await readIngestFacts(db, policyTable(policy), policy.timeColumn),
  };
}

/** What the rollups cannot run without is in place: the target, and ingest_xid with its index. */
export function adoptionReady(facts: AdoptionFacts): boolean {
  return facts.target === "present" && ingestFactsReady(facts.ingest);
}

export async function adoptRollupSource(
  db: Kysely<DB>,
  ctx: RollupContext,
  options: {
    dryRun: boolean;
    policies: readonly TablePolicy[];
    /** The catalog as the caller read it just now; read here when not given. */
    facts?: AdoptionFacts | undefined;
  },
): Promise<AdoptionOutcome> {
  const { policy, log, signal } = ctx;
  const { dryRun } = options;
  const actions: Record<string, number> = {};
  const count = (kind: string, n = 1) => {
    if (n > 0) actions[kind] = (actions[kind] ?? 0) + n;
  };

  // 1. The target.
  const shape = targetShape(policy, options.policies);
  const state = options.facts?.target ?? (await readTargetState(db, shape.target));
  const target = await ensureTarget(db, ctx, shape, { dryRun, state });
  if (target.refusal !== undefined) return { complete: false, actions, refusal: target.refusal };
  if (target.created) count("create_target");
  if (target.interrupted) return { complete: false, actions };

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
      facts: options.facts?.ingest,
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

/** Making the rollup target, as the plan executor's one action. */
interface CreateTarget {
  readonly kind: "adopt_create_target";
  readonly shape: TargetShape;
}

/**
 * Creates the rollup target when it is missing (a dry run says how), through the plan executor,
 * which audits it. Returns a refusal when the target's schema does not exist, else whether the
 * target was (or would be) made, or termination was requested first.
 */
async function ensureTarget(
  db: Kysely<DB>,
  ctx: RollupContext,
  shape: TargetShape,
  o: { dryRun: boolean; state: TargetState },
): Promise<{ refusal?: string; created: boolean; interrupted?: boolean }> {
  const { policy, log, signal } = ctx;
  const shown = displayRelation(shape.target);
  if (o.state === "schema_missing")
    return { refusal: `rollup.target ${schemaMissingMessage(shape.target)}`, created: false };
  if (o.state !== "missing") return { created: false };
  const statements = createTargetStatements(shape).map((s) => `${s.compile(db).sql};`);
  const action: CreateTarget = { kind: "adopt_create_target", shape };
  const run = await executePlanOrThrow(
    ctx,
    { actions: [action], findings: [] },
    {
      // "would create the rollup target ...: CREATE TABLE ..." in a dry run.
      describe: () => `create the rollup target ${shown}: ${statements.join(" ")}`,
      planFields: () => ({ target: shown }),
      target: () => ({ partition: shown }),
      apply: async () => {
        const lock = { lockTimeoutMs: policy.lockTimeoutMs, retryBudgetMs: policy.retryBudgetMs, signal };
        await createTarget(db, shape, lock);
        log.notice(
          `created the rollup target ${shown}${shape.partitioned ? " (partitioned by bucket_ts; partition-manager makes its partitions)" : ""}`,
          { target: shown, partitioned: shape.partitioned },
        );
        return { outcome: "ok", detail: { partitioned: shape.partitioned, statements }, logFields: {} };
      },
      doneSeverity: "info",
    },
    { dryRun: o.dryRun },
  );
  return run.status === "interrupted" ? { created: false, interrupted: true } : { created: true };
}

/**
 * Adoption under its advisory locks (adoptionLockKeys; `ownKey: false` when the caller holds the
 * adoption's own key already), with the catalog read once: the facts choose the locks, and the
 * adoption of a ready source (every run of rollup-hourly after the first) works from them. A source
 * that is not ready is read again under the locks: they are what keeps partition-manager and
 * retention from changing the partitions its plan names.
 */
export async function adoptUnderLocks(
  db: Kysely<DB>,
  ctx: RollupContext,
  options: { dryRun: boolean; policies: readonly TablePolicy[]; ownKey: boolean },
): Promise<{ ready: boolean; locked: LockedResult<AdoptionOutcome> }> {
  const facts = await readAdoptionFacts(db, ctx.policy);
  const ready = adoptionReady(facts);
  const own = `adopt:${ctx.policy.table}`;
  const keys = adoptionLockKeys(ctx.policy, ready).filter((k) => options.ownKey || k !== own);
  const locked = await withAdvisoryLocks(db, keys, (lost) =>
    adoptRollupSource(
      db,
      { ...ctx, signal: AbortSignal.any([ctx.signal, lost]) },
      {
        dryRun: options.dryRun,
        policies: options.policies,
        facts: ready ? facts : undefined,
      },
    ),
  );
  return { ready, locked };
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
