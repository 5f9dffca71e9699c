// Builds the one frozen Config a job runs with: database settings from the environment, the policy
// file from exactly one source (--config, TELEMETRY_JOBS_CONFIG, TELEMETRY_JOBS_CONFIG_JSON) and the
// run options from the command line. Everything is checked here, before any connection is made.
import { readFileSync } from "node:fs";
import { type DatabaseSettings, parseDatabaseEnv } from "./database.ts";
import { ConfigError } from "./errors.ts";
import { formatIssues } from "./format.ts";
import { parseQualifiedName } from "./identifiers.ts";
import { type PolicyFile, PolicyFileSchema, type TablePolicy } from "./policy.ts";

export interface RunOptions {
  readonly dryRun: boolean;
  readonly now: Date;
  /** `now` was given (--now), not read from the clock: the run plans for another instant. */
  readonly clockShifted?: boolean;
  /** Restrict the run to these tables (qualified names); undefined = every table in the policy. */
  readonly tables: readonly string[] | undefined;
  readonly json: boolean;
}

export interface Config {
  readonly database: DatabaseSettings;
  readonly policies: readonly TablePolicy[];
  readonly options: RunOptions;
}

export interface PolicySource {
  configPath?: string | undefined;
  env: NodeJS.ProcessEnv;
}

export function loadPolicyFile({ configPath, env }: PolicySource): PolicyFile {
  const sources = [
    configPath !== undefined ? "--config" : undefined,
    env.TELEMETRY_JOBS_CONFIG ? "TELEMETRY_JOBS_CONFIG" : undefined,
    env.TELEMETRY_JOBS_CONFIG_JSON ? "TELEMETRY_JOBS_CONFIG_JSON" : undefined,
  ].filter((s) => s !== undefined);
  if (sources.length === 0) {
    throw new ConfigError(
      "no policy file: pass --config PATH, or set TELEMETRY_JOBS_CONFIG (a path) or TELEMETRY_JOBS_CONFIG_JSON (inline JSON)",
    );
  }
  if (sources.length > 1) {
    throw new ConfigError(`policy given more than once (${sources.join(" and ")}): keep exactly one source`);
  }
  let text: string;
  let origin: string;
  if (env.TELEMETRY_JOBS_CONFIG_JSON) {
    text = env.TELEMETRY_JOBS_CONFIG_JSON;
    origin = "TELEMETRY_JOBS_CONFIG_JSON";
  } else {
    const path = (configPath ?? env.TELEMETRY_JOBS_CONFIG)!;
    origin = path;
    try {
      text = readFileSync(path, "utf8");
    } catch (cause) {
      throw new ConfigError(`cannot read policy file ${path}: ${(cause as Error).message}`, { cause });
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`policy in ${origin} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  // reportInput: the error can echo what was given (an enum value, the keys of an object).
  const parsed = PolicyFileSchema.safeParse(json, { reportInput: true });
  if (!parsed.success) {
    throw new ConfigError(
      `invalid policy in ${origin}:\n${formatIssues(parsed.error, "", PolicyFileSchema)}`,
    );
  }
  return parsed.data;
}

export function loadDatabaseSettings(env: NodeJS.ProcessEnv): DatabaseSettings {
  const parsed = parseDatabaseEnv(env);
  if (!parsed.success) throw new ConfigError(`invalid database settings:\n${formatIssues(parsed.error)}`);
  return parsed.data;
}

/**
 * `--now`: an ISO-8601 date or date-time. Without an offset it is read as UTC (never as the
 * machine's local time, which would make boundaries depend on where the job runs).
 */
export function parseNow(value: string | undefined, clock: () => Date = () => new Date()): Date {
  if (value === undefined) return clock();
  return parseInstant(value, "--now");
}

/** An ISO-8601 instant from a command-line flag (UTC unless it carries an offset). */
export function parseInstant(value: string, flag: string): Date {
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/.exec(
      value,
    );
  if (!m) throw new ConfigError(`${flag} ${value}: use an ISO-8601 instant such as 2026-11-21T00:00:00Z`);
  const [, y, mo, d, h = "00", mi = "00", s = "00", frac = "", zone = "Z"] = m;
  // Node rolls 2026-02-30 over to March 2: check the calendar date ourselves.
  const calendar = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (
    calendar.getUTCMonth() !== Number(mo) - 1 ||
    calendar.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  ) {
    throw new ConfigError(`${flag} ${value}: not a valid date or time`);
  }
  const offset =
    zone === "Z"
      ? "Z"
      : zone.length === 3
        ? `${zone}:00`
        : zone.includes(":")
          ? zone
          : `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}${frac}${offset}`);
  if (Number.isNaN(date.getTime())) throw new ConfigError(`${flag} ${value}: not a valid date`);
  return date;
}

export function selectTables(
  policies: readonly TablePolicy[],
  requested: readonly string[] | undefined,
): string[] | undefined {
  if (!requested || requested.length === 0) return undefined;
  return requested.map((raw) => {
    const q = parseQualifiedName(raw);
    const name = q ? `${q.schema}.${q.name}` : raw;
    if (!q || !policies.some((p) => p.table === name)) {
      throw new ConfigError(
        `--table ${raw}: not in the policy file (configured: ${policies.map((p) => p.table).join(", ")})`,
      );
    }
    return name;
  });
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value) && !(value instanceof Date)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
