// Benchmark 5: partition-manager beside a large DEFAULT partition, and a DEFAULT rescue, while
// writers insert. Server: withServer's, fsync, synchronous_commit and full_page_writes on.
//
// Writers, identical in every scenario, each on its own session in its own worker thread
// (bench/writer-worker.ts): one 10-row INSERT every 8 ms into the current month, and the same into
// a month years ahead (rows that land in DEFAULT, as device clocks set years ahead do). Each
// statement's latency is recorded; the worst one is the stall a scenario causes.
//
// (1) Premaking beside a large DEFAULT: DEFAULT holds N rows dated years ahead (they stay there by
//     design); the current and next month exist. For each N: (a) no DDL, the baseline; (b) one
//     partition-manager run that premakes the three months after those (each attach had to prove
//     its range absent from DEFAULT: by scanning all of it, or from a validated guard).
// (2) A rescue: the previous month has no partition and R of its rows sit in DEFAULT (an outage of
//     partition-manager). For each R: (a) no DDL; (b) one partition-manager run with the policy's
//     default maxRescueRows: it moves the rows (the parent is locked for the whole move), or, above
//     the bound, refuses the rescue (exit 2) and moves nothing.
// Every ratio is the scenario's worst INSERT over (a)'s worst for the same writer, same DEFAULT.
import { Worker } from "node:worker_threads";
import type { Kysely } from "kysely";
import type pg from "pg";
import type { DB } from "../shared/db/schema.ts";
import { addIntervals, floorToInterval } from "../shared/partitions/time.ts";
import { makeConfig, runPartitionManager } from "../test/support/jobs.ts";
import {
  type BenchResult,
  closeClient,
  createMigratedDatabase,
  markdownTable,
  max,
  median,
  ms,
  nowMs,
  openClient,
  openKysely,
  ratio,
  runAloneIfMain,
  serverSettings,
  sleep,
  withServer,
} from "./support.ts";
import type { WriterMessage, WriterParams, WriterStats } from "./writer-worker.ts";

const LABEL = "partition-default";
const TABLE = "public.telemetry_points";
const DEVICES = 50;
const sizes = (name: string, fallback: string) => (process.env[name] ?? fallback).split(",").map(Number);
/** DEFAULT sizes of (1); 10M takes minutes to load on 2 cores: PARTITION_DEFAULT_BENCH_SIZES=...,10000000. */
const DEFAULT_SIZES = sizes("PARTITION_DEFAULT_BENCH_SIZES", "300000,3000000");
/** Rescue sizes of (2): under and over the default maxRescueRows (50,000). */
const RESCUE_SIZES = sizes("PARTITION_DEFAULT_BENCH_RESCUES", "40000,400000");
/** Measured window: at least this long, and until 1 s after the run ended. */
const WINDOW_MS = 4_000;
const WARMUP_MS = 500;
const DDL_AT_MS = 1_000;
/** Each scenario runs this many times, interleaved; the report gives the median of their worsts. */
const REPEATS = Number(process.env.PARTITION_DEFAULT_BENCH_REPEATS ?? 3);

interface Outcome {
  title: string;
  defaultRows: number;
  current: WriterStats;
  future: WriterStats;
  /** Longest heavyweight-lock wait seen per writer (pg_locks.waitstart, sampled every 20 ms). */
  lockWaits: { current: number; future: number };
  run?: { ms: number; exitCode: number; actions: Record<string, number> };
}

function startWriter(params: WriterParams) {
  const worker = new Worker(new URL("./writer-worker.ts", import.meta.url), { workerData: params });
  let ready: () => void = () => {};
  const isReady = new Promise<void>((r) => {
    ready = r;
  });
  const done = new Promise<WriterStats>((resolve, reject) => {
    worker.on("message", (m: WriterMessage) => {
      if (m.type === "ready") ready();
      else if (m.type === "done") resolve(m.stats);
      else reject(new Error(m.error));
    });
    worker.on("error", reject);
  });
  return { worker, isReady, done };
}

/** Runs both writers for the window, with `ddl` started DDL_AT_MS into it. */
async function scenario(
  url: string,
  month: Date,
  title: string,
  defaultRows: number,
  ddl?: () => Promise<{ exitCode: number; actions: Record<string, number> }>,
): Promise<Outcome> {
  const writer = (name: string, start: Date) =>
    startWriter({
      url,
      applicationName: `bench-writer-${name}`,
      batchRows: 10,
      periodMs: 8,
      devices: DEVICES,
      maxStatements: 1_000_000,
      monthStart: start.getTime(),
      monthEnd: addIntervals(start, "monthly", 1).getTime(),
    });
  const writers = [writer("current", month), writer("future", addIntervals(month, "monthly", 60))];
  await Promise.all(writers.map((w) => w.isReady));
  const monitor = await openClient(url, "bench-monitor");
  const lockWaits = { current: 0, future: 0 };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const r = await monitor.query<{ app: string; ms: number }>(
        `SELECT a.application_name AS app, max(extract(epoch FROM clock_timestamp() - l.waitstart) * 1000)::float8 AS ms
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE NOT l.granted AND l.waitstart IS NOT NULL AND a.application_name LIKE 'bench-writer-%' GROUP BY 1`,
      );
      for (const w of r.rows) {
        const key = w.app === "bench-writer-current" ? "current" : "future";
        lockWaits[key] = Math.max(lockWaits[key], w.ms);
      }
      await sleep(20);
    }
  })();
  const measureFrom = nowMs() + WARMUP_MS;
  for (const w of writers)
    w.worker.postMessage({ type: "go", measureFrom, hardDeadline: measureFrom + 600_000 });
  await sleep(WARMUP_MS + DDL_AT_MS);
  let run: Outcome["run"];
  if (ddl) {
    const t = nowMs();
    const r = await ddl();
    run = { ms: nowMs() - t, ...r };
  }
  await sleep(Math.max(measureFrom + WINDOW_MS - nowMs(), 1_000));
  for (const w of writers) w.worker.postMessage({ type: "stop" });
  const [current, future] = await Promise.all(writers.map((w) => w.done));
  await Promise.all(writers.map((w) => w.worker.terminate()));
  sampling = false;
  await sampler;
  await closeClient(monitor);
  return { title, defaultRows, current: current!, future: future!, lockWaits, ...(run ? { run } : {}) };
}

async function partitionManager(db: Kysely<DB>, url: string, now: Date, premake: number) {
  const config = makeConfig(url, [{ table: TABLE, timeColumn: "ts", premake, lockTimeoutMs: 2_000 }], {
    now,
  });
  const r = await runPartitionManager(db, config);
  return { exitCode: r.exitCode, actions: r.summary.actions };
}

/** Adds rows to DEFAULT, dated from `start` on (a month no partition covers). */
async function loadDefault(admin: pg.Client, start: Date, rows: number, spreadS: number) {
  for (let done = 0; done < rows; done += 500_000) {
    const n = Math.min(500_000, rows - done);
    await admin.query(
      `INSERT INTO ${TABLE} (device_id, ts, metrics)
       SELECT 'dev-' || (1 + g % ${DEVICES}), $1::timestamptz + (g % ${spreadS}) * interval '1 second',
              jsonb_build_object('temp', g % 40)
         FROM generate_series(${done + 1}, ${done + n}) g`,
      [start.toISOString()],
    );
  }
  await admin.query(`VACUUM ANALYZE ${TABLE}`);
  await admin.query("CHECKPOINT");
}

async function dropMonths(admin: pg.Client, from: Date, count: number) {
  for (let i = 0; i < count; i++) {
    const d = addIntervals(from, "monthly", i);
    const name = `telemetry_points_p${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
    await admin.query(`DROP TABLE IF EXISTS public.${name}`);
  }
  await admin.query("CHECKPOINT");
}

export async function runPartitionDefaultBench(): Promise<BenchResult> {
  return await withServer(LABEL, async (server) => {
    const url = await createMigratedDatabase(server, "bench_partition_default");
    const db = openKysely(url, "partition-manager");
    const admin = await openClient(url, "bench-admin");
    const log = (line: string) => console.log(`[${LABEL}] ${line}`);
    try {
      const now = new Date();
      const month = floorToInterval(now, "monthly");
      const next = (i: number) => addIntervals(month, "monthly", i);
      const setup = await partitionManager(db, url, now, 1); // this month, the next, and DEFAULT
      if (setup.exitCode !== 0) throw new Error(`setup: partition-manager exit ${setup.exitCode}`);
      await admin.query(
        `INSERT INTO public.devices (id) SELECT 'dev-' || g FROM generate_series(1, ${DEVICES}) g`,
      );

      const premake: Outcome[] = [];
      let loaded = 0;
      for (const size of DEFAULT_SIZES) {
        log(`loading DEFAULT to ${size} rows`);
        await loadDefault(admin, next(48), size - loaded, 86_400 * 365);
        loaded = size;
        for (let rep = 0; rep < REPEATS; rep++) {
          premake.push(await scenario(url, month, "(a) no DDL", size));
          log(`premaking 3 months beside ${size} DEFAULT rows (${rep + 1}/${REPEATS})`);
          premake.push(
            await scenario(url, month, "(b) premake 3 months", size, () => partitionManager(db, url, now, 4)),
          );
          await dropMonths(admin, next(2), 3);
        }
      }
      await admin.query("TRUNCATE public.telemetry_points_default");

      const rescue: Outcome[] = [];
      for (const rows of RESCUE_SIZES) {
        for (let rep = 0; rep < REPEATS; rep++) {
          log(`rescue of ${rows} rows of the previous month (${rep + 1}/${REPEATS})`);
          await loadDefault(admin, next(-1), rows, 86_400 * 27);
          rescue.push(await scenario(url, month, "(a) no DDL", rows));
          rescue.push(
            await scenario(url, month, "(b) rescue run", rows, () => partitionManager(db, url, now, 1)),
          );
          await dropMonths(admin, next(-1), 1);
          await admin.query("TRUNCATE public.telemetry_points_default");
        }
      }
      const settings = await serverSettings(server, ["shared_buffers"]);
      return report(premake, rescue, `PostgreSQL ${server.major}; ${settings}`);
    } finally {
      await closeClient(admin);
      await db.destroy();
    }
  });
}

/** One scenario's repetitions: the median of the writers' worsts, the longest lock wait of any. */
interface Group {
  title: string;
  defaultRows: number;
  current: number;
  future: number;
  waitCurrent: number;
  waitFuture: number;
  errors: number;
  runs: Outcome["run"][];
}

function groups(list: Outcome[]): Group[] {
  const keys = [...new Set(list.map((o) => `${o.defaultRows}|${o.title}`))];
  return keys.map((key) => {
    const reps = list.filter((o) => `${o.defaultRows}|${o.title}` === key);
    return {
      title: reps[0]!.title,
      defaultRows: reps[0]!.defaultRows,
      current: median(reps.map((o) => max(o.current.latencies))),
      future: median(reps.map((o) => max(o.future.latencies))),
      waitCurrent: max(reps.map((o) => o.lockWaits.current)),
      waitFuture: max(reps.map((o) => o.lockWaits.future)),
      errors: reps.reduce((n, o) => n + o.current.errors + o.future.errors, 0),
      runs: reps.map((o) => o.run).filter((r) => r !== undefined),
    };
  });
}

function report(premake: Outcome[], rescue: Outcome[], server: string): BenchResult {
  const problems: string[] = [];
  const baseOf = (list: Group[], g: Group) =>
    list.find((b) => b.defaultRows === g.defaultRows && b.runs.length === 0)!;
  const runText = (g: Group) =>
    g.runs.length === 0
      ? ""
      : `${ms(median(g.runs.map((r) => r!.ms)), 0)} (median), exits ${g.runs.map((r) => r!.exitCode).join(",")}, ${JSON.stringify(g.runs[0]!.actions)}`;
  const rows = (list: Group[]) =>
    list.map((g) => {
      const base = baseOf(list, g);
      if (g.errors > 0)
        problems.push(`${LABEL}: ${g.title} at ${g.defaultRows} rows: ${g.errors} failed inserts`);
      return [
        String(g.defaultRows),
        g.title,
        `${ms(g.current)} (${ratio(g.current, base.current)})`,
        `${ms(g.future)} (${ratio(g.future, base.future)})`,
        String(g.errors),
        `${ms(g.waitCurrent, 0)} / ${ms(g.waitFuture, 0)}`,
        runText(g),
      ];
    });
  const header = [
    "rows in DEFAULT",
    "scenario",
    "worst INSERT, current month (vs a)",
    "worst INSERT into DEFAULT (vs a)",
    "failed inserts",
    "longest lock wait seen, current / DEFAULT",
    "partition-manager run",
  ];
  const summary = (list: Group[], what: (g: Group) => string) =>
    list
      .filter((g) => g.runs.length > 0)
      .map((g) => {
        const base = baseOf(list, g);
        return [
          LABEL,
          what(g),
          `${ms(g.current)} / ${ms(g.future)}; lock waits ${ms(g.waitCurrent, 0)} / ${ms(g.waitFuture, 0)}; exits ${g.runs.map((r) => r!.exitCode).join(",")}`,
          `${ratio(g.current, base.current)} / ${ratio(g.future, base.future)}`,
        ];
      });
  const p = groups(premake);
  const r = groups(rescue);
  const text = [
    "## 5. Partition creation beside a large DEFAULT, and a DEFAULT rescue (`partition-default.ts`)",
    "",
    `${server}. Two writers, each a 10-row INSERT every 8 ms on its own session and thread: into the current month, and into a month five years ahead (DEFAULT). Window ${WINDOW_MS / 1000} s (longer if the run is), the run starting ${DDL_AT_MS / 1000} s in. Each scenario ${REPEATS} times, interleaved with its baseline: worst INSERT is the median of the ${REPEATS} worsts; lock wait the longest seen in any (pg_locks.waitstart, sampled every 20 ms), which separates waits for our locks from a busy machine's noise.`,
    "",
    "### Premaking 3 months beside N rows in DEFAULT",
    "",
    markdownTable(header, rows(p)),
    "",
    "### Rescue of N rows of the previous month from DEFAULT (default maxRescueRows 50,000)",
    "",
    markdownTable(header, rows(r)),
  ].join("\n");
  return {
    name: LABEL,
    report: text,
    summary: [
      ...summary(p, (g) => `premake 3 beside ${g.defaultRows} DEFAULT rows: worst INSERT current / DEFAULT`),
      ...summary(r, (g) => `rescue of ${g.defaultRows} rows: worst INSERT current / DEFAULT`),
    ],
    problems,
  };
}

runAloneIfMain(import.meta.url, runPartitionDefaultBench);
