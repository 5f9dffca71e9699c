// The database connection when the network misbehaves: a server that accepts TCP and never answers
// (a black-holed private IP looks the same to the client) makes the job fail within
// DB_CONNECT_TIMEOUT_MS with a message saying so, instead of hanging until the task's timeout; and
// an idle connection the server drops is reported, not swallowed.
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatabaseEnv } from "../../shared/config/database.ts";
import { connectDatabase } from "../../shared/db/connect.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";

let silent: Server;
let port: number;
const sockets: Socket[] = [];
let t: TestDatabase;

beforeAll(async () => {
  silent = createServer((socket) => {
    sockets.push(socket); // accept, read, never answer
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  port = (silent.address() as { port: number }).port;
  t = await createTestDatabase();
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => silent.close(resolve));
  await t?.drop();
});

describe("connecting", () => {
  it("a server that never answers: the command fails within DB_CONNECT_TIMEOUT_MS, saying it timed out", async () => {
    const started = Date.now();
    const run = await runCli(["migrate", "status"], {
      DATABASE_URL: `postgres://nobody@127.0.0.1:${port}/nothing`,
      DB_CONNECT_TIMEOUT_MS: "700",
    });
    const elapsed = Date.now() - started;
    expect(run.code).toBe(1);
    expect(`${run.lines.map((l) => l.message).join("\n")}\n${run.stderr}`).toMatch(/timeout/i);
    // Process start-up plus the timeout, far below what a hang would take.
    expect(elapsed).toBeLessThan(15_000);
    expect(sockets.length).toBeGreaterThan(0);
  }, 30_000);

  it("DB_CONNECT_TIMEOUT_MS is validated like every setting: a bad value names the field", () => {
    const bad = parseDatabaseEnv({ DATABASE_URL: "postgres://x/y", DB_CONNECT_TIMEOUT_MS: "10s" });
    expect(bad.success).toBe(false);
    if (!bad.success) expect(bad.error.issues[0]?.path).toEqual(["DB_CONNECT_TIMEOUT_MS"]);
    const low = parseDatabaseEnv({ DATABASE_URL: "postgres://x/y", DB_CONNECT_TIMEOUT_MS: "5" });
    expect(low.success).toBe(false);
    const ok = parseDatabaseEnv({ DATABASE_URL: "postgres://x/y", DB_CONNECT_TIMEOUT_MS: "2500" });
    expect(ok).toEqual({
      success: true,
      data: { kind: "url", url: "postgres://x/y", connectTimeoutMs: 2500 },
    });
  });

  it("an idle connection the server drops is reported to the job, and the next query reconnects", async () => {
    const errors: Error[] = [];
    const database = await connectDatabase(
      { kind: "url", url: t.url },
      { job: "test-idle", onIdleError: (e) => errors.push(e) },
    );
    try {
      await database.db.selectNoFrom((eb) => eb.val(1).as("one")).execute();
      await t.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'telemetry-jobs/test-idle'",
      );
      for (let i = 0; i < 50 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(errors.length).toBeGreaterThan(0);
      const again = await database.db.selectNoFrom((eb) => eb.val(2).as("two")).execute();
      expect(again).toHaveLength(1);
    } finally {
      await database.close();
    }
  });
});
