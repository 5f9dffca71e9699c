import { EXIT, type ExitCode } from "../../shared/config/errors.ts";
import { runRetentionJob } from "../../shared/retention/job.ts";
import type { MainContext } from "../process.ts";
import { COMMON_FLAGS, COMMON_HELP, parseCommandArgs } from "./args.ts";
import { buildConfig, openDatabase } from "./environment.ts";

const HELP = `Usage: telemetry-jobs retention [options] [--force]

Removes data older than each table's retention window (policy block "retention": keep, mode,
maxDropsPerRun, exactCutoff, batchSize, batchPauseMs, timeBudgetMs). Cutoff = now - keep, in UTC.
Whole partitions whose real upper bound is at or before the cutoff are detached (CONCURRENTLY when
the table has no DEFAULT partition) and then dropped, kept detached, or moved to the archive schema.
Held partitions are kept (see \`telemetry-jobs hold\`). Expired rows in the DEFAULT partition, in the
partition that straddles the cutoff (exactCutoff), or in a plain table are deleted in small batches.

Refused (exit 2) unless --force: keep shorter than 1 day, more removals than maxDropsPerRun, or
removing every partition that holds data. --dry-run lists every partition and counted row it would
remove, and changes nothing.

  --force            go ahead despite the guards above

${COMMON_HELP}`;

const FLAGS = { ...COMMON_FLAGS, force: { type: "boolean", default: false } } as const;

export async function retention(argv: readonly string[], { signal, log }: MainContext): Promise<ExitCode> {
  const { values } = parseCommandArgs("retention", argv, FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const config = buildConfig(values, process.env);
  const database = await openDatabase(config, "retention", log);
  try {
    const result = await runRetentionJob(database.db, config, log, signal, { force: values.force });
    return result.exitCode;
  } finally {
    await database.close();
  }
}
