import { EXIT, type ExitCode } from "../../shared/config/errors.ts";
import { policyTable } from "../../shared/config/policy.ts";
import { inspectTable, readCatalog } from "../../shared/partitions/catalog.ts";
import { assessHealth, type TableHealth } from "../../shared/partitions/health.ts";
import { awaitedRollupTargets, selectedPolicies } from "../../shared/run/runner.ts";
import type { MainContext } from "../process.ts";
import { COMMON_FLAGS, COMMON_HELP, parseCommandArgs } from "./args.ts";
import { buildConfig, openDatabase } from "./environment.ts";

const HELP = `Usage: telemetry-jobs status [options]

Per managed table: partitions, covered range, future buffer, rows in DEFAULT, missing intervals,
and a verdict OK / WARN / CRIT with reasons. Exits 1 when any table is CRIT, so it can run as a
scheduled check. Changes nothing.

${COMMON_HELP}`;

export async function status(argv: readonly string[], { log }: MainContext): Promise<ExitCode> {
  const { values } = parseCommandArgs("status", argv, COMMON_FLAGS);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const config = buildConfig(values, process.env);
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
      values.json ? `${JSON.stringify({ now: config.options.now, tables: reports })}\n` : renderText(reports),
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
