// Command-line parsing shared by the commands: strict (an unknown flag is an error, exit 2), with
// the common run flags every job understands.
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { ConfigError } from "../../shared/config/errors.ts";

/**
 * A command line the command cannot run (unknown flag, missing value): exit 2 like any ConfigError.
 * On a terminal the CLI prints `problem` and the command's usage lines to stderr instead of a log
 * line; the message (what a JSON log record carries) names the problem and points at --help.
 */
export class UsageError extends ConfigError {
  constructor(
    readonly command: string,
    readonly problem: string,
    readonly usage: string | undefined,
    options?: ErrorOptions,
  ) {
    super(`${command}: ${problem}. See \`telemetry-jobs ${command} --help\`.`, options);
  }
}

/** How the log reads: every command that logs takes these (jobs/process.ts decides the format). */
export const LOG_FLAGS = {
  json: { type: "boolean", default: false },
  "log-format": { type: "string" },
  verbose: { type: "boolean", default: false },
} as const;

export const LOG_FORMATS = ["text", "json"] as const;

export const COMMON_FLAGS = {
  config: { type: "string" },
  "dry-run": { type: "boolean", default: false },
  now: { type: "string" },
  table: { type: "string", multiple: true },
  ...LOG_FLAGS,
  help: { type: "boolean", short: "h", default: false },
} as const;

export const COMMON_HELP = `Common options:
  --config PATH      policy file (or env TELEMETRY_JOBS_CONFIG=PATH / TELEMETRY_JOBS_CONFIG_JSON='{...}')
  --dry-run          print the plan and change nothing
  --now ISO          plan as if it were this instant (UTC), e.g. 2026-11-21T00:00:00Z
  --table NAME       only this table (repeatable); default: every table in the policy
  --log-format text|json
                     readable lines (the default on a terminal) or JSON lines for Cloud Logging
                     (the default otherwise, e.g. on Cloud Run or in a pipe)
  --json             the same as --log-format json
  --verbose          debug logging
  -h, --help         this help

Database (environment):
  DATABASE_URL=postgres://user@host:5432/db
  or INSTANCE_CONNECTION_NAME=project:region:instance DB_USER=... DB_NAME=...
     [DB_IP_TYPE=PRIVATE|PUBLIC|PSC] [DB_AUTH=IAM|PASSWORD] [DB_PASSWORD=... with PASSWORD]

Exit codes: 0 done or skipped (another run holds the lock), 1 failed, 2 bad configuration or usage.`;

/** The usage lines of a command's help: everything before its first blank line. */
export function usageOf(help: string): string {
  const end = help.indexOf("\n\n");
  return end < 0 ? help : help.slice(0, end);
}

export function parseCommandArgs<O extends ParseArgsOptionsConfig>(
  command: string,
  argv: readonly string[],
  options: O,
  allowPositionals = false,
  help?: string,
) {
  const usage = help === undefined ? undefined : usageOf(help);
  const parsed = parseStrict(command, argv, options, allowPositionals, usage);
  const format = (parsed.values as Record<string, unknown>)["log-format"];
  if (format !== undefined && !(LOG_FORMATS as readonly unknown[]).includes(format))
    throw new UsageError(command, `--log-format must be text or json, not "${String(format)}"`, usage);
  return parsed;
}

function parseStrict<O extends ParseArgsOptionsConfig>(
  command: string,
  argv: readonly string[],
  options: O,
  allowPositionals: boolean,
  usage: string | undefined,
) {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals });
  } catch (cause) {
    const problem = (cause as Error).message.replace(/\.$/, "");
    throw new UsageError(command, problem, usage, { cause });
  }
}
