// The common job runner. Every job is: validate the policies against the database (exit 2 before
// changing anything), open an audit row, then for each table, under an advisory lock for
// (job, table), do the table's work in isolation: one table's failure never undoes or stops
// another's. SIGTERM stops between actions. Ends with one summary record.
import { hostname } from "node:os";
import { type Kysely, sql } from "kysely";
import { ConfigError, EXIT, type ExitCode } from "../config/errors.ts";
import type { Config } from "../config/load.ts";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import { relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { TEXT } from "../log/text-view.ts";
import { inspectTable, type TableProblem } from "../partitions/catalog.ts";
import { withAdvisoryLock } from "./advisory-lock.ts";
import { type AuditAction, bookkeepingReady, finishRun, recordAction, startRun } from "./audit.ts";

export type TableStatus = "ok" | "skipped" | "failed" | "interrupted" | "refused";

export interface TableReport {
  /**
   * refused: a safety guard said no (exit 2): before anything changed, or (a DEFAULT rescue above
   * maxRescueRows) after the rest of the table's plan was made.
   */
  status: "ok" | "failed" | "interrupted" | "refused";
  actions: Record<string, number>;
  health?: Record<string, unknown>;
  error?: string;
  /** The error is what a record of this run already said (the executor's failed action, a finding). */
  errorLogged?: boolean;
}

export interface TableContext {
  readonly policy: TablePolicy;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Writes an audit row (no-op in dry runs). */
  record(action: Omit<AuditAction, "table">): Promise<void>;
}

export interface JobSpec {
  job: string;
  config: Config;
  db: Kysely<DB>;
  log: Logger;
  signal: AbortSignal;
  /** Which policies this job acts on (e.g. retention: those with a retention block). */
  appliesTo?: (policy: TablePolicy) => boolean;
  /** Checks a policy against the database; a problem is a configuration error (exit 2). */
  inspect?: (db: Kysely<DB>, policy: TablePolicy) => Promise<TableProblem | undefined>;
  processTable(ctx: TableContext): Promise<TableReport>;
  /** What the advisory lock excludes besides (job, table), e.g. the shard a Cloud Run task owns. */
  lockScope?: string;
}

export interface RunSummary {
  event: "run_summary";
  job: string;
  status: RunResult["status"];
  dryRun: boolean;
  /** The run planned for another instant than now (--now). */
  clockShifted: boolean;
  durationMs: number;
  tables: Record<string, TableStatus>;
  /** Actions taken (planned, in a dry run) by kind, over all tables. */
  actions: Record<string, number>;
  health: Record<string, unknown>;
}

export interface RunResult {
  status: "ok" | "skipped" | "failed" | "interrupted" | "refused";
  exitCode: ExitCode;
  tables: Record<string, TableStatus>;
  summary: RunSummary;
}

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
  const { job, config, db, log, signal } = spec;
  const started = Date.now();
  const dryRun = config.options.dryRun;
  if (!(await bookkeepingReady(db))) {
    throw new ConfigError(
      "the telemetry_jobs bookkeeping schema is missing: run `telemetry-jobs migrate up` first",
    );
  }
  const selected = selectedPolicies(config).filter((p) => spec.appliesTo?.(p) ?? true);
  const awaited = await awaitedRollupTargets(db, config, selected);
  const policies = await validatePolicies(db, config, spec, selected, awaited);
  for (const policy of awaited)
    log.notice(
      `${policy.table} does not exist yet: it is a rollup target, which \`telemetry-jobs adopt\` (or rollup-hourly's first run) creates from the policy; ${job} manages it from then on`,
      { table: policy.table },
    );
  if (policies.length === 0) log.notice(`no table in the policy is managed by ${job}`);
  const runId = dryRun
    ? undefined
    : await startRun(db, {
        job,
        logicalNow: config.options.now,
        args: { dryRun, tables: config.options.tables ?? null },
        execution: process.env.CLOUD_RUN_EXECUTION,
        host: hostname(),
      });
  const tableNames = policies.map((p) => p.table);
  log.info(dryRun ? "dry run: planning only, nothing will change" : "run started", {
    runId,
    now: config.options.now,
    tables: tableNames,
    [TEXT]: `${job} ${dryRun ? "dry run (nothing will change)" : `run ${runId}`}, now ${config.options.now.toISOString()}: ${tableNames.length} table${tableNames.length === 1 ? "" : "s"}`,
  });

  const tables: Record<string, TableStatus> = {};
  const actionCounts: Record<string, number> = {};
  const health: Record<string, unknown> = {};
  for (const policy of policies) {
    if (signal.aborted) {
      tables[policy.table] = "interrupted";
      continue;
    }
    const report = await processTable(spec, policy, runId);
    tables[policy.table] = report?.status ?? "skipped";
    if (!report) continue;
    for (const [k, n] of Object.entries(report.actions)) actionCounts[k] = (actionCounts[k] ?? 0) + n;
    if (report.health) health[policy.table] = report.health;
  }

  const status = runStatus(Object.values(tables), signal.aborted);
  const summary: RunSummary = {
    event: "run_summary",
    job,
    status,
    ...runKind(spec),
    durationMs: Date.now() - started,
    tables,
    actions: actionCounts,
    health,
  };
  if (runId) await finishRun(db, runId, status, { ...summary });
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
  policy: TablePolicy,
  runId: string | undefined,
): Promise<TableReport | undefined> {
  const { job, db, log, signal } = spec;
  const tlog = log.child({ table: policy.table });
  const ctx: TableContext = {
    policy,
    log: tlog,
    signal,
    record: async (action) => {
      if (runId) await recordAction(db, runId, { ...action, table: policy.table });
    },
  };
  try {
    const locked = await withAdvisoryLock(
      db,
      job,
      spec.lockScope ? `${policy.table}:${spec.lockScope}` : policy.table,
      () => spec.processTable(ctx),
    );
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
