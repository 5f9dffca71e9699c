// The adopt job: the runner with adoption as each table's work, for every table with a rollup
// block (the only tables whose adoption changes anything: partition-manager and retention work on
// an application's table as it is).
import type { Kysely } from "kysely";
import type { Config } from "../config/load.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { inspectRollupSource } from "../rollups/inspect.ts";
import { isRollupSource, rollupContext } from "../rollups/source.ts";
import { type RunResult, runJob } from "../run/runner.ts";
import { adoptUnderLocks } from "./adopt.ts";

export async function runAdoptJob(
  db: Kysely<DB>,
  config: Config,
  log: Logger,
  signal: AbortSignal,
): Promise<RunResult> {
  const dryRun = config.options.dryRun;
  return await runJob({
    job: "adopt",
    config,
    db,
    log,
    signal,
    appliesTo: isRollupSource,
    inspect: inspectRollupSource,
    processTable: async (tableCtx) => {
      const ctx = rollupContext(tableCtx);
      // The job's own key (adopt:<table>) is held by the runner; the others only while there is
      // work that must keep partition-manager and retention away (adoptionLockKeys).
      const { locked } = await adoptUnderLocks(db, ctx, { dryRun, policies: config.policies, ownKey: false });
      if (!locked.acquired)
        return {
          status: "failed",
          actions: {},
          error: `${locked.busy?.startsWith("retention:") ? "retention" : "partition-manager"} is working on this table, which adoption must change; nothing was changed: run adopt again when it has finished`,
        };
      const outcome = locked.value;
      if (outcome.refusal) return { status: "refused", actions: outcome.actions, error: outcome.refusal };
      if (!outcome.complete && !dryRun)
        return {
          status: ctx.signal.aborted ? "interrupted" : "failed",
          actions: outcome.actions,
          error: "adoption is not complete (see the messages above); run it again to go on",
        };
      if (!dryRun)
        ctx.log.notice(
          Object.keys(outcome.actions).length === 0
            ? "already adopted: nothing to do"
            : "adopted: rollup-hourly can roll this table up",
          { actions: outcome.actions },
        );
      return { status: "ok", actions: outcome.actions, health: { adopted: outcome.complete } };
    },
  });
}
