// What a job hands the runner (JobSpec), what each table's work is given (TableContext) and
// reports (TableReport), and what a run ends with (RunResult, and its RunSummary record).
import type { Kysely } from "kysely";
import type { ExitCode } from "../config/errors.ts";
import type { Config } from "../config/load.ts";
import type { TablePolicy } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import type { TableProblem } from "../partitions/catalog.ts";
import type { AuditAction } from "./audit.ts";

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
  /**
   * Writes the audit rows of actions applied together, in one INSERT (no-op in dry runs); on
   * `within`, the transaction that applies them, when given.
   */
  recordAll?(actions: readonly Omit<AuditAction, "table">[], within?: Kysely<DB>): Promise<void>;
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
