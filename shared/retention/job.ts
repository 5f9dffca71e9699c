// The retention job: the runner with retention's table selection, checks and work.
import type { Kysely } from "kysely";
import type { Config } from "../config/load.ts";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { type InspectedTable, inspectTable } from "../partitions/catalog.ts";
import { type RunResult, runJob } from "../run/runner.ts";
import { inspectPlainTable } from "./facts.ts";
import { manageRetention } from "./manage.ts";

export async function runRetentionJob(
  db: Kysely<DB>,
  config: Config,
  log: Logger,
  signal: AbortSignal,
  options: { force: boolean },
): Promise<RunResult> {
  // What the policy check read of each partitioned table, so that the table's work does not read it
  // again (the check runs before the advisory lock; see readCatalogIn for why that is safe).
  const inspected = new Map<TablePolicy, InspectedTable>();
  return await runJob({
    job: "retention",
    config,
    db,
    log,
    signal,
    appliesTo: (policy) => policy.retention !== undefined,
    inspect: async (db, policy) => {
      if (!policy.partitioned) return await inspectPlainTable(db, policy);
      const r = await inspectTable(db, policyTable(policy), policy.timeColumn);
      if (!r.ok) return r.problem;
      inspected.set(policy, { oid: r.oid, keyType: r.keyType });
      return undefined;
    },
    processTable: (ctx) =>
      manageRetention(db, ctx, {
        now: config.options.now,
        dryRun: config.options.dryRun,
        force: options.force,
        inspected: inspected.get(ctx.policy),
      }),
  });
}
