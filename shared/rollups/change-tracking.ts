// Installing the change triggers (changes.ts) on a rollup source: rollup-hourly and adoption make
// sure both are in place on every run, under lock_timeout with retries, and go on without them
// (warning, with the statements to run) when they may not be installed.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { LockBudgetExceededError, withLockRetry } from "../db/lock-retry.ts";
import { displayRelation, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { SQLSTATE, sqlState } from "../db/sqlstate.ts";
import {
  CHANGE_TRIGGERS,
  type ChangeTrigger,
  changeTriggerSql,
  changeTriggerText,
  inspectChangeTriggers,
  type TriggerState,
} from "./changes.ts";
import type { RollupContext } from "./source.ts";

export type ChangeTracking = "present" | "installed" | "would_install" | "not_installed" | "disabled";

/**
 * Makes sure the source carries both change triggers, as planned: creates or corrects them under
 * lock_timeout, retried within the policy's retry budget (a writer in the middle of a transaction
 * on the table holds a lock that conflicts; it is never waited for longer than lock_timeout at a
 * time). A dry run only says what it would do. A trigger an operator disabled is left disabled,
 * with a warning. When the lock budget runs out or the job's role may not create triggers on the
 * table, the run goes on without (inserts are still rolled up), warns with the statements to run,
 * and the next run tries again.
 */
export async function ensureChangeTracking(
  db: Kysely<DB>,
  ctx: RollupContext,
  dryRun: boolean,
): Promise<ChangeTracking> {
  const { policy, log } = ctx;
  const source = policyTable(policy);
  const shown = displayRelation(source);
  const { states, groupChanged } = await inspectChangeTriggers(db, policy);
  const { todo, disabled } = planChangeTriggers(states);
  if (todo.length === 0) {
    if (disabled.length === 0) return "present";
    log.warn(
      `change tracking on ${shown} is disabled (${disabled.map((t) => t.name).join(", ")}): UPDATE and DELETE of its rows do not reach the rollups or the real-time read. Enable it again with ALTER TABLE ${relationSql(source).compile(db).sql} ENABLE TRIGGER ...; then rebuild the hours changed meanwhile (--from/--to)`,
      { disabled: disabled.map((t) => t.name) },
    );
    return "disabled";
  }
  const statements = changeTriggerText(db, policy);
  if (dryRun) {
    log.info(
      `would install change tracking on ${shown} (UPDATE and DELETE statement triggers): ${statements}`,
      {
        triggers: todo.map((t) => t.name),
      },
    );
    return "would_install";
  }
  return await installTriggers(db, ctx, { todo, states, groupChanged, statements });
}

/**
 * What to do about the change triggers, from their state on the source: create or correct those
 * missing or defined otherwise (todo); leave those an operator disabled as they are (disabled).
 */
export function planChangeTriggers(states: ReadonlyMap<string, TriggerState>): {
  todo: ChangeTrigger[];
  disabled: ChangeTrigger[];
} {
  return {
    todo: CHANGE_TRIGGERS.filter((t) => {
      const s = states.get(t.name);
      return s === "missing" || s === "different";
    }),
    disabled: CHANGE_TRIGGERS.filter((t) => states.get(t.name) === "disabled"),
  };
}

/** Creates or corrects the triggers in `todo`; on a lock budget run out or no privilege, warns. */
async function installTriggers(
  db: Kysely<DB>,
  ctx: RollupContext,
  o: {
    todo: readonly ChangeTrigger[];
    states: ReadonlyMap<string, TriggerState>;
    groupChanged: boolean;
    statements: string;
  },
): Promise<ChangeTracking> {
  const { policy, log } = ctx;
  const { todo, states, groupChanged, statements } = o;
  const source = policyTable(policy);
  const shown = displayRelation(source);
  const started = new Date();
  try {
    const { attempts } = await withLockRetry(
      db,
      {
        lockTimeoutMs: policy.lockTimeoutMs,
        budgetMs: policy.retryBudgetMs,
        what: `install change tracking on ${shown}`,
        contended: source,
        signal: ctx.signal,
        onRetry: ({ attempt, waitMs, error }) =>
          log.info(
            `change tracking on ${shown}: lock not available (${sqlState(error)}), retrying in ${waitMs} ms`,
            {
              attempt,
            },
          ),
      },
      async (trx) => {
        for (const t of todo) await changeTriggerSql(policy, t).execute(trx);
        // Records of another group column would be read as values of this one: drop them.
        if (groupChanged)
          await sql`DELETE FROM telemetry_jobs.rollup_changes
                     WHERE source_schema = ${source.schema} AND source_name = ${source.name}`.execute(trx);
      },
    );
    if (groupChanged)
      log.warn(
        `change tracking on ${shown} recorded another group column than rollup.groupBy "${policy.rollup.groupBy}": its records were dropped. A rollup grouped by another column needs a rebuild of the hours it keeps (--from/--to)`,
      );
    log.notice(
      `installed change tracking on ${shown}: AFTER UPDATE and AFTER DELETE statement triggers record the (group, hour) of changed rows; inserts fire nothing. Changes made before now were not recorded: if rows were corrected or deleted, rebuild those hours (--from/--to)`,
      {
        triggers: todo.map((t) => t.name),
        replaced: todo.filter((t) => states.get(t.name) === "different").length,
        attempts,
      },
    );
    await ctx.record({
      kind: "rollup_change_tracking",
      partition: shown,
      outcome: "ok",
      detail: { triggers: todo.map((t) => t.name), attempts },
      startedAt: started,
      finishedAt: new Date(),
    });
    return "installed";
  } catch (error) {
    // The job's role may not create triggers on the table (not its owner).
    if (!(error instanceof LockBudgetExceededError) && sqlState(error) !== SQLSTATE.insufficientPrivilege)
      throw error;
    log.warn(
      `change tracking not installed on ${shown}: ${(error as Error).message}. UPDATE and DELETE of its rows do not reach the rollups until it is; the next run tries again. To install it by hand (as the table's owner): ${statements}`,
      { sqlstate: sqlState(error) },
    );
    return "not_installed";
  }
}
