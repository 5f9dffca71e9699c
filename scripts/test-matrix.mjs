// Runs the integration tests once per PostgreSQL major (14-18), each on its own embedded server.
// MATRIX_MAJORS="14 15" narrows the list (CI skips the major `npm test` already covered).
import { spawnSync } from "node:child_process";

const majors = (process.env.MATRIX_MAJORS ?? "14 15 16 17 18").split(/[\s,]+/).filter(Boolean);
if (process.env.TEST_DATABASE_URL)
  console.log("matrix: ignoring TEST_DATABASE_URL (each major gets its own embedded server)");
const results = [];
for (const major of majors) {
  console.log(`\n--- integration tests on PostgreSQL ${major} ---`);
  const started = Date.now();
  const run = spawnSync("npx", ["vitest", "run", "test/integration"], {
    stdio: "inherit",
    env: {
      ...process.env,
      TEST_DATABASE_URL: "",
      PG_MAJOR: major,
      TESTCONTAINERS_DISABLED: process.env.TESTCONTAINERS_DISABLED ?? "1",
    },
  });
  results.push({ major, ok: run.status === 0, seconds: Math.round((Date.now() - started) / 1000) });
}
console.log("\nmatrix:");
for (const r of results)
  console.log(`  PostgreSQL ${r.major}: ${r.ok ? "passed" : "FAILED"} (${r.seconds} s)`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
