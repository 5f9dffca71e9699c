// `npm run bench`: runs every benchmark (each on its own embedded PostgreSQL with fsync,
// synchronous_commit and full_page_writes on, as in production; stopped at the end even on error), prints each report and a summary table, and writes them to bench/results/latest.md.
// Figures are measured, never asserted: the exit code is non-zero only when a benchmark could not run.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runDdlBench } from "./ddl-under-load.ts";
import { runNoopBench } from "./noop-run.ts";
import { runPartitionDefaultBench } from "./partition-default.ts";
import { runRetentionBench } from "./retention.ts";
import { runRollupBench } from "./rollup.ts";
import { type BenchResult, markdownTable, stopAllServers } from "./support.ts";

/** Whole-run watchdog: far above a normal run (not yet timed with fsync on and partition-default); stops the servers and exits if reached. */
const WATCHDOG_MS = 25 * 60_000;

const BENCHMARKS: { name: string; run: () => Promise<BenchResult> }[] = [
  { name: "noop-run", run: () => runNoopBench() },
  { name: "ddl-under-load", run: () => runDdlBench() },
  { name: "rollup", run: () => runRollupBench() },
  { name: "retention", run: () => runRetentionBench() },
  { name: "partition-default", run: () => runPartitionDefaultBench() },
];

async function main(): Promise<number> {
  const watchdog = setTimeout(() => {
    console.error(`[bench] still running after ${WATCHDOG_MS / 60_000} min: stopping`);
    void stopAllServers().finally(() => process.exit(1));
  }, WATCHDOG_MS);
  watchdog.unref();

  const started = Date.now();
  const results: BenchResult[] = [];
  const failures: string[] = [];
  for (const b of BENCHMARKS) {
    const t = Date.now();
    try {
      const r = await b.run();
      results.push(r);
      console.log(`\n${r.report}\n`);
      console.log(`[bench] ${b.name} took ${((Date.now() - t) / 1000).toFixed(1)} s`);
    } catch (error) {
      failures.push(`${b.name}: ${(error as Error).stack ?? String(error)}`);
      console.error(`[bench] ${b.name} could not run:`, error);
    }
  }
  await stopAllServers(); // normally a no-op: each benchmark stops its own server
  clearTimeout(watchdog);

  const totalS = ((Date.now() - started) / 1000).toFixed(1);
  const summary = markdownTable(
    ["benchmark", "measure", "value", "ratio vs baseline"],
    results.flatMap((r) => r.summary),
  );
  const problems = [...results.flatMap((r) => r.problems), ...failures];
  const env = [
    `Run ${new Date().toISOString()}, Node ${process.version}, ${cpus().length} CPU(s) (${cpus()[0]?.model ?? "?"}), total ${totalS} s.`,
    "Figures are from one run on this machine; compare ratios, not absolute times, across machines.",
  ].join(" ");
  const summaryBlock = [
    "## Summary",
    "",
    env,
    "",
    summary,
    ...(problems.length > 0 ? ["", "Problems:", "", ...problems.map((p) => `- ${p}`)] : []),
  ].join("\n");
  console.log(`\n${summaryBlock}\n`);

  const out = join(dirname(fileURLToPath(import.meta.url)), "results", "latest.md");
  mkdirSync(dirname(out), { recursive: true });
  const doc = [
    "# Benchmark results (latest run)",
    "",
    "Written by `npm run bench` (bench/run.ts). See bench/README.md for what is measured and how to read it.",
    "",
    summaryBlock,
    "",
    ...results.map((r) => `${r.report}\n`),
  ].join("\n");
  writeFileSync(out, doc);
  console.log(`[bench] written to ${out}`);
  return failures.length > 0 ? 1 : 0;
}

main()
  .then((code) => {
    process.exitCode = code;
  })
  .catch(async (error) => {
    console.error(error);
    await stopAllServers();
    process.exitCode = 1;
  });
