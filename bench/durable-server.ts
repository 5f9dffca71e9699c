// The benchmarks' PostgreSQL: embedded, like the tests', but with production's durability. The test
// server (test/support/embedded-postgres.ts) turns fsync, synchronous_commit and full_page_writes off
// for speed; benchmark figures include commit latency (each commit's WAL flush, what a concurrent
// writer waits for), so here all three are on. Lifecycle (stopped on success, error and signals) is
// bench/support.ts's withServer.
import pg from "pg";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../test/support/embedded-postgres.ts";

export const DURABLE_SETTINGS: Readonly<Record<string, string>> = {
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
};

/** The settings the label line and the reports quote, read back from the running server. */
export const DURABILITY = ["fsync", "synchronous_commit", "full_page_writes"] as const;

/**
 * Starts an embedded PostgreSQL with DURABLE_SETTINGS in a fresh data directory, removed by stop()
 * (which may be called more than once). On failure nothing is left running or on disk.
 */
export async function startDurableServer(): Promise<EmbeddedPostgres> {
  return await startEmbeddedPostgres({ settings: DURABLE_SETTINGS });
}

/** Reads `names` from the running server's pg_settings, sorted by name, as [name, value] pairs. */
export async function readSettings(url: string, names: readonly string[]): Promise<[string, string][]> {
  const c = new pg.Client({ connectionString: url, application_name: "bench-settings" });
  c.on("error", () => {});
  await c.connect();
  try {
    const r = await c.query<{ name: string; setting: string }>(
      "SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY($1) ORDER BY name",
      [names],
    );
    return r.rows.map((x) => [x.name, x.setting]);
  } finally {
    await c.end().catch(() => {});
  }
}

/** "name=value, ..." as the label line and the reports print them. */
export const formatSettings = (settings: readonly [string, string][]) =>
  settings.map(([name, value]) => `${name}=${value}`).join(", ");
