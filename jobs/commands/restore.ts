import { type RestoreRequest, runRestore } from "../../shared/cold/restore.ts";
import { exportRootOf } from "../../shared/cold/restore-locate.ts";
import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import {
  loadDatabaseSettings,
  loadPolicyFile,
  parseInstant,
  parseNow,
  selectTables,
} from "../../shared/config/load.ts";
import type { MainContext } from "../process.ts";
import { LOG_FLAGS, parseCommandArgs } from "./args.ts";
import { openDatabase } from "./environment.ts";

const HELP = `Usage: telemetry-jobs restore --table T (--partition NAME | --from ISO) [--into SCHEMA] [--root DIR] [--dry-run]

Brings one partition that retention exported to the cold tier back into PostgreSQL. The export is
found under the table's export root (the retention policy's "export.to", or --root DIR) by the
partition's name as its manifest records it (--partition) or by the partition's start (--from).

Every file is first verified against the manifest (size, sha256, rows, checksum); then the rows are
loaded, a row group at a time, into a staging table built like the parent's partitions, and
PostgreSQL's checksum of that table must equal the manifest's. Only then is that table attached in
place by the partition library that partition-manager uses: a CHECK equal to the bound, added NOT
VALID and validated (the scan holds up no writer), then ATTACH under lock_timeout, retried, which
renames it to the partition's name. The rows are written once. Writers are not held up beyond the
attach's short transaction.

Refused (exit 2, nothing written) when a live partition covers any of the range (an empty
partition of exactly the range and name is replaced by the restored one instead; rows of the range
in DEFAULT do not refuse: they join the restored partition), when the partition's name is taken,
or when a column the export has is gone from the table or changed type.
A file that does not verify, or loaded rows that differ from the manifest, stop the restore (exit
1, nothing attached). A restore that was killed leaves at most a staging table (tj_restore_<hash>):
run the same command again, it replaces it.

Retention removes a restored partition again at its next run unless it is held; the command prints
the \`telemetry-jobs hold\` command to run.

  --table T          the partitioned table, as in the policy (required)
  --partition NAME   the exported partition's name (e.g. telemetry_points_p202501)
  --from ISO         or the partition's lower bound, e.g. 2025-01-01T00:00:00Z
  --into SCHEMA      load into a new plain table SCHEMA.<partition name> for inspection instead;
                     refused if that table exists
  --root DIR         the export root, when the policy names none (or to read another copy)
  --config PATH      policy file (or env TELEMETRY_JOBS_CONFIG=PATH / TELEMETRY_JOBS_CONFIG_JSON='{...}')
  --dry-run          say what would be done after verifying the files; write nothing
  --log-format text|json, --json, --verbose
  -h, --help         this help

Database from the environment (DATABASE_URL, or INSTANCE_CONNECTION_NAME + DB_USER + DB_NAME).
Exit codes: 0 restored (or dry run), 1 failed (export does not verify, load mismatch, error),
2 usage, configuration, or refused.`;

const FLAGS = {
  table: { type: "string" },
  partition: { type: "string" },
  from: { type: "string" },
  into: { type: "string" },
  root: { type: "string" },
  config: { type: "string" },
  "dry-run": { type: "boolean", default: false },
  ...LOG_FLAGS,
  help: { type: "boolean", short: "h", default: false },
} as const;

interface RestoreValues {
  table?: string | undefined;
  partition?: string | undefined;
  from?: string | undefined;
  into?: string | undefined;
  root?: string | undefined;
  config?: string | undefined;
  "dry-run"?: boolean | undefined;
}

/** The request, checked before any connection is made (ConfigError, exit 2). */
export function restoreRequest(values: RestoreValues, env: NodeJS.ProcessEnv): RestoreRequest {
  if (!values.table) throw new ConfigError("restore: --table is required");
  if ((values.partition === undefined) === (values.from === undefined))
    throw new ConfigError("restore: give exactly one of --partition NAME and --from ISO");
  if (values.into !== undefined && values.into.length === 0)
    throw new ConfigError("restore: --into needs a schema name");
  const policyFile = loadPolicyFile({ configPath: values.config, env });
  const [name] = selectTables(policyFile.tables, [values.table])!;
  const policy = policyFile.tables.find((p) => p.table === name)!;
  const root = exportRootOf(policy, values.root);
  if (root === undefined)
    throw new ConfigError(
      `restore: ${name} has no export destination in its retention policy; give --root DIR`,
    );
  return {
    policy,
    root,
    select:
      values.partition !== undefined
        ? { partition: values.partition }
        : { from: parseInstant(values.from!, "--from") },
    into: values.into,
    dryRun: values["dry-run"] ?? false,
    now: parseNow(undefined),
  };
}

export async function restore(argv: readonly string[], { signal, log }: MainContext): Promise<ExitCode> {
  const { values } = parseCommandArgs("restore", argv, FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const request = restoreRequest(values, process.env);
  const database = await openDatabase({ database: loadDatabaseSettings(process.env) }, "restore", log);
  try {
    return await runRestore(database.db, request, log, signal);
  } finally {
    await database.close();
  }
}
