import { ConfigError } from "../../shared/config/errors.ts";
import { loadDatabaseSettings, parseNow } from "../../shared/config/load.ts";
import { displayRelation, parseRelationText } from "../../shared/db/relation.ts";
import { listHolds, placeHold, releaseHold } from "../../shared/retention/holds.ts";
import type { MainContext } from "../process.ts";
import { parseCommandArgs } from "./args.ts";
import { openDatabase } from "./environment.ts";

export const HELP = `Usage:
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

export async function holds(
  command: "hold" | "unhold" | "holds",
  argv: readonly string[],
  { log }: MainContext,
): Promise<number> {
  const { values, positionals } = parseCommandArgs(command, argv, FLAGS, true);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  let partition: string | undefined;
  let until: Date | undefined;
  if (command === "hold") {
    partition = partitionArg(command, positionals);
    if (!values.until || !values.reason?.trim())
      throw new ConfigError("hold: --until <ISO date> and --reason <text> are required");
    until = parseNow(values.until);
  } else if (command === "unhold") {
    partition = partitionArg(command, positionals);
  } else if (positionals.length > 0) {
    throw new ConfigError("holds: takes no arguments");
  }
  const database = await openDatabase({ database: loadDatabaseSettings(process.env) }, command, log);
  try {
    if (command === "hold") {
      await placeHold(database.db, { partition: partition!, until: until!, reason: values.reason!.trim() });
      log.notice(`held ${partition} until ${until!.toISOString()}`, {
        partition,
        until,
        reason: values.reason,
      });
    } else if (command === "unhold") {
      const removed = await releaseHold(database.db, partition!);
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
    return 0;
  } finally {
    await database.close();
  }
}
