// Turns parsed flags + environment into the frozen Config and an open database. Config problems
// throw ConfigError before any connection is made.
import { describeDatabase } from "../../shared/config/database.ts";
import {
  type Config,
  deepFreeze,
  loadDatabaseSettings,
  loadPolicyFile,
  parseNow,
  selectTables,
} from "../../shared/config/load.ts";
import { type ConnectOptions, connectDatabase, type Database } from "../../shared/db/connect.ts";
import type { Logger } from "../../shared/log/logger.ts";

export interface CommonValues {
  config?: string | undefined;
  "dry-run"?: boolean | undefined;
  now?: string | undefined;
  table?: string[] | undefined;
  json?: boolean | undefined;
}

export function buildConfig(values: CommonValues, env: NodeJS.ProcessEnv): Config {
  const policyFile = loadPolicyFile({ configPath: values.config, env });
  const database = loadDatabaseSettings(env);
  const now = parseNow(values.now);
  const tables = selectTables(policyFile.tables, values.table);
  return deepFreeze({
    database,
    policies: policyFile.tables,
    options: {
      dryRun: values["dry-run"] ?? false,
      now,
      clockShifted: values.now !== undefined,
      tables,
      json: values.json ?? false,
    },
  });
}

export async function openDatabase(
  config: Pick<Config, "database">,
  job: string,
  log: Logger,
): Promise<Database> {
  log.debug("connecting", { database: describeDatabase(config.database) });
  return await connectDatabase(config.database, { job, onIdleError: reportConnectionFailure(log) });
}

/**
 * A connection that fails (the server ended its backend, restarted, or the network dropped it) is
 * an ERROR record with the server's reason, where the run's other records are: the statement that
 * then fails often says only that the client is no longer queryable.
 */
export function reportConnectionFailure(log: Logger): NonNullable<ConnectOptions["onIdleError"]> {
  return (error, state) => log.error("database connection failed", { error, state });
}
