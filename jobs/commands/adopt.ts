import { runAdoptJob } from "../../shared/adopt/job.ts";
import { EXIT, type ExitCode } from "../../shared/config/errors.ts";
import type { MainContext } from "../process.ts";
import { COMMON_FLAGS, COMMON_HELP, parseCommandArgs } from "./args.ts";
import { buildConfig, openDatabase } from "./environment.ts";

const HELP = `Usage: telemetry-jobs adopt [--table NAME] [--dry-run] [options]

Prepares each table with a "rollup" block in the policy for rollup-hourly, online, changing only
what is missing (a second run does nothing):
  1. creates the rollup target table (policy rollup.target) when it does not exist: partitioned
     by bucket_ts when the target has a policy entry of its own, else a plain table
     (a new table: locks nothing the application uses);
  2. adds ingest_xid xid8 DEFAULT pg_current_xact_id() to the table: catalog only, no rewrite
     (ACCESS EXCLUSIVE for milliseconds, under the policy's lockTimeoutMs, retried);
  3. builds the (ingest_xid, time) index with CREATE INDEX CONCURRENTLY, on a partitioned table
     one partition at a time, attached to an index made ON ONLY the parent (the build blocks no
     writer and waits for transactions older than it, up to retryBudgetMs; the ON ONLY index and
     each attach lock the parent or the partition for milliseconds, under lockTimeoutMs; while
     builds remain, partition-manager and retention skip the table);
  4. installs the UPDATE/DELETE change-tracking triggers (SHARE ROW EXCLUSIVE, briefly);
  5. registers the table for the real-time read telemetry_jobs.hourly_series().
rollup-hourly runs the same steps first on every run, so this command is optional: run it to do
the work (chiefly the index builds) at a time you choose, and to see it with --dry-run first.
It never touches a table without a rollup block. A kill at any point is completed by the next run.
Runbook: docs/runbooks/adopt.md.

${COMMON_HELP}`;

export async function adopt(argv: readonly string[], { signal, log }: MainContext): Promise<ExitCode> {
  const { values } = parseCommandArgs("adopt", argv, COMMON_FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const config = buildConfig(values, process.env);
  const database = await openDatabase(config, "adopt", log);
  try {
    const result = await runAdoptJob(database.db, config, log, signal);
    return result.exitCode;
  } finally {
    await database.close();
  }
}
