import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import {
  loadDatabaseSettings,
  loadPolicyFile,
  parseInstant,
  parseNow,
  selectTables,
} from "../../shared/config/load.ts";
import { boundaryProblem } from "../../shared/convert/boundary.ts";
import { CONVERT_PHASES, type ConvertPhase, runConvert } from "../../shared/convert/job.ts";
import type { MainContext } from "../process.ts";
import { LOG_FLAGS, parseCommandArgs } from "./args.ts";
import { openDatabase } from "./environment.ts";

const CONVERT_HELP = `Usage: telemetry-jobs migrate convert [PHASE] --table NAME [options]

Turns a live, unpartitioned table into a RANGE-partitioned one without stopping ingestion: the old
table becomes one historical partition FROM (MINVALUE) TO (boundary), new rows go to new partitions.
Writes wait at most --lock-timeout-ms at a time (the swap is one short catalog-only transaction).
The table must be in the policy file: its interval, premake, naming and defaultPartition shape the
new partitions; a rollup block adds the ingest_xid column (catalog-only) and its index.

Phases (each idempotent: after a kill, run the same command again):
  preflight   report rows, size, time range, keys, indexes, foreign keys, views, triggers, grants,
              sequences, replica identity; exit 2 naming every object that blocks the conversion
  prepare     the slow part, no write blocked: the unique index (key + time) CONCURRENTLY, the new
              parent with its partitions, then CHECK (time < boundary) NOT VALID and VALIDATE
              (from the CHECK until the swap, rows dated at or after the boundary are rejected)
  swap        one short transaction under lock_timeout, retried: renames and ATTACH; refuses if
              the table changed since prepare (revert, then prepare again)
  verify      counts and checksums through the parent vs. each partition, bounds, indexes, identity,
              EXPLAIN pruning (read-only)
  revert      until finalize: back to one plain table, rows written since the swap included
  finalize    drop what revert needed (the old key index, unique constraints you chose to drop)
  status      where the conversion stands
  (none)      preflight, prepare, swap, verify in order, stopping at the first problem

Options:
  --table NAME          the table, as listed in the policy (required)
  --config PATH         policy file (or TELEMETRY_JOBS_CONFIG / TELEMETRY_JOBS_CONFIG_JSON)
  --boundary ISO        end of the historical partition (an interval start, UTC); default: the first
                        interval boundary at least half an interval and at least a day from now
  --drop-unique NAME    accept that this unique constraint/index without the time column is not
                        enforced by the partitioned table (repeatable; see docs/runbooks/convert.md)
  --lock-timeout-ms N   longest wait for a lock in one attempt (default 200): the longest that
                        inserts queue behind convert
  --retry-budget-ms N   keep retrying a step whose lock is busy this long (default: the policy's)
  --progress-every-s N  progress of VALIDATE and index builds every N seconds (default 10)
  --dry-run             print every statement, change nothing
  --now ISO             plan as if it were this instant
  --log-format text|json
                        readable lines (the default on a terminal) or JSON lines (the default
                        otherwise); --json is the same as --log-format json
  --json, --verbose, -h/--help

Exit codes: 0 done (or already done), 1 failed (run it again), 2 refused (preflight problems, bad usage).`;

const FLAGS = {
  table: { type: "string" },
  config: { type: "string" },
  boundary: { type: "string" },
  "drop-unique": { type: "string", multiple: true },
  "lock-timeout-ms": { type: "string" },
  "retry-budget-ms": { type: "string" },
  "progress-every-s": { type: "string" },
  "dry-run": { type: "boolean", default: false },
  now: { type: "string" },
  ...LOG_FLAGS,
  help: { type: "boolean", short: "h", default: false },
} as const;

function positiveInt(value: string | undefined, flag: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new ConfigError(`${flag} ${value}: a whole number from 1 to ${max}`);
  return n;
}

export async function convert(argv: readonly string[], { log, signal }: MainContext): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs("migrate convert", argv, FLAGS, true, CONVERT_HELP);
  if (values.help) {
    process.stdout.write(`${CONVERT_HELP}\n`);
    return EXIT.ok;
  }
  if (positionals.length > 1)
    throw new ConfigError(`migrate convert: one phase at most, got "${positionals.join(" ")}"`);
  const phase = (positionals[0] ?? "all") as ConvertPhase;
  if (phase !== "all" && !(CONVERT_PHASES as readonly string[]).includes(phase))
    throw new ConfigError(
      `migrate convert: unknown phase "${phase}"; use ${CONVERT_PHASES.join(", ")}, or none for all`,
    );
  if (!values.table)
    throw new ConfigError("migrate convert: --table is required (the table as listed in the policy file)");
  const policies = loadPolicyFile({ configPath: values.config, env: process.env }).tables;
  const [name] = selectTables(policies, [values.table])!;
  const policy = policies.find((p) => p.table === name)!;
  const options = {
    phase,
    policy,
    now: parseNow(values.now),
    boundary: values.boundary ? parseInstant(values.boundary, "--boundary") : undefined,
    dropUnique: values["drop-unique"] ?? [],
    dryRun: values["dry-run"],
    lockTimeoutMs: positiveInt(values["lock-timeout-ms"], "--lock-timeout-ms", 200, 60_000),
    retryBudgetMs: positiveInt(
      values["retry-budget-ms"],
      "--retry-budget-ms",
      Math.max(policy.retryBudgetMs, 1),
      24 * 3_600_000,
    ),
    progressEveryMs: positiveInt(values["progress-every-s"], "--progress-every-s", 10, 3600) * 1000,
  };
  if (options.boundary) {
    const problem = boundaryProblem(options.boundary, options.now, policy);
    if (problem) throw new ConfigError(problem);
  }
  const database = await openDatabase({ database: loadDatabaseSettings(process.env) }, "migrate", log);
  try {
    const result = await runConvert(
      database.db,
      log.child({ table: name, command: "convert" }),
      options,
      signal,
    );
    return result.exitCode;
  } finally {
    await database.close();
  }
}
