// Benchmark 1: the cost of a partition-manager run that has nothing to do, on a table with 120
// monthly children. Baseline: readCatalog() alone (the catalog read every run starts with), measured
// in the same process against the same database, interleaved run by run so drift hits both alike.
// The ratio is the runner's overhead: bookkeeping check, policy validation, audit rows (job_runs
// insert and update), advisory lock, planning, a second catalog read for the health summary, logging.
import { parseQualifiedName } from "../shared/config/identifiers.ts";
import { readCatalog } from "../shared/partitions/catalog.ts";
import { makeConfig, runPartitionManager } from "../test/support/jobs.ts";
import {
  type BenchResult,
  createMigratedDatabase,
  markdownTable,
  max,
  median,
  ms,
  nowMs,
  openKysely,
  percentile,
  ratio,
  runAloneIfMain,
  serverSettings,
  withServer,
} from "./support.ts";

export interface NoopOptions {
  /** Measured repetitions of each of the two operations. */
  iterations?: number;
  /** Unmeasured repetitions first (connection pools, plan caches, JIT). */
  warmup?: number;
  /** Children to create before measuring. */
  children?: number;
}

// A fixed logical clock: the same 120 children every time, whatever the date of the run.
const LOGICAL_NOW = "2026-01-15T00:00:00Z";
const TABLE = "public.telemetry_points";

export async function runNoopBench(options: NoopOptions = {}): Promise<BenchResult> {
  const iterations = options.iterations ?? 40;
  const warmup = options.warmup ?? 3;
  const children = options.children ?? 120;
  const label = "noop-run";
  return await withServer(label, async (server) => {
    const url = await createMigratedDatabase(server, "bench_noop");
    const db = openKysely(url, "partition-manager");
    try {
      // premake N-1 at LOGICAL_NOW: the current month plus N-1 ahead = N monthly children.
      const policy = { table: TABLE, timeColumn: "ts", interval: "monthly", premake: children - 1 };
      const config = makeConfig(url, [policy], { now: LOGICAL_NOW });

      const setupStart = nowMs();
      const setup = await runPartitionManager(db, config);
      const setupMs = nowMs() - setupStart;
      const created = setup.summary.actions.create_partition ?? 0;
      if (setup.status !== "ok" || created !== children) {
        throw new Error(
          `setup: partition-manager should have created ${children} children, got status ${setup.status} and ${JSON.stringify(setup.summary.actions)}`,
        );
      }
      const table = parseQualifiedName(TABLE)!;
      // As managePartitions calls it: under the policy's lock_timeout and retry budget (defaults).
      const lock = {
        lockTimeoutMs: config.policies[0]!.lockTimeoutMs,
        budgetMs: config.policies[0]!.retryBudgetMs,
      };
      const catalog = await readCatalog(db, table, "ts", "monthly", lock);
      if (catalog.children.length !== children) {
        throw new Error(`setup: expected ${children} children, the catalog shows ${catalog.children.length}`);
      }
      console.log(
        `[${label}] setup: partition-manager created ${created} monthly children in ${ms(setupMs, 0)} (${ms(setupMs / created)} per child)`,
      );

      const runTimes: number[] = [];
      const catalogTimes: number[] = [];
      const runOnce = async (): Promise<number> => {
        const t = nowMs();
        const r = await runPartitionManager(db, config);
        const elapsed = nowMs() - t;
        // Not a performance assertion: a run that did something is not the thing we measure.
        if (r.status !== "ok" || Object.keys(r.summary.actions).length > 0) {
          throw new Error(
            `expected a no-op run, got status ${r.status}, actions ${JSON.stringify(r.summary.actions)}`,
          );
        }
        return elapsed;
      };
      const catalogOnce = async (): Promise<number> => {
        const t = nowMs();
        await readCatalog(db, table, "ts", "monthly", lock);
        return nowMs() - t;
      };

      for (let i = 0; i < warmup; i++) {
        await catalogOnce();
        await runOnce();
      }
      for (let i = 0; i < iterations; i++) {
        // Alternate which goes first so neither always follows the other's cache effects.
        if (i % 2 === 0) {
          catalogTimes.push(await catalogOnce());
          runTimes.push(await runOnce());
        } else {
          runTimes.push(await runOnce());
          catalogTimes.push(await catalogOnce());
        }
      }

      const rMed = median(runTimes);
      const rP95 = percentile(runTimes, 95);
      const cMed = median(catalogTimes);
      const cP95 = percentile(catalogTimes, 95);
      const rows = [
        [
          "readCatalog only (baseline)",
          String(iterations),
          ms(cMed),
          ms(cP95),
          ms(max(catalogTimes)),
          "1.00x",
        ],
        [
          "no-op partition-manager run",
          String(iterations),
          ms(rMed),
          ms(rP95),
          ms(max(runTimes)),
          `${ratio(rMed, cMed)} (p95 ${ratio(rP95, cP95)})`,
        ],
      ];
      const settings = await serverSettings(server);
      const report = [
        `## 1. No-op partition-manager run, ${children} monthly children`,
        "",
        `PostgreSQL ${server.major} (${settings}); table ${TABLE} with ${children} monthly children + DEFAULT (logical now ${LOGICAL_NOW}, premake ${children - 1}).`,
        `Setup (not part of the figures): the first run created the ${created} children in ${ms(setupMs, 0)} (${ms(setupMs / created)} per child, two short transactions + audit row each).`,
        `${warmup} warm-up rounds, then ${iterations} measured rounds, the two operations interleaved.`,
        "",
        markdownTable(["operation", "n", "median", "p95", "max", "ratio vs baseline (median)"], rows),
        "",
        `Runner overhead per no-op run (median difference): ${ms(rMed - cMed)}.`,
      ].join("\n");
      return {
        name: label,
        report,
        summary: [
          ["noop-run", "readCatalog (baseline), median / p95", `${ms(cMed)} / ${ms(cP95)}`, "1.00x"],
          ["noop-run", "no-op run, median / p95", `${ms(rMed)} / ${ms(rP95)}`, ratio(rMed, cMed)],
        ],
        problems: [],
      };
    } finally {
      await db.destroy();
    }
  });
}

runAloneIfMain(import.meta.url, () => runNoopBench());
