// The common job runner. Every job is: validate the policies against the database (exit 2 before
// changing anything), open an audit row (marking `abandoned` earlier runs of the job that were
// killed before they finished theirs), then for each table, under an advisory lock for
// (job, table), do the table's work in isolation: one table's failure never undoes or stops
// another's. SIGTERM stops between actions, and so does the loss of the session holding the locks
// (see lock-session.ts), which fails the run. Ends with one summary record.
import { hostname } from "node:os";
import { type Kysely, sql } from "kysely";
import { ConfigError, EXIT } from "../config/errors.ts";
import type { Config } from "../config/load.ts";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { holdSession } from "../db/connect.ts";
import { relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { TEXT } from "../log/text-view.ts";
import { bookkeepingProblem } from "../migrate/migrator.ts";
import { inspectTable, type TableProblem } from "../partitions/catalog.ts";
import { releaseRunLock, withAdvisoryLocksOn } from "./advisory-lock.ts";
import { finishRun, logAbandoned, recordAction, recordActions, startRun } from "./audit.ts";
import type { JobSpec, RunResult, RunSummary, TableContext, TableReport, TableStatus } from "./job-spec.ts";
import { finishLostRun, type LockSession, watchLockSession } from "./lock-session.ts";

export type {
  JobSpec,
  RunResult,
  RunSummary,
  TableContext,
  TableReport,
  TableStatus,
} from "./job-spec.ts";

/** The default check: a RANGE-partitioned table on a timestamp column (what partition-manager needs). */
export async function inspectPartitionedTable(
  db: Kysely<DB>,
  policy: TablePolicy,
): Promise<TableProblem | undefined> {
  const inspected = await inspectTable(db, policyTable(policy), policy.timeColumn);
  return inspected.ok ? undefined : inspected.problem;
}

/**
 * Checks the selected policies against the catalog, all but the awaited rollup targets (read once
 * by runJob, which also names them); throws ConfigError naming each bad field. Returns the
 * policies the job works on.
 */
async function validatePolicies(
  db: Kysely<DB>,
  config: Config,
  spec: Pick<JobSpec, "inspect">,
  selected: readonly TablePolicy[],
  awaited: readonly TablePolicy[],
): Promise<TablePolicy[]> {
  const inspect = spec.inspect ?? inspectPartitionedTable;
  const problems: string[] = [];
  for (const policy of selected) {
    if (awaited.includes(policy)) continue;
    const index = config.policies.indexOf(policy);
    const problem = await inspect(db, policy);
    if (problem) problems.push(`  - tables[${index}].${problem.field}: ${problem.message}`);
  }
  if (problems.length > 0) {
    throw new ConfigError(
      `policy does not match the database (nothing was changed):\n${problems.join("\n")}`,
    );
  }
  return selected.filter((p) => !awaited.includes(p));
}

/**
 * Policy entries of rollup targets that do not exist yet: adoption (the adopt command, or
 * rollup-hourly's first step) creates them from the policy. Until then there is nothing to manage,
 * which is not a configuration error: every other table of the run is still managed.
 */
export async function awaitedRollupTargets(
  db: Kysely<DB>,
  config: Config,
  policies: readonly TablePolicy[],
): Promise<TablePolicy[]> {
  const targets = new Set(config.policies.flatMap((p) => (p.rollup ? [p.rollup.target] : [])));
  const awaited: TablePolicy[] = [];
  for (const policy of policies) {
    if (!targets.has(policy.table)) continue;
    const r = await sql<{ exists: boolean }>`
      SELECT ${relationOidSql(policyTable(policy))} IS NOT NULL AS exists`.execute(db);
    if (!r.rows[0]?.exists) awaited.push(policy);
  }
  return awaited;
}

export function selectedPolicies(config: Config): TablePolicy[] {
  const wanted = config.options.tables;
  return config.policies.filter((p) => !wanted || wanted.includes(p.table));
}

export async function runJob(spec: JobSpec): Promise<RunResult> {
  // One session holds the run's advisory locks: the run's own for as long as it lasts (see
  // RUN_ADVISORY_NAMESPACE), and each table's while its work lasts. Its loss stops the run.
  return await holdSession(spec.db, (session, lost) =>
    runJobIn(spec, session, watchLockSession(spec.signal, lost)),
  );
}

async function runJobIn(spec: JobSpec, session: Kysely<DB>, lock: LockSession): Promise<RunResult> {
  const { job, config, db, log } = spec;
  const started = Date.now();
  const dryRun = config.options.dryRun;
  const problem = await bookkeepingProblem(db);
  if (problem) throw new ConfigError(problem);
  const selected = selectedPolicies(config).filter((p) => spec.appliesTo?.(p) ?? true);
  const awaited = await awaitedRollupTargets(db, config, selected);
  const policies = await validatePolicies(db, config, spec, selected, awaited);
  for (const policy of awaited)
    log.notice(
      `${policy.table} does not exist yet: it is a rollup target, which \`telemetry-jobs adopt\` (or rollup-hourly's first run) creates from the policy; ${job} manages it from then on`,
      { table: policy.table },
    );
  if (policies.length === 0) log.notice(`no table in the policy is managed by ${job}`);
  const opened = dryRun
    ? undefined
    : await startRun(session, {
        job,
        logicalNow: config.options.now,
        args: { dryRun, tables: config.options.tables ?? null },
        execution: process.env.CLOUD_RUN_EXECUTION,
        host: hostname(),
      });
  const runId = opened?.runId;
  // Until finishRun releases it with the row's last update; then nothing is left to release.
  let lockHeld = runId !== undefined;
  try {
    logAbandoned(log, job, opened?.abandoned ?? []);
    const tableNames = policies.map((p) => p.table);
    log.info(dryRun ? "dry run: planning only, nothing will change" : "run started", {
      runId,
      now: config.options.now,
      tables: tableNames,
      [TEXT]: `${job} ${dryRun ? "dry run (nothing will change)" : `run ${runId}`}, now ${config.options.now.toISOString()}: ${tableNames.length} table${tableNames.length === 1 ? "" : "s"}`,
    });
    const done = await processTables(spec, session, lock, policies, runId);
    const result = await finishJob(spec, session, lock, runId, started, done);
    lockHeld = false;
    return result;
  } finally {
    // A session that failed has lost its locks with it: nothing to release, nothing to report.
    if (runId && lockHeld && !lock.lost()) await releaseRunLock(session, runId).catch(() => {});
  }
}

interface TablesDone {
  tables: Record<string, TableStatus>;
  actions: Record<string, number>;
  health: Record<string, unknown>;
}

async function processTables(
  spec: JobSpec,
  session: Kysely<DB>,
  lock: LockSession,
  policies: readonly TablePolicy[],
  runId: string | undefined,
): Promise<TablesDone> {
  const done: TablesDone = { tables: {}, actions: {}, health: {} };
  for (const policy of policies) {
    // Its lock could only be taken on a dead session, and the run's own lock is gone.
    if (lock.lost()) {
      done.tables[policy.table] = "failed";
      lock.left.notStarted.push(policy.table);
      continue;
    }
    if (spec.signal.aborted) {
      done.tables[policy.table] = "interrupted";
      continue;
    }
    const report = await processTable(spec, session, lock.signal, policy, runId);
    if (report?.status === "interrupted" && lock.lost()) {
      // Stopped by the loss, not by SIGTERM: a failure, the run's ERROR record says why.
      report.status = "failed";
      lock.left.stopped.push(policy.table);
    }
    done.tables[policy.table] = report?.status ?? "skipped";
    if (!report) continue;
    for (const [k, n] of Object.entries(report.actions)) done.actions[k] = (done.actions[k] ?? 0) + n;
    if (report.health) done.health[policy.table] = report.health;
  }
  return done;
}

/** The run's status, its job_runs row finished, and its summary record. */
async function finishJob(
  spec: JobSpec,
  session: Kysely<DB>,
  lock: LockSession,
  runId: string | undefined,
  started: number,
  done: TablesDone,
): Promise<RunResult> {
  const { job, log, signal } = spec;
  const { tables } = done;
  const lost = lock.lost();
  // A run that lost its locks cannot vouch for what it did after: failed, whatever its tables say.
  const status = lost ? "failed" : runStatus(Object.values(tables), signal.aborted);
  const summary: RunSummary = {
    event: "run_summary",
    job,
    status,
    ...runKind(spec),
    durationMs: Date.now() - started,
    tables,
    actions: done.actions,
    health: done.health,
  };
  if (lost) await finishLostRun(spec, lock, runId, { ...summary });
  else if (runId) await finishRun(session, runId, status, { ...summary });
  const severity =
    status === "failed" || status === "refused" ? "error" : status === "interrupted" ? "warn" : "notice";
  log[severity](`${job} ${status}`, { ...summary });
  const exitCode =
    status === "ok" || status === "skipped" ? EXIT.ok : status === "refused" ? EXIT.usage : EXIT.failed;
  return { status, exitCode, tables, summary };
}

/** What kind of run this is, on every health and summary record (see processTable). */
function runKind(spec: JobSpec): { dryRun: boolean; clockShifted: boolean } {
  return { dryRun: spec.config.options.dryRun, clockShifted: spec.config.options.clockShifted ?? false };
}

/**
 * One table's work under its advisory lock, logged; undefined when another run holds the lock. A
 * table's failure is its own: it is reported as failed and the run goes on to the next table.
 */
async function processTable(
  spec: JobSpec,
  session: Kysely<DB>,
  signal: AbortSignal,
  policy: TablePolicy,
  runId: string | undefined,
): Promise<TableReport | undefined> {
  const { job, db, log } = spec;
  const tlog = log.child({ table: policy.table });
  const ctx: TableContext = {
    policy,
    log: tlog,
    signal,
    record: async (action) => {
      if (runId) await recordAction(db, runId, { ...action, table: policy.table });
    },
    recordAll: async (actions, within) => {
      if (runId)
        await recordActions(
          within ?? db,
          runId,
          actions.map((a) => ({ ...a, table: policy.table })),
        );
    },
  };
  try {
    const scope = spec.lockScope ? `${policy.table}:${spec.lockScope}` : policy.table;
    const locked = await withAdvisoryLocksOn(session, [`${job}:${scope}`], () => spec.processTable(ctx));
    if (!locked.acquired) {
      tlog.notice("another run holds the lock for this job and table; skipping it", { job });
      return undefined;
    }
    const report = locked.value;
    if (report.health) {
      // One flat record per table: log-based metrics extract numbers from fixed field names
      // (jsonPayload.futureBufferShortfall, .defaultRows, .rollupLagSeconds) with the table as a
      // label. dryRun and clockShifted let the metrics leave out what a dry run or a run with --now
      // reports: a plan for another time is no measurement of the table now.
      tlog.info("table health", {
        event: "table_health",
        job,
        table: policy.table,
        ...runKind(spec),
        ...report.health,
      });
    }
    if (report.error)
      tlog.error(report.status === "refused" ? "table refused" : "table failed", {
        error: report.error,
        // On a terminal the reason is the line above; JSON keeps it on this record for queries.
        ...(report.errorLogged ? { [TEXT]: `table ${report.status} (see above)` } : {}),
      });
    return report;
  } catch (error) {
    tlog.error("table failed", { error: (error as Error).message, cause: error });
    return { status: "failed", actions: {} };
  }
}

/** The run's status from its tables': a failure outranks a refusal, which outranks an interruption. */
function runStatus(statuses: readonly TableStatus[], aborted: boolean): RunResult["status"] {
  if (statuses.includes("failed")) return "failed";
  if (statuses.includes("refused")) return "refused";
  if (statuses.includes("interrupted") || aborted) return "interrupted";
  if (statuses.length > 0 && statuses.every((s) => s === "skipped")) return "skipped";
  return "ok";
}
