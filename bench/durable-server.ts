// An embedded PostgreSQL with production's durability (fsync, synchronous_commit, full_page_writes
// on), for benchmarks whose figures include commit latency: the test server of
// test/support/embedded-postgres.ts turns them off for speed. startEmbeddedPostgres makes the data
// directory (initdb, and the server account when we are root) and is stopped; postgres is then
// started again from the same binaries with DURABLE_SETTINGS on its command line (which wins over
// any file). Stopped at the end, on error, and on SIGINT/SIGTERM.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../test/support/embedded-postgres.ts";
import { closeClient, openClient, sleep } from "./support.ts";

export const DURABLE_SETTINGS = [
  "listen_addresses=127.0.0.1",
  "fsync=on",
  "synchronous_commit=on",
  "full_page_writes=on",
  "max_connections=300",
  "shared_buffers=256MB",
];

function binDir(major: number): string {
  const require = createRequire(import.meta.url);
  for (let dir = dirname(require.resolve(`postgres-bin-${major}`)); dir !== dirname(dir); dir = dirname(dir))
    if (existsSync(join(dir, "native", "bin", "postgres"))) return join(dir, "native", "bin");
  throw new Error(`postgres-bin-${major} has no native/bin/postgres`);
}

/**
 * An embedded PostgreSQL with the durable settings: startEmbeddedPostgres makes the data directory
 * (initdb, and the server account when we are root) and is stopped; postgres is then started again
 * from the same binaries with DURABLE_SETTINGS on its command line (which wins over any file).
 */
async function startDurableServer(): Promise<EmbeddedPostgres> {
  const dataDir = mkdtempSync(join(tmpdir(), "tj-durable-bench-"));
  const first = await startEmbeddedPostgres({ dataDir });
  await first.stop();
  const { major, port } = first;
  const asRoot = process.getuid?.() === 0;
  const id = (flag: string) => Number(execFileSync("id", [flag, "tjpostgres"]).toString().trim());
  const args = ["-D", dataDir, "-p", String(port), "-k", dataDir];
  for (const s of DURABLE_SETTINGS) args.push("-c", s);
  const child = spawn(join(binDir(major), "postgres"), args, {
    ...(asRoot ? { uid: id("-u"), gid: id("-g") } : {}),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGINT");
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const url = (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`;
  for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`postgres did not start:\n${output}`);
    }
    const probe = await openClient(url(), "bench-probe").catch(() => undefined);
    if (probe) {
      await closeClient(probe);
      break;
    }
  }
  return { major, port, dataDir, url, stop };
}

export async function withDurableServer<T>(label: string, work: (server: EmbeddedPostgres) => Promise<T>) {
  const server = await startDurableServer();
  const onSignal = () => void server.stop().finally(() => process.exit(130));
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, onSignal);
  console.log(`[${label}] embedded PostgreSQL ${server.major} on port ${server.port}, fsync on`);
  try {
    return await work(server);
  } finally {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.off(sig, onSignal);
    await server.stop();
    console.log(`[${label}] embedded PostgreSQL stopped`);
  }
}
