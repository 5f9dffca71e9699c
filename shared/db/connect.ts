// One Kysely<DB> per process, over a pg Pool that reaches PostgreSQL either by URL or through the
// Cloud SQL connector (IAM database authentication needs no password: the connector injects a
// short-lived OAuth token). Every session runs with TimeZone=UTC, so timestamps without a zone
// and date_trunc() mean UTC, and with application_name telemetry-jobs/<job> for pg_stat_activity.
import type { Connector } from "@google-cloud/cloud-sql-connector";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { type DatabaseSettings, DEFAULT_CONNECT_TIMEOUT_MS } from "../config/database.ts";
import "./pg-types.ts";
import type { DB } from "./schema.ts";

export interface Database {
  readonly db: Kysely<DB>;
  /** Destroys the pool and closes the connector. Safe to call twice. */
  close(): Promise<void>;
}

export interface ConnectOptions {
  job: string;
  poolSize?: number;
  /** Where an error of an idle connection is reported (server restart, network). Default: stderr. */
  onIdleError?: (error: Error) => void;
}

/**
 * Session settings for every connection, so that no result depends on the database's or the
 * role's defaults:
 * - TimeZone=UTC: timestamps without a zone and date_trunc() mean UTC;
 * - DateStyle=ISO, IntervalStyle=postgres: partition bounds (pg_get_expr) and timestamps come back
 *   in the one format the parsers here read (under "SQL, DMY" a bound reads '01/11/2026 00:00:00
 *   UTC' and was taken for one this tool does not interpret);
 * - extra_float_digits=3: float8 values (rollup sums) round-trip exactly;
 * - lock_timeout: a backstop so that no statement of ours can queue forever behind someone else's
 *   lock (DDL sets its own, shorter, per transaction);
 * - client_connection_check_interval: a session whose job was killed mid-statement (SIGKILL,
 *   Cloud Run's task timeout) notices the dead client within a second and rolls back, instead of
 *   finishing a long move while holding its locks.
 */
export const SESSION_LOCK_TIMEOUT_MS = 30_000;

export function sessionOptions(job: string): { application_name: string; options: string } {
  return {
    application_name: `telemetry-jobs/${job}`.slice(0, 63),
    options: [
      "-c TimeZone=UTC",
      "-c DateStyle=ISO,MDY",
      "-c IntervalStyle=postgres",
      "-c extra_float_digits=3",
      `-c lock_timeout=${SESSION_LOCK_TIMEOUT_MS}`,
      "-c client_connection_check_interval=1000",
    ].join(" "),
  };
}

export async function connectDatabase(settings: DatabaseSettings, opts: ConnectOptions): Promise<Database> {
  const session = sessionOptions(opts.job);
  const max = opts.poolSize ?? 4;
  // Opening a connection gives up after this long with "timeout exceeded when trying to connect"
  // (a black-holed address would otherwise hang until the task's timeout).
  const connectionTimeoutMillis = settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  let connector: Connector | undefined;
  let pool: pg.Pool;
  if (settings.kind === "url") {
    pool = new pg.Pool({ connectionString: settings.url, max, connectionTimeoutMillis, ...session });
  } else {
    // Loaded here, not at the top: the connector and its Google API clients take about 300 ms to
    // import, which a run with DATABASE_URL would pay for nothing.
    const { AuthTypes, Connector, IpAddressTypes } = await import("@google-cloud/cloud-sql-connector");
    connector = new Connector();
    const clientOpts = await connector.getOptions({
      instanceConnectionName: settings.instanceConnectionName,
      ipType: IpAddressTypes[settings.ipType],
      authType: settings.authType === "IAM" ? AuthTypes.IAM : AuthTypes.PASSWORD,
    });
    pool = new pg.Pool({
      ...clientOpts,
      user: settings.user,
      database: settings.database,
      ...(settings.password ? { password: settings.password } : {}),
      max,
      connectionTimeoutMillis,
      ...session,
    });
  }
  // An idle client that errors (server restart, network) must not crash the process, and must not
  // vanish silently either: the next query opens a new connection, but the operator sees why.
  pool.on("error", (error) => {
    if (opts.onIdleError) opts.onIdleError(error);
    else
      process.stderr.write(`telemetry-jobs/${opts.job}: idle database connection failed: ${error.message}\n`);
  });
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    db,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await db.destroy();
      } finally {
        connector?.close();
      }
    },
  };
}
