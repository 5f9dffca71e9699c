import pkg from "../../package.json" with { type: "json" };
import { exportRootProblem } from "../../shared/cold/export.ts";
import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import type { TablePolicy } from "../../shared/config/policy.ts";
import { type OpenPool, openPool } from "../../shared/db/connect.ts";
import { registerColdTier } from "../../shared/retention/cold-tier.ts";
import { runRetentionJob } from "../../shared/retention/job.ts";
import type { MainContext } from "../process.ts";
import { COMMON_FLAGS, COMMON_HELP, parseCommandArgs } from "./args.ts";
import { buildConfig, openDatabase, reportConnectionFailure } from "./environment.ts";

const HELP = `Usage: telemetry-jobs retention [options] [--force]

Removes data older than each table's retention window (policy block "retention": keep, mode,
maxDropsPerRun, exactCutoff, batchSize, batchPauseMs, timeBudgetMs). Cutoff = now - keep, in UTC.
Whole partitions whose real upper bound is at or before the cutoff are detached (CONCURRENTLY when
the table has no DEFAULT partition) and then dropped, kept detached, or moved to the archive schema.
Held partitions are kept (see \`telemetry-jobs hold\`). Expired rows in the DEFAULT partition, in the
partition that straddles the cutoff (exactCutoff), or in a plain table are deleted in small batches
(never in mode "export").

Mode "export" (block "export": to, format, compression) first writes each expired partition to
Parquet under <to>/<schema>.<table>/<key>_start=<ISO>/ with a _manifest.json, reads every file back
and compares it with the partition; only a verified export lets the partition be detached and
dropped. A failed verification leaves the partition in place and exits 1. A partition whose valid
export is already there (e.g. one restored from it) is verified, not written again; an intact export
of other rows in its directory is never overwritten without --re-export. <to> must exist and be a
directory (the bucket's mount), or the run exits 2 before touching the database.

Refused (exit 2) unless --force: keep shorter than 1 day, more removals than maxDropsPerRun, or
removing every partition that holds data. --dry-run lists every partition and counted row it would
remove, and changes nothing.

  --force            go ahead despite the guards above
  --re-export        mode "export": write every partition's files again, even where a valid export
                     of it already exists

${COMMON_HELP}`;

const FLAGS = {
  ...COMMON_FLAGS,
  force: { type: "boolean", default: false },
  "re-export": { type: "boolean", default: false },
} as const;

export async function retention(argv: readonly string[], { signal, log }: MainContext): Promise<ExitCode> {
  const { values } = parseCommandArgs("retention", argv, FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const config = buildConfig(values, process.env);
  checkExportRoots(config.policies);
  const database = await openDatabase(config, "retention", log);
  // Mode "export" reads rows through a pool of its own (see shared/retention/cold-tier.ts), opened
  // when first needed: by an export, or by a killed export's leftover, whatever the mode is now. A
  // dry run writes nothing and needs none.
  let cold: OpenPool | undefined;
  try {
    if (!config.options.dryRun)
      registerColdTier(database.db, async () => {
        // Two connections: the verification reads the files while PostgreSQL computes the
        // partition's digest on the second.
        cold = await openPool(config.database, {
          job: "retention",
          poolSize: 2,
          onIdleError: reportConnectionFailure(log),
        });
        return { pool: cold.pool, productVersion: pkg.version, reExport: values["re-export"] };
      });
    const result = await runRetentionJob(database.db, config, log, signal, { force: values.force });
    return result.exitCode;
  } finally {
    await cold?.close();
    await database.close();
  }
}

/** Every export root must exist and be a directory (the bucket mounted) before the database is touched. */
function checkExportRoots(policies: readonly TablePolicy[]): void {
  const problems = policies.flatMap((p, i) => {
    const to = p.retention?.mode === "export" ? p.retention.export?.to : undefined;
    const problem = to === undefined ? undefined : exportRootProblem(to);
    return problem ? [`  - tables[${i}].retention.export.to: ${problem}`] : [];
  });
  if (problems.length > 0)
    throw new ConfigError(`the cold tier is not reachable (nothing was changed):\n${problems.join("\n")}`);
}
