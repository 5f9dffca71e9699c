// Runs jobs the way production does, against a test database: in-process through the same runner
// (fast, and the logs are captured as parsed JSON records), or as a real child process of the CLI
// (for exit codes, signals and SIGKILL).
import { type ChildProcess, spawn } from "node:child_process";
import { Writable } from "node:stream";
import type { Kysely } from "kysely";
import { type Config, deepFreeze } from "../../shared/config/load.ts";
import { PolicyFileSchema } from "../../shared/config/policy.ts";
import type { Relation } from "../../shared/db/relation.ts";
import type { DB } from "../../shared/db/schema.ts";
import { createLogger } from "../../shared/log/logger.ts";
import { runPartitionManagerJob } from "../../shared/partitions/job.ts";
import { applyRetentionAction } from "../../shared/retention/apply.ts";
import { runRetentionJob } from "../../shared/retention/job.ts";
import { runRollupJob } from "../../shared/rollups/job.ts";
import type { HourRange, ShardSpec } from "../../shared/rollups/plan.ts";
import type { RunResult } from "../../shared/run/runner.ts";

export type LogRecord = Record<string, any> & { severity: string; message: string };

export function captureLogger(job: string) {
  const records: LogRecord[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) records.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger({ job, format: "json", out, verbose: true }), records };
}

export function makeConfig(
  url: string,
  tables: unknown[],
  options: { now: string | Date; dryRun?: boolean; tables?: string[] },
): Config {
  return deepFreeze({
    database: { kind: "url" as const, url },
    policies: PolicyFileSchema.parse({ tables }).tables,
    options: {
      dryRun: options.dryRun ?? false,
      now: new Date(options.now),
      tables: options.tables,
      json: true,
    },
  });
}

/**
 * One row delete of a plain table applied as retention's executor does (applyRetentionAction): the
 * table's policy entry `policy`, read at `at.now`; the rows of `at.relation` before `at.before`,
 * planned as `at.rows` (an estimate with `rowsEstimated`). Its outcome and the records it logged.
 */
export async function applyPlainRowDelete(
  db: Kysely<DB>,
  url: string,
  policy: Record<string, unknown>,
  at: {
    relation: Relation;
    now: string;
    before: string;
    rows: number;
    rowsEstimated?: true;
    batchTargetMs?: number;
    startBlock?: number;
  },
) {
  const config = makeConfig(url, [policy], { now: at.now });
  const { log, records } = captureLogger("retention");
  const outcome = await applyRetentionAction(
    {
      db,
      policy: config.policies[0]!,
      log,
      signal: new AbortController().signal,
      now: new Date(at.now),
      ...(at.batchTargetMs === undefined ? {} : { batchTargetMs: at.batchTargetMs }),
    },
    {
      kind: "delete_rows",
      relation: at.relation,
      reason: "plain_table",
      before: new Date(at.before),
      rows: at.rows,
      ...(at.rowsEstimated ? { rowsEstimated: true as const } : {}),
    },
    at.startBlock === undefined ? undefined : { startBlock: at.startBlock },
  );
  return { outcome, records };
}

export async function runPartitionManager(
  db: Kysely<DB>,
  config: Config,
  signal: AbortSignal = new AbortController().signal,
): Promise<RunResult & { logs: LogRecord[] }> {
  const { log, records } = captureLogger("partition-manager");
  const result = await runPartitionManagerJob(db, config, log, signal);
  return { ...result, logs: records };
}

export async function runRetention(
  db: Kysely<DB>,
  config: Config,
  options: { force?: boolean; signal?: AbortSignal } = {},
): Promise<RunResult & { logs: LogRecord[] }> {
  const { log, records } = captureLogger("retention");
  const signal = options.signal ?? new AbortController().signal;
  const result = await runRetentionJob(db, config, log, signal, { force: options.force ?? false });
  return { ...result, logs: records };
}

export async function runRollup(
  db: Kysely<DB>,
  config: Config,
  options: { shard?: ShardSpec; rebuild?: HourRange; signal?: AbortSignal } = {},
): Promise<RunResult & { logs: LogRecord[] }> {
  const { log, records } = captureLogger("rollup-hourly");
  const result = await runRollupJob(db, config, log, options.signal ?? new AbortController().signal, {
    shard: options.shard ?? { count: 1, index: 0 },
    rebuild: options.rebuild,
  });
  return { ...result, logs: records };
}

export interface CliRun {
  child: ChildProcess;
  lines: LogRecord[];
  stderr: string;
  /** Resolves with the first log record whose message contains `text`. */
  waitFor(text: string, timeoutMs?: number): Promise<LogRecord>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `telemetry-jobs <args>` (from source, via tsx) with DATABASE_URL and extra env. */
export function startCli(args: string[], env: Record<string, string>): CliRun {
  const child = spawn(process.execPath, ["--import", "tsx", "jobs/cli.ts", ...args, "--json"], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: LogRecord[] = [];
  let stderr = "";
  let buffer = "";
  const waiters: { text: string; resolve: (r: LogRecord) => void }[] = [];
  child.stdout!.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl = buffer.indexOf("\n");
    while (nl >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf("\n");
      if (!line.trim()) continue;
      let record: LogRecord;
      try {
        record = JSON.parse(line);
      } catch {
        record = { severity: "DEFAULT", message: line };
      }
      lines.push(record);
      for (const w of [...waiters]) {
        if (String(record.message).includes(w.text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(record);
        }
      }
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    lines,
    get stderr() {
      return stderr;
    },
    waitFor(text, timeoutMs = 30_000) {
      const found = lines.find((l) => String(l.message).includes(text));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `no log line containing "${text}" within ${timeoutMs} ms; got:\n${lines.map((l) => l.message).join("\n")}\n${stderr}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          text,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
    },
    done,
  };
}

export async function runCli(args: string[], env: Record<string, string>) {
  const run = startCli(args, env);
  const { code } = await run.done;
  return { code, lines: run.lines, stderr: run.stderr };
}
