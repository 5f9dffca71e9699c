// Runs the integration tests once per PostgreSQL major (14-18), each on its own embedded server.
// MATRIX_MAJORS="14 15" narrows the list (CI skips the major `npm test` already covered); test
// files given as arguments narrow the tests (`npm run test:matrix -- test/integration/x.test.ts`).
//
// vitest's output passes straight through; its FAIL lines are also kept and repeated under the
// summary at the end, because CI often shows only the tail of a long log, and a failure on one
// major would otherwise be scrolled away by the majors after it.
import { spawn } from "node:child_process";

const testFiles = process.argv.slice(2);
const majors = (process.env.MATRIX_MAJORS ?? "14 15 16 17 18").split(/[\s,]+/).filter(Boolean);
if (process.env.TEST_DATABASE_URL)
  console.log("matrix: ignoring TEST_DATABASE_URL (each major gets its own embedded server)");

// vitest colours its output; the kept lines are matched and repeated without the escapes.
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** Runs vitest for one major, echoing its output; resolves with its exit code and FAIL lines. */
function runMajor(major) {
  return new Promise((resolve) => {
    const failures = new Set();
    let pending = "";
    const keep = (text) => {
      const lines = (pending + text).split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const plain = line.replace(ANSI, "").trim();
        if (/^(FAIL|×|✗)\s/.test(plain)) failures.add(plain);
      }
    };
    const files = testFiles.length > 0 ? testFiles : ["test/integration"];
    const child = spawn("npx", ["vitest", "run", ...files], {
      stdio: ["inherit", "pipe", "pipe"],
      env: {
        ...process.env,
        TEST_DATABASE_URL: "",
        PG_MAJOR: major,
        TESTCONTAINERS_DISABLED: process.env.TESTCONTAINERS_DISABLED ?? "1",
      },
    });
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk);
      keep(chunk.toString());
    });
    child.stderr.on("data", (chunk) => {
      process.stderr.write(chunk);
      keep(chunk.toString());
    });
    child.on("close", (code) => {
      keep("\n");
      resolve({ code, failures: [...failures] });
    });
  });
}

const results = [];
for (const major of majors) {
  console.log(`\n--- integration tests on PostgreSQL ${major} ---`);
  const started = Date.now();
  const run = await runMajor(major);
  results.push({
    major,
    ok: run.code === 0,
    seconds: Math.round((Date.now() - started) / 1000),
    failures: run.failures,
  });
}
console.log("\nmatrix:");
for (const r of results) {
  console.log(`  PostgreSQL ${r.major}: ${r.ok ? "passed" : "FAILED"} (${r.seconds} s)`);
  for (const line of r.failures.slice(0, 20)) console.log(`    ${line}`);
  if (!r.ok && r.failures.length === 0) console.log("    (no FAIL line seen: see this major's output above)");
}
process.exit(results.every((r) => r.ok) ? 0 : 1);
