// Shared plumbing for the benchmarks: the benchmark server (an embedded PostgreSQL with fsync,
// synchronous_commit and full_page_writes on, as in production: bench/durable-server.ts) that is
// always stopped (on success, on error, and on SIGINT/SIGTERM), a migrated database per benchmark,
// and small statistics and formatting helpers. Benchmarks measure and print; they never assert on
// performance.
import { fileURLToPath } from "node:url";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import "../shared/db/pg-types.ts";
import { sessionOptions } from "../shared/db/connect.ts";
import type { DB } from "../shared/db/schema.ts";
import { migrateToLatest } from "../shared/migrate/migrator.ts";
import type { EmbeddedPostgres } from "../test/support/embedded-postgres.ts";
import { DURABILITY, formatSettings, readSettings, startDurableServer } from "./durable-server.ts";

// ---------------------------------------------------------------------------------------------
// Server lifecycle

const liveServers = new Set<EmbeddedPostgres>();
let signalHandlersInstalled = false;

function installSignalHandlers() {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      console.error(`\n[bench] ${sig}: stopping the embedded PostgreSQL server(s)`);
      // Stopping the server ends its sessions, and a client with no error listener then throws:
      // that must not end the process before the servers are stopped and their data removed.
      process.on("uncaughtException", (error) => console.error(`[bench] after ${sig}: ${error.message}`));
      void stopAllServers().finally(() => process.exit(130));
    });
  }
}

/** Stops every server started by withServer that is still running. Safe to call twice. */
export async function stopAllServers(): Promise<void> {
  const servers = [...liveServers];
  liveServers.clear();
  await Promise.allSettled(servers.map((s) => s.stop()));
}

/**
 * Starts a throwaway embedded PostgreSQL with production's durability, runs `work`, and stops the
 * server whatever happens. The durability settings are read back from the server, printed on the
 * label line, and checked: a benchmark never runs on a server that would flatter its figures.
 */
export async function withServer<T>(
  label: string,
  work: (server: EmbeddedPostgres) => Promise<T>,
): Promise<T> {
  installSignalHandlers();
  const started = Date.now();
  const server = await startDurableServer();
  liveServers.add(server);
  try {
    const durability = await readSettings(server.url(), DURABILITY);
    console.log(
      `[${label}] embedded PostgreSQL ${server.major} on port ${server.port}, ${formatSettings(durability)} (${Date.now() - started} ms)`,
    );
    const value = new Map(durability);
    const off = DURABILITY.filter((name) => value.get(name) !== "on");
    if (off.length > 0)
      throw new Error(
        `benchmark server is not durable: ${off.map((n) => `${n}=${value.get(n)}`).join(", ")}`,
      );
    return await work(server);
  } finally {
    liveServers.delete(server);
    await server.stop();
    console.log(`[${label}] embedded PostgreSQL stopped`);
  }
}

/**
 * The server's settings a report quotes, read from pg_settings: the durability ones and any `more`.
 */
export async function serverSettings(
  server: EmbeddedPostgres,
  more: readonly string[] = [],
): Promise<string> {
  return formatSettings(await readSettings(server.url(), [...DURABILITY, ...more]));
}

// ---------------------------------------------------------------------------------------------
// Databases and connections

/** Creates database `name` on the server and applies every migration to it. */
export async function createMigratedDatabase(server: EmbeddedPostgres, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = server.url(name);
  const db = openKysely(url, "bench-migrate", 2);
  try {
    await migrateToLatest(db, { starterSchema: true });
  } finally {
    await db.destroy();
  }
  return url;
}

/**
 * A Kysely over its own pool, sessions in UTC like production (see shared/db/connect.ts);
 * `pool` overrides pg.Pool settings (e.g. idleTimeoutMillis: 0, sessions that never close idle).
 */
export function openKysely(url: string, job: string, max = 4, pool: Partial<pg.PoolConfig> = {}): Kysely<DB> {
  const opened = new pg.Pool({ connectionString: url, max, ...sessionOptions(job), ...pool });
  opened.on("error", () => {});
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool: opened }) });
}

/** One dedicated session, UTC, with an application_name that pg_stat_activity shows. */
export async function openClient(
  url: string,
  applicationName: string,
  settings: Record<string, string> = {},
): Promise<pg.Client> {
  const options = ["-c TimeZone=UTC", ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(" ");
  const client = new pg.Client({ connectionString: url, application_name: applicationName, options });
  client.on("error", () => {}); // a session killed under us must not crash the process
  await client.connect();
  return client;
}

/** Ends a client, never throwing, never waiting more than `timeoutMs`. */
export async function closeClient(client: pg.Client | undefined, timeoutMs = 5_000): Promise<void> {
  if (!client) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.end().catch(() => {}),
    new Promise<void>((r) => {
      timer = setTimeout(r, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// Timing and statistics

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/**
 * Milliseconds (fractional) on a clock shared by the main thread and worker threads: each thread's
 * performance.now() has its own origin, performance.timeOrigin + now() does not.
 */
export const nowMs = () => performance.timeOrigin + performance.now();

/** Nearest-rank percentile (p in [0, 100]) of an unsorted list; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export const median = (values: readonly number[]) => percentile(values, 50);

export function max(values: readonly number[]): number {
  let m = Number.NaN;
  for (const v of values) if (Number.isNaN(m) || v > m) m = v;
  return m;
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function ms(value: number, digits = 1): string {
  if (!Number.isFinite(value)) return "n/a";
  return `${value.toFixed(digits)} ms`;
}

export function ratio(value: number, base: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(base) || base <= 0) return "n/a";
  return `${(value / base).toFixed(2)}x`;
}

/** A Markdown table; also readable as plain text in a terminal. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (c ?? "").padEnd(widths[i]!)).join(" | ")} |`;
  const rule = `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/**
 * `npx tsx bench/<name>.ts`: runs that benchmark alone and prints its report; does nothing when the
 * module is imported (by bench/run.ts). Pass `import.meta.url`.
 */
export function runAloneIfMain(moduleUrl: string, run: () => Promise<BenchResult>): void {
  if (!process.argv[1] || fileURLToPath(moduleUrl) !== process.argv[1]) return;
  run()
    .then((r) => console.log(`\n${r.report}`))
    .catch(async (error) => {
      console.error(error);
      await stopAllServers();
      process.exitCode = 1;
    });
}

/** What a benchmark hands back to bench/run.ts: its own report section and its summary rows. */
export interface BenchResult {
  name: string;
  /** Markdown section (heading, tables, notes), printed and written to results/latest.md. */
  report: string;
  /** Rows for the overall summary table: [benchmark, measure, value, ratio vs baseline]. */
  summary: string[][];
  /** Anomalies worth the reader's attention (insert errors, failed runs), already in the report. */
  problems: string[];
}
