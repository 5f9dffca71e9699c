// What every session of the jobs pins, whatever the database's or role's defaults (see
// sessionOptions), and how a DATABASE_URL's own options are kept beside those pins.
import type pg from "pg";

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
 *   finishing a long move while holding its locks;
 * - default_transaction_isolation=read committed: the guards lock, then read (holds, marks); under
 *   a REPEATABLE READ default the snapshot would be taken before the lock wait and miss a hold
 *   committed meanwhile. An export asks for its lasting snapshot explicitly;
 * - standard_conforming_strings=on: the literals here are written for it ('\x00'::bytea);
 * - statement_timeout, idle_in_transaction_session_timeout, idle_session_timeout 0: a role's default
 *   would cancel a long VALIDATE, end an export's snapshot, or end the session holding the run's
 *   advisory locks. The jobs bound their own work (lock_timeout, time budgets);
 * search_path is left as the database and role set it: the application's own triggers and
 *   functions, which the jobs' writes fire (a retention DELETE, rows moved out of DEFAULT), run
 *   with it and may need it. Every relation here is qualified.
 * A DATABASE_URL's `?options=` are kept ahead of these (poolConfigForUrl).
 *
 * And TCP keepalive on our side (keepAlive): a session that only holds advisory locks sends
 * nothing for minutes, so a server that vanished without a word (a failover, a dropped route)
 * would go unnoticed until its next statement. With probes from KEEPALIVE_IDLE_MS of silence,
 * the socket fails and pg's 'error' event tells the lock's holder (holdSession) to stop.
 */
export const SESSION_LOCK_TIMEOUT_MS = 30_000;
export const KEEPALIVE_IDLE_MS = 10_000;

export function sessionOptions(job: string): {
  application_name: string;
  options: string;
  keepAlive: boolean;
  keepAliveInitialDelayMillis: number;
} {
  return {
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    application_name: `telemetry-jobs/${job}`.slice(0, 63),
    options: [
      "-c TimeZone=UTC",
      "-c DateStyle=ISO,MDY",
      "-c IntervalStyle=postgres",
      "-c extra_float_digits=3",
      `-c lock_timeout=${SESSION_LOCK_TIMEOUT_MS}`,
      "-c client_connection_check_interval=1000",
      // A space in a value is escaped with a backslash in startup options.
      "-c default_transaction_isolation=read\\ committed",
      "-c standard_conforming_strings=on",
      "-c statement_timeout=0",
      "-c idle_in_transaction_session_timeout=0",
      "-c idle_session_timeout=0",
    ].join(" "),
  };
}

/**
 * The pool's connection settings for a URL with the session settings: pg lets a URL's query
 * parameters override the settings it is given, so an `options` parameter (a provider's endpoint
 * option, a DBA's `-c work_mem=...`) would replace every session setting above. It is taken out
 * of the URL and put ahead of them instead: both apply, and where both set a parameter the later
 * one, ours, wins. The timeouts pg sends as startup parameters of their own (statement_timeout,
 * lock_timeout, idle_in_transaction_session_timeout), which the server applies after `options`,
 * and pg's client-side query_timeout, are dropped from the URL like a role's defaults: the jobs
 * bound their own work.
 */
const URL_PARAMETERS_PINNED = new Set([
  "options",
  "statement_timeout",
  "lock_timeout",
  "idle_in_transaction_session_timeout",
  "query_timeout",
]);

export function poolConfigForUrl(
  url: string,
  session: ReturnType<typeof sessionOptions>,
): ReturnType<typeof sessionOptions> & { connectionString: string } {
  // A fragment means nothing to pg (its URL parser drops it); left on, it would end up in a value.
  const hash = url.indexOf("#");
  const bare = hash === -1 ? url : url.slice(0, hash);
  const at = bare.indexOf("?");
  if (at === -1) return { connectionString: bare, ...session };
  const theirs: string[] = [];
  const kept = bare
    .slice(at + 1)
    .split("&")
    .filter((pair) => {
      // Read as pg reads the query (URLSearchParams: '+' is a space, %XX decoded).
      const [key, value] = [...new URLSearchParams(pair).entries()][0] ?? [];
      if (key === "options" && value) theirs.push(value);
      return !(key !== undefined && URL_PARAMETERS_PINNED.has(key));
    });
  const connectionString = kept.length > 0 ? `${bare.slice(0, at)}?${kept.join("&")}` : bare.slice(0, at);
  return { connectionString, ...session, options: [...theirs, session.options].join(" ") };
}

/**
 * transaction_timeout (PostgreSQL 17 and later) at 0, like the other timeouts in sessionOptions: a
 * role's default would end an export's snapshot or a long batch. It cannot go in the startup
 * options, which a server before 17 refuses as an unknown parameter, so it is set on each new
 * connection once the server's version is known: the pool's onConnect hook, which the pool awaits
 * before it lends the connection out (and whose failure fails that connection's acquisition).
 */
export async function pinTransactionTimeout(client: pg.ClientBase): Promise<void> {
  await client.query(
    "SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000",
  );
}
