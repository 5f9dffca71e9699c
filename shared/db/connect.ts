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
import { pinTransactionTimeout, poolConfigForUrl, sessionOptions } from "./session-settings.ts";

export {
  KEEPALIVE_IDLE_MS,
  poolConfigForUrl,
  SESSION_LOCK_TIMEOUT_MS,
  sessionOptions,
} from "./session-settings.ts";

export interface Database {
  readonly db: Kysely<DB>;
  /** Destroys the pool and closes the connector. Safe to call twice. */
  close(): Promise<void>;
}

export interface ConnectOptions {
  job: string;
  poolSize?: number;
  /**
   * Where a connection's own failure is reported (server restart, terminated backend, network),
   * whether it was idle in the pool or lent out (a statement on it fails on its own). Default: stderr.
   */
  onIdleError?: (error: Error, state: ConnectionState) => void;
}

/** Where a connection was when it failed: in the pool, or lent out to a statement or a session. */
export type ConnectionState = "while idle" | "while in use";

/** A pg Pool with the session settings (session-settings.ts), and how to close it (and its connector). */
export interface OpenPool {
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

/**
 * The one place a pool is opened, by URL or through the Cloud SQL connector: the job's Kysely
 * instance runs over one, and a job that needs pg's own client (the cold tier's exports) opens
 * another with the same settings.
 */
export async function openPool(settings: DatabaseSettings, opts: ConnectOptions): Promise<OpenPool> {
  const session = sessionOptions(opts.job);
  const max = opts.poolSize ?? 4;
  // Opening a connection gives up after this long with "timeout exceeded when trying to connect"
  // (a black-holed address would otherwise hang until the task's timeout).
  const connectionTimeoutMillis = settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  let connector: Connector | undefined;
  let pool: pg.Pool;
  if (settings.kind === "url") {
    pool = new pg.Pool({
      ...poolConfigForUrl(settings.url, session),
      max,
      connectionTimeoutMillis,
      onConnect: pinTransactionTimeout,
    });
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
      onConnect: pinTransactionTimeout,
    });
  }
  reportConnectionErrors(pool, opts);
  let closed = false;
  return {
    pool,
    async close() {
      if (closed) return;
      closed = true;
      try {
        // Kysely's destroy() may have ended it already (connectDatabase).
        if (!pool.ending && !pool.ended) await pool.end();
      } finally {
        connector?.close();
      }
    },
  };
}

/**
 * pg emits 'error' on a client whose connection fails, and Node ends the process on an 'error'
 * event that nobody listens to. The pool listens on its idle clients only (its 'error' event): a
 * client it has lent out (inside a transaction, the runner's lock session, an export's snapshot)
 * has no listener, so a backend terminated or a network dropped under it would crash the whole run
 * instead of failing the step that holds it. The listener below is attached to every client for
 * its whole life; it only reports, while the client is lent out: the statement in flight, or the
 * next one, still rejects (pg fails every query of a broken client) and the pool discards the
 * client when it comes back.
 */
function reportConnectionErrors(pool: pg.Pool, opts: ConnectOptions): void {
  const report = (error: Error, state: ConnectionState) => {
    if (opts.onIdleError) opts.onIdleError(error, state);
    else
      process.stderr.write(
        `telemetry-jobs/${opts.job}: database connection failed ${state}: ${error.message}\n`,
      );
  };
  // An idle client that errors must not vanish silently either: the next query opens a new
  // connection, but the operator sees why.
  pool.on("error", (error) => report(error, "while idle"));
  const lent = new WeakSet<pg.PoolClient>();
  pool.on("acquire", (client) => lent.add(client));
  pool.on("release", (_error, client) => lent.delete(client));
  // One report per client: a backend that ends first sends its reason (e.g. "terminating
  // connection due to administrator command"), then its socket closes ("Connection terminated
  // unexpectedly"), which pg emits as a second 'error' of the same dead client.
  const failed = new WeakSet<pg.ClientBase>();
  pool.on("connect", (client) =>
    client.on("error", (error) => {
      if (!lent.has(client) || failed.has(client)) return;
      failed.add(client);
      report(error, "while in use");
    }),
  );
}

export async function connectDatabase(settings: DatabaseSettings, opts: ConnectOptions): Promise<Database> {
  const { pool, close } = await openPool(settings, opts);
  const db = kyselyOver(pool);
  let closed = false;
  return {
    db,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await db.destroy();
      } finally {
        await close();
      }
    },
  };
}

/** The pool under each Kysely instance made by kyselyOver: holdSession needs pg's client itself. */
const poolsOf = new WeakMap<Kysely<DB>, pg.Pool>();

/** A Kysely instance over `pool` whose sessions holdSession can watch. */
export function kyselyOver(pool: pg.Pool): Kysely<DB> {
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  poolsOf.set(db, pool);
  return db;
}

/**
 * Runs `work` on one connection of `db`, held until it returns, with a signal that is aborted
 * (its reason: the connection's Error) as soon as that connection fails. A session that holds
 * session-level state (advisory locks) loses it with its backend, and its holder must know before
 * its next step, not when that step's statement fails: the work it guards runs on other
 * connections and would go on without it. pg tells at once, by an 'error' event on the client,
 * when the server ends the backend (its FATAL message arrives on the idle socket) or the socket
 * closes; watching that costs no statement, where asking the session "are you there?" before each
 * step would cost a round trip each time.
 *
 * `db` must come from kyselyOver (connectDatabase's does) for the client to be watched: over any
 * other Kysely instance the signal is never aborted, and a lost session shows only as the failure
 * of its next statement.
 */
export async function holdSession<T>(
  db: Kysely<DB>,
  work: (session: Kysely<DB>, lost: AbortSignal) => Promise<T>,
): Promise<T> {
  const pool = poolsOf.get(db);
  if (!pool) return await db.connection().execute((session) => work(session, new AbortController().signal));
  const client = await pool.connect();
  const lost = new AbortController();
  // The first error is the server's reason; the socket's close that follows says less.
  const onError = (error: Error) => {
    if (!lost.signal.aborted) lost.abort(error);
  };
  client.on("error", onError);
  try {
    return await work(sessionOn(pool, client), lost.signal);
  } finally {
    client.off("error", onError);
    // A failed client is discarded, not given to the next caller.
    client.release(lost.signal.aborted ? (lost.signal.reason as Error) : undefined);
  }
}

/**
 * Kysely over the one client holdSession holds: Kysely gives a connection back after each
 * statement run outside db.connection(), and this one must stay held until holdSession returns it.
 * kyselyOver's instances have no plugin or log hook, so this one, without either, runs the same.
 */
function sessionOn(pool: pg.Pool, client: pg.PoolClient): Kysely<DB> {
  const held = {
    query: client.query.bind(client),
    // What Kysely reads to cancel a statement (else it asks the server, a statement more).
    get processID() {
      return (client as { processID?: number }).processID;
    },
    release() {},
  };
  // Client and options as the pool's: Kysely cancels a statement from a connection of its own,
  // which must not be the held one, busy with that statement.
  const one = { Client: pg.Client, options: pool.options, connect: async () => held, end: async () => {} };
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool: one }) });
}
