import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import { loadDatabaseSettings, parseNow } from "../../shared/config/load.ts";
import { displayRelation, parseRelationText } from "../../shared/db/relation.ts";
import { listHolds, placeHold, releaseHold } from "../../shared/retention/holds.ts";
import type { MainContext } from "../process.ts";
import { parseCommandArgs } from "./args.ts";
import { openDatabase } from "./environment.ts";

const HELP = `Usage:
  telemetry-jobs hold <schema.partition> --until <ISO date> --reason <text>
  telemetry-jobs unhold <schema.partition>

<schema.partition> is read as SQL reads it: quote a part that has upper case, dots or spaces,
e.g. 'public."Readings 2025"'.
  telemetry-jobs holds [--json]

A held partition is kept by retention past its cutoff until the hold expires; each run logs that it
kept it. Holds live in telemetry_jobs.retention_holds. Database from the environment (DATABASE_URL,
or INSTANCE_CONNECTION_NAME + DB_USER + DB_NAME).`;

const FLAGS = {
  until: { type: "string" },
  reason: { type: "string" },
  json: { type: "boolean", default: false },
  verbose: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The partition as retention names it (displayRelation), read from SQL-style text. */
function partitionArg(command: string, positionals: string[]): string {
  const raw = positionals[0];
  const q = raw === undefined ? undefined : parseRelationText(raw);
  if (!q || positionals.length !== 1) {
    throw new ConfigError(
      `${command}: give exactly one partition as schema.name, quoting a part the way SQL does when it has upper case, dots or spaces (e.g. public.telemetry_points_p202501, 'public."Readings 2025"')`,
    );
  }
  return displayRelation(q);
}

type HoldsRequest =
  | { readonly command: "hold"; readonly partition: string; readonly until: Date; readonly reason: string }
  | { readonly command: "unhold"; readonly partition: string }
  | { readonly command: "holds" };

/** The command's arguments, checked before any connection is made (ConfigError, exit 2). */
function holdsRequest(
  command: HoldsRequest["command"],
  positionals: string[],
  until: string | undefined,
  reason: string | undefined,
): HoldsRequest {
  if (command === "hold") {
    const partition = partitionArg(command, positionals);
    const trimmed = reason?.trim();
    if (!until || !trimmed)
      throw new ConfigError("hold: --until <ISO date> and --reason <text> are required");
    return { command, partition, until: parseNow(until), reason: trimmed };
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
  const { values, positionals } = parseCommandArgs(command, argv, FLAGS, true);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const request = holdsRequest(command, positionals, values.until, values.reason);
  const database = await openDatabase({ database: loadDatabaseSettings(process.env) }, command, log);
  try {
    if (request.command === "hold") {
      const { partition, until, reason } = request;
      await placeHold(database.db, { partition, until, reason });
      log.notice(`held ${partition} until ${until.toISOString()}`, {
        partition,
        until,
        reason: values.reason,
      });
    } else if (request.command === "unhold") {
      const { partition } = request;
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
