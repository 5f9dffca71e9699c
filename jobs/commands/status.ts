import { EXIT, type ExitCode, isConfigError } from "../../shared/config/errors.ts";
import type { Config } from "../../shared/config/load.ts";
import { policyTable } from "../../shared/config/policy.ts";
import type { Logger } from "../../shared/log/logger.ts";
import { inspectTable, readCatalog } from "../../shared/partitions/catalog.ts";
import { assessHealth, type TableHealth } from "../../shared/partitions/health.ts";
import { awaitedRollupTargets, selectedPolicies } from "../../shared/run/runner.ts";
import { CouldNotCheck, type MainContext } from "../process.ts";
import { COMMON_FLAGS, parseCommandArgs } from "./args.ts";
import { buildConfig, openDatabase } from "./environment.ts";

// status changes nothing, so it has no --dry-run.
const { "dry-run": _dryRun, ...FLAGS } = COMMON_FLAGS;

const HELP = `Usage: telemetry-jobs status [--table NAME]... [--now ISO] [--json] [--config PATH]

Per managed table: partitions, covered range, future buffer, rows in DEFAULT, missing intervals,
and a verdict OK / WARN / CRIT with reasons. Changes nothing; meant to run as a scheduled check.

Options:
  --config PATH      policy file (or env TELEMETRY_JOBS_CONFIG=PATH / TELEMETRY_JOBS_CONFIG_JSON='{...}')
  --table NAME       only this table (repeatable); default: every partitioned table in the policy
  --now ISO          assess as if it were this instant (UTC), e.g. 2026-11-21T00:00:00Z
  --json             the report as one JSON document {now, tables: [...]} instead of text
  --log-format text|json
                     how log lines (not the report) read; default text on a terminal, else JSON
  --verbose          debug logging
  -h, --help         this help

Database (environment):
  DATABASE_URL=postgres://user@host:5432/db
  or INSTANCE_CONNECTION_NAME=project:region:instance DB_USER=... DB_NAME=...
     [DB_IP_TYPE=PRIVATE|PUBLIC|PSC] [DB_AUTH=IAM|PASSWORD] [DB_PASSWORD=... with PASSWORD]

Exit codes:
  0  every table OK or WARN (a WARN needs a look, not a page)
  1  some table is CRIT
  2  bad configuration or usage (nothing was checked)
  3  could not check: no connection, or a catalog query failed`;

export async function status(argv: readonly string[], { log }: MainContext): Promise<ExitCode> {
  const { values } = parseCommandArgs("status", argv, FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const config = buildConfig(values, process.env);
  try {
    return await check(config, values.json, log);
  } catch (error) {
    if (isConfigError(error)) throw error;
    // Not a verdict about the tables: a scheduled check must tell this from CRIT.
    throw new CouldNotCheck((error as Error)?.message ?? String(error), { cause: error });
  }
}

async function check(config: Config, json: boolean, log: Logger): Promise<ExitCode> {
  const database = await openDatabase(config, "status", log);
  try {
    const reports: TableHealth[] = [];
    // Plain (partitioned: false) tables have no partitions to assess; retention handles them.
    const selected = selectedPolicies(config).filter((p) => p.partitioned);
    const awaited = await awaitedRollupTargets(database.db, config, selected);
    for (const policy of selected) {
      if (awaited.includes(policy)) {
        reports.push(
          unmanageable(
            policy.table,
            "a rollup target not created yet: `telemetry-jobs adopt` (or the next rollup-hourly run) creates it",
            "WARN",
          ),
        );
        continue;
      }
      const table = policyTable(policy);
      const inspected = await inspectTable(database.db, table, policy.timeColumn);
      if (!inspected.ok) {
        reports.push(unmanageable(policy.table, inspected.problem.message));
        continue;
      }
      const catalog = await readCatalog(database.db, table, policy.timeColumn, policy.interval);
      reports.push(assessHealth(policy, catalog, config.options.now));
    }
    process.stdout.write(
      json ? `${JSON.stringify({ now: config.options.now, tables: reports })}\n` : renderText(reports),
    );
    return reports.some((r) => r.verdict === "CRIT") ? EXIT.failed : EXIT.ok;
  } finally {
    await database.close();
  }
}

function unmanageable(table: string, reason: string, verdict: "WARN" | "CRIT" = "CRIT"): TableHealth {
  return {
    table,
    verdict,
    reasons: [`${verdict}: ${reason}`],
    partitions: 0,
    coveredFrom: null,
    coveredTo: null,
    futureBufferIntervals: 0,
    futureBufferShortfall: 0,
    defaultRows: 0,
    missingIntervals: 0,
    totalBytes: 0,
    totalRowsEstimate: 0,
  };
}

function renderText(reports: TableHealth[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`${r.verdict.padEnd(4)} ${r.table}`);
    lines.push(
      `     partitions ${r.partitions}, covered ${r.coveredFrom ?? "-"} .. ${r.coveredTo ?? "-"}, ` +
        `future buffer ${r.futureBufferIntervals}, rows in DEFAULT ${r.defaultRows}, missing ${r.missingIntervals}, ` +
        `~${r.totalRowsEstimate} rows, ${(r.totalBytes / 1048576).toFixed(1)} MiB`,
    );
    for (const reason of r.reasons) lines.push(`     ${reason}`);
  }
  return `${lines.join("\n")}\n`;
}
