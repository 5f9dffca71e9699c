// The executor of the DEFAULT guard (why, and for which ranges: plan-guard.ts). Adding it takes
// ACCESS EXCLUSIVE on DEFAULT for a catalog update; validating it scans DEFAULT under SHARE UPDATE
// EXCLUSIVE, which readers and writers do not notice; dropping it is a catalog update again. Every
// step runs under lock_timeout with retries. A run that ends before its planned drop (a failure, a
// stop request) drops the guard on its way out; one that is killed, or cannot drop it, leaves it
// (valid or not), and the next run finds it by its name and drops it first.
import { sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { columnSql, displayRelation, type Relation, relationOidSql, relationSql } from "../db/relation.ts";
import type { PlanContext } from "../run/execute-plan.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import type { ActionOutcome, ApplyContext } from "./apply.ts";
import { boundLiteral } from "./bounds.ts";
import { DEFAULT_GUARD_CONSTRAINT, GUARD_RUNBOOK } from "./naming.ts";
import type { PartitionAction } from "./plan.ts";
import type { GuardedRange } from "./plan-guard.ts";
import { FUTURE_MARGIN_MS } from "./time.ts";

type GuardAction = Extract<PartitionAction, { kind: "guard_default" }>;
type DropGuardAction = Extract<PartitionAction, { kind: "drop_default_guard" }>;

const GUARD = sql.id(DEFAULT_GUARD_CONSTRAINT);

function retryOptions(ctx: ApplyContext, def: Relation, what: string) {
  return {
    lockTimeoutMs: ctx.policy.lockTimeoutMs,
    budgetMs: ctx.policy.retryBudgetMs,
    contended: def,
    what: `${what} on ${displayRelation(def)}`,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    onRetry: (info: { attempt: number; waitMs: number; error: unknown }) =>
      ctx.log.warn("lock not available, retrying", { partition: def.name, ...info }),
  };
}

/**
 * NOT (the range's partition constraint), as PostgreSQL derives DEFAULT's new constraint when it
 * attaches the range: a CHECK that says exactly this lets the attach skip its scan of DEFAULT.
 */
function outsideRanges(ctx: ApplyContext, ranges: readonly GuardedRange[]) {
  const col = columnSql(ctx.catalog.keyColumn);
  const lit = (d: Date) => sql.lit(boundLiteral(d, ctx.catalog.keyType));
  return sql.join(
    ranges.map((r) => sql`(${col} IS NULL OR ${col} < ${lit(r.from)} OR ${col} >= ${lit(r.to)})`),
    sql` AND `,
  );
}

/** The DEFAULT partition the action names, as the catalog read it (the planner saw it there). */
function defaultOf(ctx: ApplyContext, action: GuardAction | DropGuardAction): Relation {
  const d = ctx.catalog.defaultPartition;
  if (d?.name !== action.partition)
    throw new Error(`${action.partition} is not the DEFAULT partition of ${action.table}`);
  return { schema: d.schema, name: d.name };
}

export async function guardDefault(ctx: ApplyContext, action: GuardAction): Promise<ActionOutcome> {
  const def = defaultOf(ctx, action);
  const rel = relationSql(def);
  // The planner checked the margin against the run's now; the server's clock may be later (a run
  // with --now in the past), and a guarded range must not be one that rows are arriving for.
  const added = await withLockRetry(ctx.db, retryOptions(ctx, def, "add the guard"), async (trx) => {
    const r = await sql<{ server_now: Date }>`SELECT clock_timestamp() AS server_now`.execute(trx);
    const latest = Math.max(ctx.now.getTime(), r.rows[0]!.server_now.getTime());
    const ranges = action.ranges.filter((g) => g.from.getTime() >= latest + FUTURE_MARGIN_MS);
    if (ranges.length > 0) {
      await sql`ALTER TABLE ${rel} DROP CONSTRAINT IF EXISTS ${GUARD},
        ADD CONSTRAINT ${GUARD} CHECK (${outsideRanges(ctx, ranges)}) NOT VALID`.execute(trx);
    }
    return ranges.length;
  });
  if (added.result === 0) {
    ctx.log.info("no range is far enough ahead for the DEFAULT guard; attaches scan DEFAULT", {
      partition: def.name,
    });
    return { rows: 0, lockRetries: added.attempts - 1, alreadyDone: true };
  }
  // The guard is committed NOT VALID (it refuses new rows of its ranges) and not yet validated.
  await pauseAtFaultPoint("guard-after-add", ctx.log);
  try {
    const validated = await withLockRetry(ctx.db, retryOptions(ctx, def, "validate the guard"), (trx) =>
      sql`ALTER TABLE ${rel} VALIDATE CONSTRAINT ${GUARD}`.execute(trx),
    );
    ctx.log.info("DEFAULT guard validated: the attaches of its ranges do not scan DEFAULT", {
      partition: def.name,
      ranges: added.result,
    });
    return { rows: 0, lockRetries: added.attempts + validated.attempts - 2, alreadyDone: false };
  } catch (error) {
    // A row of a guarded range reached DEFAULT after the plan was made (or the lock budget ran
    // out). An unvalidated guard would go on refusing that range's rows: remove it now; if that
    // fails too, the next run finds it by its name and removes it.
    await dropGuard(ctx, def).catch(() => {});
    throw error;
  }
}

async function dropGuard(
  ctx: ApplyContext,
  def: Relation,
  budgetMs = ctx.policy.retryBudgetMs,
): Promise<{ dropped: boolean; attempts: number }> {
  const { result, attempts } = await withLockRetry(
    ctx.db,
    { ...retryOptions(ctx, def, "drop the guard"), budgetMs },
    async (trx) => {
      const r = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_constraint
       WHERE conrelid = ${relationOidSql(def)} AND conname = ${DEFAULT_GUARD_CONSTRAINT}`.execute(trx);
      if ((r.rows[0]?.n ?? 0) === 0) return false;
      await sql`ALTER TABLE ${relationSql(def)} DROP CONSTRAINT ${GUARD}`.execute(trx);
      return true;
    },
  );
  return { dropped: result, attempts };
}

/** Once its ranges are attached the guard says nothing DEFAULT's partition constraint does not. */
export async function dropDefaultGuard(ctx: ApplyContext, action: DropGuardAction): Promise<ActionOutcome> {
  // The run's attaches are done and committed; the guard is still in place.
  if (!action.leftover) await pauseAtFaultPoint("guard-before-drop", ctx.log);
  const { dropped, attempts } = await dropGuard(ctx, defaultOf(ctx, action));
  return { rows: 0, lockRetries: attempts - 1, alreadyDone: !dropped };
}

/**
 * For a run whose plan adds or drops the guard and that ended before its last action: the executor
 * stops at the first failure or stop request, so the planned drop never ran, and the guard would go
 * on refusing rows of its ranges, one of which may begin before the next run. One attempt under
 * lock_timeout (the run is over: a stop request may be pending), logged and audited either way.
 * Returns whether a guard was dropped.
 */
export async function dropGuardAfterUnfinishedRun(
  ctx: ApplyContext,
  record: PlanContext["record"],
): Promise<boolean> {
  const d = ctx.catalog.defaultPartition;
  if (!d) return false;
  const def: Relation = { schema: d.schema, name: d.name };
  const startedAt = new Date();
  const audit = (outcome: "ok" | "failed", error?: string) =>
    record({
      kind: "drop_default_guard",
      partition: d.name,
      outcome,
      ...(error === undefined ? {} : { error }),
      detail: { reason: "the run ended before its planned drop of the DEFAULT guard" },
      startedAt,
      finishedAt: new Date(),
    }).catch((e: unknown) => ctx.log.warn("could not audit the guard's drop", { error: e }));
  try {
    const { dropped } = await dropGuard(ctx, def, ctx.policy.lockTimeoutMs);
    if (!dropped) return false;
    ctx.log.warn("dropped the DEFAULT guard: the run ended before its planned drop", {
      partition: d.name,
      constraint: DEFAULT_GUARD_CONSTRAINT,
    });
    await audit("ok");
    return true;
  } catch (error) {
    ctx.log.error(
      `could not drop the DEFAULT guard: constraint ${DEFAULT_GUARD_CONSTRAINT} stays on ${displayRelation(def)} and refuses rows dated in the ranges it names until it is dropped; the next run drops it first, or drop it by hand (${GUARD_RUNBOOK})`,
      { partition: d.name, error },
    );
    await audit("failed", error instanceof Error ? error.message : String(error));
    return false;
  }
}
