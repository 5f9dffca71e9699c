// The benchmarks' PostgreSQL: embedded, like the tests', but with production's durability. The test
// server (test/support/embedded-postgres.ts) turns fsync, synchronous_commit and full_page_writes off
// for speed; benchmark figures include commit latency (each commit's WAL flush, what a concurrent
// writer waits for), so here all three are on. startEmbeddedPostgres takes no server settings, and
// settings on the postgres command line win over ALTER SYSTEM and every file, so it only makes the
// data directory (initdb, and the server account when we are root) and is stopped; postgres is then
// started again from the same binaries with DURABLE_SETTINGS on its command line. Lifecycle (stopped
// on success, error and signals) is bench/support.ts's withServer.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../test/support/embedded-postgres.ts";

export const DURABLE_SETTINGS = [
  "listen_addresses=127.0.0.1",
  "fsync=on",
  "synchronous_commit=on",
  "full_page_writes=on",
  "max_connections=300",
  "shared_buffers=256MB",
];

/** The settings the label line and the reports quote, read back from the running server. */
export const DURABILITY = ["fsync", "synchronous_commit", "full_page_writes"] as const;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function binDir(major: number): string {
  const require = createRequire(import.meta.url);
  for (let dir = dirname(require.resolve(`postgres-bin-${major}`)); dir !== dirname(dir); dir = dirname(dir))
    if (existsSync(join(dir, "native", "bin", "postgres"))) return join(dir, "native", "bin");
  throw new Error(`postgres-bin-${major} has no native/bin/postgres`);
}

/** The account startEmbeddedPostgres runs the server as when we are root (it creates it). */
function serverAccount(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync("id", [flag, "tjpostgres"]).toString().trim());
  return { uid: id("-u"), gid: id("-g") };
}

/** Connects once; true when the server accepts connections. */
async function accepts(url: string): Promise<boolean> {
  const probe = new pg.Client({ connectionString: url, application_name: "bench-probe" });
  probe.on("error", () => {});
  try {
    await probe.connect();
    return true;
  } catch {
    return false;
  } finally {
    await probe.end().catch(() => {});
  }
}

/**
 * Starts an embedded PostgreSQL with DURABLE_SETTINGS in a fresh data directory, removed by stop()
 * (which may be called more than once). On failure nothing is left running or on disk.
 */
export async function startDurableServer(): Promise<EmbeddedPostgres> {
  const dataDir = mkdtempSync(join(tmpdir(), "tj-bench-"));
  let first: EmbeddedPostgres;
  try {
    first = await startEmbeddedPostgres({ dataDir });
    await first.stop();
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  const { major, port } = first;
  const args = ["-D", dataDir, "-p", String(port), "-k", dataDir];
  for (const s of DURABLE_SETTINGS) args.push("-c", s);
  const child = spawn(join(binDir(major), "postgres"), args, {
    ...(serverAccount() ?? {}),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGINT"); // fast shutdown
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 15_000)))]);
      clearTimeout(timer);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const url = (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`;
  for (const deadline = Date.now() + 60_000; !(await accepts(url())); await sleep(100)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`postgres with the durable settings did not start:\n${output}`);
    }
  }
  return { major, port, dataDir, url, stop };
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
