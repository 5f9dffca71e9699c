import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import { loadDatabaseSettings, loadPolicyFile, parseInstant } from "../../shared/config/load.ts";
import { policyTable } from "../../shared/config/policy.ts";
import { displayRelation, parseRelationText, type Relation } from "../../shared/db/relation.ts";
import {
  holdTargetProblem,
  listHolds,
  type ManagedTable,
  placeHold,
  releaseHold,
} from "../../shared/retention/holds.ts";
import type { MainContext } from "../process.ts";
import { LOG_FLAGS, parseCommandArgs } from "./args.ts";
import { openDatabase } from "./environment.ts";

const HELP = `Usage:
  telemetry-jobs hold <schema.partition> --until <ISO date> --reason <text> [--config PATH]
  telemetry-jobs unhold <schema.partition>
  telemetry-jobs holds [--json]

--json lists the holds as one JSON document; --log-format text|json says how the log lines read.

<schema.partition> is read as SQL reads it: quote a part that has upper case, dots or spaces,
e.g. 'public."Readings 2025"'. hold refuses (exit 2, nothing written) a name that is neither a
partition of a table in the policy (--config, TELEMETRY_JOBS_CONFIG or TELEMETRY_JOBS_CONFIG_JSON)
nor one retention took out of such a table (detached, archived, or left by a killed run), naming the
closest partition, and an --until that is not in the future.

A held partition is kept by retention past its cutoff until the hold expires; each run logs that it
kept it. Holds live in telemetry_jobs.retention_holds. unhold takes any name, so a stale hold can
always be removed. Database from the environment (DATABASE_URL, or INSTANCE_CONNECTION_NAME +
DB_USER + DB_NAME).`;

const FLAGS = {
  config: { type: "string" },
  until: { type: "string" },
  reason: { type: "string" },
  ...LOG_FLAGS,
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The partition as its parts, read from SQL-style text. */
function partitionArg(command: string, positionals: string[]): Relation {
  const raw = positionals[0];
  const q = raw === undefined ? undefined : parseRelationText(raw);
  if (!q || positionals.length !== 1) {
    throw new ConfigError(
      `${command}: give exactly one partition as schema.name, quoting a part the way SQL does when it has upper case, dots or spaces (e.g. public.telemetry_points_p202501, 'public."Readings 2025"')`,
    );
  }
  return q;
}

type HoldsRequest =
  | {
      readonly command: "hold";
      readonly partition: Relation;
      readonly until: Date;
      readonly reason: string;
      /** The partitioned tables of the policy: a hold names a partition of one of them. */
      readonly managed: readonly ManagedTable[];
    }
  | { readonly command: "unhold"; readonly partition: Relation }
  | { readonly command: "holds" };

/** The command's arguments, checked before any connection is made (ConfigError, exit 2). */
function holdsRequest(
  command: HoldsRequest["command"],
  positionals: string[],
  values: { until?: string | undefined; reason?: string | undefined; config?: string | undefined },
): HoldsRequest {
  if (command === "hold") {
    const partition = partitionArg(command, positionals);
    const trimmed = values.reason?.trim();
    if (!values.until || !trimmed)
      throw new ConfigError("hold: --until <ISO date> and --reason <text> are required");
    const until = parseInstant(values.until, "--until");
    if (until.getTime() <= Date.now())
      throw new ConfigError(
        `hold: --until ${until.toISOString()} is not in the future: the hold would protect nothing. Give the instant until which retention must keep the partition`,
      );
    const policy = loadPolicyFile({ configPath: values.config, env: process.env });
    const managed = policy.tables
      .filter((p) => p.partitioned)
      .map((p) => ({ relation: policyTable(p), table: p.table }));
    return { command, partition, until, reason: trimmed, managed };
  }
  if (command === "unhold") return { command, partition: partitionArg(command, positionals) };
  if (positionals.length > 0) throw new ConfigError("holds: takes no arguments");
  return { command };
}

export async function holds(
  command: HoldsRequest["command"],
  argv: readonly string[],
  { log }: MainContext,
): Promise<ExitCode> {
  const { values, positionals } = parseCommandArgs(command, argv, FLAGS, true, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const request = holdsRequest(command, positionals, values);
  const database = await openDatabase({ database: loadDatabaseSettings(process.env) }, command, log);
  try {
    if (request.command === "hold") {
      const { until, reason } = request;
      const problem = await holdTargetProblem(database.db, request.partition, request.managed);
      if (problem) throw new ConfigError(`hold: ${problem}. Nothing was written`);
      const partition = displayRelation(request.partition);
      const note = await placeHold(database.db, { partition: request.partition, until, reason });
      log.notice(`held ${partition} until ${until.toISOString()}`, {
        partition,
        until,
        reason: values.reason,
      });
      if (note) log.warn(`${partition}: ${note}`, { partition });
    } else if (request.command === "unhold") {
      const partition = displayRelation(request.partition);
      const removed = await releaseHold(database.db, partition);
      log.notice(removed ? `released the hold on ${partition}` : `${partition} had no hold`, { partition });
    } else {
      const all = await listHolds(database.db);
      if (values.json) process.stdout.write(`${JSON.stringify(all)}\n`);
      else if (all.length === 0) process.stdout.write("no holds\n");
      else
        for (const h of all)
          process.stdout.write(
            `${h.partition}  until ${h.until.toISOString()}  by ${h.createdBy}: ${h.reason}\n`,
          );
    }
    return EXIT.ok;
  } finally {
    await database.close();
  }
}
