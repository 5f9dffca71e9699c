// Benchmark 2: creating partitions while the table is busy.
//
// Load, identical in every scenario:
//   - a writer on its own session, in its own worker thread (bench/writer-worker.ts, so that the
//     main thread's work cannot inflate its timings), inserting into public.telemetry_points
//     (current month) at a paced 1,250 rows/s: one 10-row INSERT every 8 ms, each statement's
//     latency recorded;
//   - a reader on its own session that, every 2 s, runs a whole-table query holding ACCESS SHARE on
//     the parent and on every partition for 1.5 s:
//         SELECT (SELECT count(*) FROM public.telemetry_points) AS n, pg_sleep(1.5)
//     (the locks are taken when the statement is planned and held until it ends). We chose pg_sleep
//     over a heavy aggregate on purpose: it holds exactly the locks of a long analytical query, for
//     a duration that does not depend on the machine, and it costs no CPU, so on 2 cores the
//     writer's latency moves because of locks, not because the reader is eating a core;
//   - a monitor on its own session sampling pg_locks/pg_stat_activity every 50 ms for sessions
//     waiting on a heavyweight lock (wait_event_type = 'Lock'), with how long each has waited
//     (pg_locks.waitstart, PostgreSQL 14+) and who blocks it (pg_blocking_pids).
//
// Scenarios, each the same length, the DDL starting at the same moment: 300 ms into a reader query.
//   (a) no DDL;
//   (b) partition-manager creating the next 12 monthly partitions (lockTimeoutMs 1000, retry budget
//       30 s), through runPartitionManager, exactly as the job does it (shared/partitions/apply.ts);
//   (c) the naive way: 12 x CREATE TABLE ... PARTITION OF, no lock_timeout (ACCESS EXCLUSIVE on the
//       parent, so it queues behind the reader and every INSERT queues behind it).
// Supplementary variants of (b), to show what its figure depends on: (b') lockTimeoutMs 100, and
// (b'') the same table without its DEFAULT partition (apply.ts locks the parent more strongly when
// a DEFAULT exists).
// Between scenarios the 12 partitions are dropped (with no load running), so every DDL scenario
// does exactly the same work from the same starting point.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import type { Kysely } from "kysely";
import type pg from "pg";
import type { DB } from "../shared/db/schema.ts";
import { partitionName } from "../shared/partitions/naming.ts";
import { addIntervals, floorToInterval } from "../shared/partitions/time.ts";
import { type LogRecord, makeConfig, runPartitionManager } from "../test/support/jobs.ts";
import {
  type BenchResult,
  closeClient,
  createMigratedDatabase,
  markdownTable,
  max,
  ms,
  nowMs,
  openClient,
  openKysely,
  percentile,
  ratio,
  runAloneIfMain,
  serverSettings,
  sleep,
  withServer,
} from "./support.ts";
import type { WriterCommand, WriterMessage, WriterParams, WriterStats } from "./writer-worker.ts";

export interface DdlBenchOptions {
  /** Measured window of each scenario. */
  scenarioMs?: number;
  /** Load before the measured window (not recorded). */
  warmupMs?: number;
  partitions?: number;
  lockTimeoutMs?: number;
  retryBudgetMs?: number;
  preloadRows?: number;
  /** Also run the two supplementary variants of (b) (lockTimeoutMs 100; no DEFAULT partition). */
  extras?: boolean;
}

interface ScenarioSpec {
  key: ScenarioKey;
  title: string;
  ddl?: (signal: AbortSignal) => Promise<DdlOutcome>;
  /** Run with no load, before the scenario and after it (even if it fails). */
  before?: () => Promise<void>;
  after?: () => Promise<void>;
}

const TABLE = "public.telemetry_points";
const TABLE_NAME = "telemetry_points";
const DEVICES = 50;

const WRITER_BATCH_ROWS = 10;
const WRITER_PERIOD_MS = 8; // 10 rows / 8 ms = 1,250 rows/s
const READER_PERIOD_MS = 2_000;
const READER_HOLD_S = 1.5;
const MONITOR_PERIOD_MS = 50;
/** The DDL starts this long after a reader query starts, i.e. while it holds its locks. */
const DDL_PHASE_MS = 300;
/** Reader query index (0-based, in the measured window) during which the DDL starts. */
const DDL_READER_TICK = 2;
/** After the window, a DDL still running gets this long before it is cancelled. */
const DDL_GRACE_MS = 45_000;
/** A writer thread still alive this long after it was started is terminated. */
const WRITER_KILL_MS = 5 * 60_000;

const APP = {
  writer: "bench-writer",
  reader: "bench-reader",
  monitor: "bench-monitor",
  naive: "bench-naive-ddl",
  ours: "telemetry-jobs/partition-manager",
} as const;

/** a, b, c: the three scenarios asked for; b-lt100 and b-nodefault: supplementary variants of (b). */
type ScenarioKey = "a" | "b" | "c" | "b-lt100" | "b-nodefault";

interface DdlOutcome {
  ok: boolean;
  durationMs: number;
  created: number;
  detail: string;
  error?: string;
}

interface WaitRecord {
  waitMs: number;
  app: string;
  mode: string;
  relation: string;
  query: string;
  /** The sessions pg_blocking_pids() named, with their state and statement. */
  blockedBy: string;
}

interface ScenarioResult {
  key: ScenarioKey;
  title: string;
  windowMs: number;
  rows: number;
  statements: number;
  errors: number;
  errorSamples: string[];
  p50: number;
  p99: number;
  worst: number;
  worstLag: number;
  readerQueries: number;
  readerErrors: number;
  readerWorst: number;
  monitorSamples: number;
  maxOtherWait: WaitRecord | undefined;
  maxDdlWait: WaitRecord | undefined;
  waitsByApp: Map<string, number>;
  eventLoopMaxMs: number;
  ddl: DdlOutcome | undefined;
}

// ---------------------------------------------------------------------------------------------
// Load generators. Each loop stops on `state.stop`, and is also bounded in count and in time.

interface LoadState {
  stop: boolean;
  /** Monotonic time at which recording starts (end of warm-up). */
  measureFrom: number;
  /** Monotonic time after which no loop starts new work, whatever happens. */
  hardDeadline: number;
}

/** Starts the writer thread; resolves once its session is connected. */
async function startWriter(params: WriterParams): Promise<{
  go(measureFrom: number, hardDeadline: number): void;
  stop(): void;
  done: Promise<WriterStats>;
  terminate(): Promise<void>;
}> {
  const worker = new Worker(new URL("./writer-worker.ts", import.meta.url), { workerData: params });
  let onReady: () => void = () => {};
  let onFail: (e: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onFail = reject;
  });
  const done = new Promise<WriterStats>((resolve, reject) => {
    worker.on("message", (m: WriterMessage) => {
      if (m.type === "ready") onReady();
      else if (m.type === "done") resolve(m.stats);
      else {
        const e = new Error(`writer thread failed: ${m.error}`);
        onFail(e);
        reject(e);
      }
    });
    worker.on("error", (e) => {
      onFail(e);
      reject(e);
    });
    worker.on("exit", (code) => {
      const e = new Error(`writer thread exited (${code}) before reporting`);
      onFail(e);
      reject(e);
    });
  });
  done.catch(() => {}); // observed by the caller; never an unhandled rejection
  // Bounded: a thread that has not reported long after any scenario could end is terminated.
  const kill = setTimeout(() => void worker.terminate(), WRITER_KILL_MS);
  kill.unref();
  void done.finally(() => clearTimeout(kill)).catch(() => {});
  try {
    await ready;
  } catch (error) {
    await worker.terminate();
    throw error;
  }
  return {
    go: (measureFrom, hardDeadline) =>
      worker.postMessage({ type: "go", measureFrom, hardDeadline } satisfies WriterCommand),
    stop: () => worker.postMessage({ type: "stop" } satisfies WriterCommand),
    done,
    terminate: async () => {
      await worker.terminate();
    },
  };
}

interface ReaderStats {
  queries: number;
  errors: number;
  durations: number[];
}

async function readerLoop(client: pg.Client, state: LoadState, maxQueries: number): Promise<ReaderStats> {
  const stats: ReaderStats = { queries: 0, errors: 0, durations: [] };
  for (let k = 0; k < maxQueries && !state.stop; k++) {
    const due = state.measureFrom + k * READER_PERIOD_MS;
    const wait = due - nowMs();
    if (wait > 0) await sleep(wait);
    if (state.stop || nowMs() > state.hardDeadline) break;
    const t = nowMs();
    try {
      await client.query(`SELECT (SELECT count(*) FROM ${TABLE}) AS n, pg_sleep(${READER_HOLD_S}) AS slept`);
    } catch {
      stats.errors++;
    }
    stats.queries++;
    stats.durations.push(nowMs() - t);
  }
  return stats;
}

interface MonitorStats {
  samples: number;
  /** Longest wait observed per application_name (or backend type). */
  byApp: Map<string, WaitRecord>;
}

async function monitorLoop(client: pg.Client, state: LoadState, maxSamples: number): Promise<MonitorStats> {
  const stats: MonitorStats = { samples: 0, byApp: new Map() };
  const sql = `
    SELECT coalesce(nullif(a.application_name, ''), a.backend_type) AS app,
           l.mode, l.locktype,
           CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text END AS relation,
           (extract(epoch FROM clock_timestamp() - l.waitstart) * 1000)::float8 AS wait_ms,
           left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90) AS query,
           (SELECT string_agg(coalesce(nullif(b.application_name, ''), b.backend_type)
                              || ' (' || coalesce(b.wait_event_type || ' wait', b.state) || '): '
                              || left(regexp_replace(b.query, '\\s+', ' ', 'g'), 90), '; ')
              FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))) AS blocked_by
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE NOT l.granted AND a.wait_event_type = 'Lock' AND l.pid <> pg_backend_pid()`;
  const t0 = nowMs();
  for (let i = 0; i < maxSamples && !state.stop; i++) {
    const due = t0 + i * MONITOR_PERIOD_MS;
    const wait = due - nowMs();
    if (wait > 0) await sleep(wait);
    if (state.stop || nowMs() > state.hardDeadline) break;
    let rows: {
      app: string;
      mode: string;
      locktype: string;
      relation: string | null;
      wait_ms: number | null;
      query: string;
      blocked_by: string | null;
    }[];
    try {
      rows = (await client.query(sql)).rows;
    } catch {
      continue;
    }
    if (nowMs() < state.measureFrom) continue;
    stats.samples++;
    for (const r of rows) {
      const waitMs = r.wait_ms ?? 0; // waitstart can be NULL for an instant after the wait begins
      const prev = stats.byApp.get(r.app);
      if (!prev || waitMs > prev.waitMs) {
        stats.byApp.set(r.app, {
          waitMs,
          app: r.app,
          mode: r.mode,
          relation: r.relation ?? r.locktype,
          query: r.query,
          blockedBy: r.blocked_by ?? "",
        });
      }
    }
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------
// The DDL of scenarios (b) and (c)

interface MonthRange {
  name: string;
  from: Date;
  to: Date;
}

function upcomingMonths(current: Date, count: number): MonthRange[] {
  return Array.from({ length: count }, (_, i) => {
    const from = addIntervals(current, "monthly", i + 1);
    return {
      name: partitionName("{table}_p{YYYY}{MM}", TABLE_NAME, from),
      from,
      to: addIntervals(from, "monthly", 1),
    };
  });
}

async function ourDdl(
  db: Kysely<DB>,
  url: string,
  p: {
    now: Date;
    partitions: number;
    lockTimeoutMs: number;
    retryBudgetMs: number;
    defaultPartition: boolean;
  },
  signal: AbortSignal,
): Promise<DdlOutcome> {
  const { partitions, lockTimeoutMs, retryBudgetMs, defaultPartition } = p;
  const config = makeConfig(
    url,
    [
      {
        table: TABLE,
        timeColumn: "ts",
        interval: "monthly",
        premake: partitions,
        lockTimeoutMs,
        retryBudgetMs,
        defaultPartition,
      },
    ],
    { now: p.now },
  );
  const t = nowMs();
  let logs: LogRecord[] = [];
  try {
    const r = await runPartitionManager(db, config, signal);
    logs = r.logs;
    const durationMs = nowMs() - t;
    const created = r.summary.actions.create_partition ?? 0;
    const done = logs.filter((l) => String(l.message).startsWith("done: ")).length;
    const retryLogs = logs.filter((l) => l.message === "lock not available, retrying");
    const retries = retryLogs.length;
    const backoffMs = retryLogs.reduce((sum, l) => sum + Number(l.waitMs ?? 0), 0);
    const failures = logs
      .filter((l) => l.severity === "ERROR")
      .map((l) => `${l.message} ${l.error ?? ""}`.trim());
    return {
      ok: r.status === "ok" && created === partitions,
      durationMs,
      created,
      detail: `status ${r.status}; ${done} partitions done; ${retries} lock-timeout retries (lock_timeout ${lockTimeoutMs} ms), ${(backoffMs / 1000).toFixed(1)} s of backoff sleep`,
      ...(failures.length > 0 ? { error: failures.join(" | ") } : {}),
    };
  } catch (error) {
    return {
      ok: false,
      durationMs: nowMs() - t,
      created: 0,
      detail: "runPartitionManager threw",
      error: String(error),
    };
  }
}

async function naiveDdl(url: string, months: MonthRange[]): Promise<DdlOutcome> {
  // No lock_timeout (0 = wait forever), as a hand-written migration would run. statement_timeout is
  // only a safety net so a bug cannot hang the benchmark; it is far above any wait seen here.
  const client = await openClient(url, APP.naive, { lock_timeout: "0", statement_timeout: "60s" });
  const t = nowMs();
  let created = 0;
  try {
    for (const m of months) {
      await client.query(
        `CREATE TABLE public.${m.name} PARTITION OF ${TABLE}
           FOR VALUES FROM ('${m.from.toISOString()}') TO ('${m.to.toISOString()}')`,
      );
      created++;
    }
    return {
      ok: true,
      durationMs: nowMs() - t,
      created,
      detail: "12 autocommit CREATE TABLE ... PARTITION OF",
    };
  } catch (error) {
    return {
      ok: false,
      durationMs: nowMs() - t,
      created,
      detail: "CREATE TABLE ... PARTITION OF failed",
      error: String(error),
    };
  } finally {
    await closeClient(client);
  }
}

// ---------------------------------------------------------------------------------------------
// One scenario

async function runScenario(params: {
  key: ScenarioKey;
  title: string;
  url: string;
  adminUrl: string;
  windowMs: number;
  warmupMs: number;
  month: { start: number; end: number };
  ddl?: (signal: AbortSignal) => Promise<DdlOutcome>;
  log: (line: string) => void;
}): Promise<ScenarioResult> {
  const { key, url, windowMs, warmupMs } = params;
  // Set once every session is connected and the writer thread is up (that takes about a second).
  const state: LoadState = { stop: false, measureFrom: Number.POSITIVE_INFINITY, hardDeadline: 0 };
  const clients: pg.Client[] = [];
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  const ddlAbort = new AbortController();
  let ddl: DdlOutcome | undefined;
  let writer: Awaited<ReturnType<typeof startWriter>> | undefined;
  try {
    const totalMs = warmupMs + windowMs + DDL_GRACE_MS;
    writer = await startWriter({
      url,
      applicationName: APP.writer,
      batchRows: WRITER_BATCH_ROWS,
      periodMs: WRITER_PERIOD_MS,
      devices: DEVICES,
      maxStatements: Math.ceil(totalMs / WRITER_PERIOD_MS) + 10,
      monthStart: params.month.start,
      monthEnd: params.month.end,
    });
    const reader = await openClient(url, APP.reader, { statement_timeout: "30s" });
    clients.push(reader);
    const monitor = await openClient(url, APP.monitor, { statement_timeout: "5s" });
    clients.push(monitor);

    const start = nowMs();
    state.measureFrom = start + warmupMs;
    state.hardDeadline = start + warmupMs + windowMs + DDL_GRACE_MS + 5_000;
    writer.go(state.measureFrom, state.hardDeadline);
    const readerP = readerLoop(reader, state, Math.ceil(totalMs / READER_PERIOD_MS) + 2);
    const monitorP = monitorLoop(monitor, state, Math.ceil(totalMs / MONITOR_PERIOD_MS) + 10);
    loopDelay.enable();

    let ddlP: Promise<DdlOutcome> | undefined;
    if (params.ddl) {
      await sleep(state.measureFrom + DDL_READER_TICK * READER_PERIOD_MS + DDL_PHASE_MS - nowMs());
      params.log(`  (${key}) DDL starts at +${((nowMs() - state.measureFrom) / 1000).toFixed(2)} s`);
      ddlP = params.ddl(ddlAbort.signal).then((d) => {
        ddl = d;
        return d;
      });
    }
    await sleep(state.measureFrom + windowMs - nowMs());
    if (ddlP && !ddl) {
      params.log(`  (${key}) DDL still running at the end of the window; load continues until it ends`);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ddlP, new Promise((r) => (timer = setTimeout(r, DDL_GRACE_MS)))]);
      clearTimeout(timer);
      if (!ddl) {
        params.log(`  (${key}) DDL still running after ${DDL_GRACE_MS} ms more: cancelling it`);
        ddlAbort.abort();
        await cancelSessions(params.adminUrl, [APP.naive, APP.ours]);
        await ddlP;
      }
    }
    const actualWindow = nowMs() - state.measureFrom;
    state.stop = true;
    writer.stop();
    const [w, r, m] = await Promise.all([writer.done, readerP, monitorP]);
    loopDelay.disable();

    let maxOtherWait: WaitRecord | undefined;
    let maxDdlWait: WaitRecord | undefined;
    const waitsByApp = new Map<string, number>();
    for (const rec of m.byApp.values()) {
      waitsByApp.set(rec.app, rec.waitMs);
      const isDdl = rec.app === APP.naive || rec.app === APP.ours;
      if (isDdl) {
        if (!maxDdlWait || rec.waitMs > maxDdlWait.waitMs) maxDdlWait = rec;
      } else if (!maxOtherWait || rec.waitMs > maxOtherWait.waitMs) maxOtherWait = rec;
    }
    return {
      key,
      title: params.title,
      windowMs: actualWindow,
      rows: w.rows,
      statements: w.statements,
      errors: w.errors,
      errorSamples: w.errorSamples.slice(0, 3).map(([msg, n]) => `${n} x ${msg}`),
      p50: percentile(w.latencies, 50),
      p99: percentile(w.latencies, 99),
      worst: max(w.latencies),
      worstLag: max(w.lags),
      readerQueries: r.queries,
      readerErrors: r.errors,
      readerWorst: max(r.durations),
      monitorSamples: m.samples,
      maxOtherWait,
      maxDdlWait,
      waitsByApp,
      eventLoopMaxMs: loopDelay.max / 1e6,
      ddl,
    };
  } finally {
    state.stop = true;
    if (writer) {
      writer.stop();
      await writer.done.catch(() => {});
      await writer.terminate();
    }
    ddlAbort.abort();
    loopDelay.disable();
    await Promise.all(clients.map((c) => closeClient(c)));
  }
}

async function cancelSessions(adminUrl: string, apps: string[]): Promise<void> {
  const admin = await openClient(adminUrl, "bench-admin");
  try {
    await admin.query(
      "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = ANY($1)",
      [apps],
    );
  } finally {
    await closeClient(admin);
  }
}

// ---------------------------------------------------------------------------------------------
// The benchmark

export async function runDdlBench(options: DdlBenchOptions = {}): Promise<BenchResult> {
  const windowMs = options.scenarioMs ?? 12_000;
  const warmupMs = options.warmupMs ?? 1_000;
  const partitions = options.partitions ?? 12;
  const lockTimeoutMs = options.lockTimeoutMs ?? 1_000;
  const retryBudgetMs = options.retryBudgetMs ?? 30_000;
  const preloadRows = options.preloadRows ?? 50_000;
  const extras = options.extras ?? true;
  const label = "ddl-under-load";
  const log = (line: string) => console.log(`[${label}] ${line}`);

  return await withServer(label, async (server) => {
    const url = await createMigratedDatabase(server, "bench_ddl");
    const db = openKysely(url, "partition-manager");
    const admin = await openClient(url, "bench-admin");
    try {
      // Fixed for the whole benchmark: if the month turns during the run, rows stay in this month.
      const now = new Date();
      const monthStart = floorToInterval(now, "monthly");
      const monthEnd = addIntervals(monthStart, "monthly", 1);
      const months = upcomingMonths(monthStart, partitions);

      // Setup: the current month's child (made by partition-manager, premake 0), devices, and
      // preloaded rows so the reader's count(*) scans real data. DEFAULT stays empty.
      const setup = await runPartitionManager(
        db,
        makeConfig(url, [{ table: TABLE, timeColumn: "ts", interval: "monthly", premake: 0 }], { now }),
      );
      if (setup.status !== "ok") throw new Error(`setup: partition-manager ${setup.status}`);
      await admin.query(
        `INSERT INTO public.devices (id) SELECT 'dev-' || g FROM generate_series(1, ${DEVICES}) g`,
      );
      await admin.query(
        `INSERT INTO ${TABLE} (device_id, ts, metrics)
         SELECT 'dev-' || (1 + g % ${DEVICES}),
                $1::timestamptz + (g % 86400) * interval '1 second',
                jsonb_build_object('temp', g % 40)
           FROM generate_series(1, ${preloadRows}) g`,
        [monthStart.toISOString()],
      );
      await admin.query(`VACUUM ANALYZE ${TABLE}`);
      log(
        `setup: ${TABLE} with child ${partitionName("{table}_p{YYYY}{MM}", TABLE_NAME, monthStart)} + DEFAULT, ${preloadRows} rows preloaded; DDL target: ${months[0]!.name} .. ${months.at(-1)!.name}`,
      );

      const reset = async () => {
        for (const m of months) await admin.query(`DROP TABLE IF EXISTS public.${m.name}`);
        await admin.query("CHECKPOINT");
      };
      const ours =
        (over: { lockTimeoutMs?: number; defaultPartition?: boolean } = {}) =>
        (signal: AbortSignal) =>
          ourDdl(
            db,
            url,
            {
              now,
              partitions,
              lockTimeoutMs: over.lockTimeoutMs ?? lockTimeoutMs,
              retryBudgetMs,
              defaultPartition: over.defaultPartition ?? true,
            },
            signal,
          );
      const DEFAULT_NAME = `${TABLE_NAME}_default`;
      const specs: ScenarioSpec[] = [
        { key: "a", title: "(a) no DDL" },
        { key: "b", title: `(b) partition-manager, ${partitions} partitions`, ddl: ours() },
        {
          key: "c",
          title: `(c) naive PARTITION OF, ${partitions} partitions`,
          ddl: () => naiveDdl(url, months),
        },
      ];
      if (extras) {
        specs.push(
          {
            key: "b-lt100",
            title: "(b') as (b), lockTimeoutMs 100",
            ddl: ours({ lockTimeoutMs: 100 }),
          },
          {
            key: "b-nodefault",
            title: "(b'') as (b), no DEFAULT partition",
            ddl: ours({ defaultPartition: false }),
            // With no load running: the DEFAULT (empty) is detached for this scenario only.
            before: async () => {
              await admin.query(`ALTER TABLE ${TABLE} DETACH PARTITION public.${DEFAULT_NAME}`);
            },
            after: async () => {
              await admin.query(`ALTER TABLE ${TABLE} ATTACH PARTITION public.${DEFAULT_NAME} DEFAULT`);
            },
          },
        );
      }

      const results: ScenarioResult[] = [];
      const month = { start: monthStart.getTime(), end: monthEnd.getTime() };
      const common = { url, adminUrl: server.url(), windowMs, warmupMs, month, log };
      for (const spec of specs) {
        await reset();
        await spec.before?.();
        try {
          log(`scenario ${spec.title}`);
          results.push(await runScenario({ ...common, ...spec }));
        } finally {
          await spec.after?.();
        }
      }
      await reset();

      return buildReport(results, {
        major: server.major,
        settings: await serverSettings(server),
        windowMs,
        warmupMs,
        partitions,
        lockTimeoutMs,
        retryBudgetMs,
        preloadRows,
      });
    } finally {
      await closeClient(admin);
      await db.destroy();
    }
  });
}

function buildReport(
  results: ScenarioResult[],
  p: {
    major: number;
    settings: string;
    windowMs: number;
    warmupMs: number;
    partitions: number;
    lockTimeoutMs: number;
    retryBudgetMs: number;
    preloadRows: number;
  },
): BenchResult {
  const base = results.find((r) => r.key === "a")!;
  const problems: string[] = [];
  const writerRows = results.map((r) => [
    r.title,
    `${(r.windowMs / 1000).toFixed(1)} s`,
    `${r.rows} (${Math.round(r.rows / (r.windowMs / 1000))}/s)`,
    String(r.statements),
    String(r.errors),
    ms(r.p50, 2),
    ms(r.p99, 2),
    ms(r.worst),
    ratio(r.worst, base.worst),
    ms(r.worstLag),
  ]);
  const waitText = (w: WaitRecord | undefined) =>
    w ? `${ms(w.waitMs, 0)} (${w.app}, ${w.mode} on ${w.relation})` : "none seen";
  const lockRows = results.map((r) => [
    r.title,
    waitText(r.maxOtherWait),
    r.key === "a" ? "-" : waitText(r.maxDdlWait),
    `${r.readerQueries} / ${ms(r.readerWorst, 0)}${r.readerErrors ? ` / ${r.readerErrors} errors` : ""}`,
    String(r.monitorSamples),
    ms(r.eventLoopMaxMs),
  ]);
  const ddlRows = results
    .filter((r) => r.key !== "a")
    .map((r) => [
      r.title,
      r.ddl ? (r.ddl.ok ? "ok" : "FAILED") : "did not finish",
      r.ddl ? `${r.ddl.created}/${p.partitions}` : "?",
      r.ddl ? ms(r.ddl.durationMs, 0) : "?",
      r.ddl ? r.ddl.detail : "",
    ]);
  const waitDetails: string[] = [];
  for (const r of results) {
    for (const w of [r.maxOtherWait, r.maxDdlWait]) {
      if (!w) continue;
      waitDetails.push(
        `- ${r.title}: ${w.app} waited ${ms(w.waitMs, 0)} for ${w.mode} on ${w.relation} in \`${w.query}\`; blocked by: ${w.blockedBy || "(not sampled)"}`,
      );
    }
  }
  for (const r of results) {
    if (r.errors > 0) problems.push(`${r.title}: ${r.errors} INSERT errors: ${r.errorSamples.join("; ")}`);
    if (r.readerErrors > 0) problems.push(`${r.title}: ${r.readerErrors} reader query errors`);
    if (r.key !== "a" && !r.ddl?.ok) {
      problems.push(`${r.title}: DDL ${r.ddl ? `failed: ${r.ddl.error ?? r.ddl.detail}` : "did not finish"}`);
    }
  }
  const report = [
    "## 2. Partition creation under load",
    "",
    `PostgreSQL ${p.major} (${p.settings}). Writer: one ${WRITER_BATCH_ROWS}-row INSERT every ${WRITER_PERIOD_MS} ms (target ${(WRITER_BATCH_ROWS * 1000) / WRITER_PERIOD_MS} rows/s) into the current month. ` +
      `Reader: \`SELECT (SELECT count(*) FROM ${TABLE}), pg_sleep(${READER_HOLD_S})\` every ${READER_PERIOD_MS / 1000} s ` +
      `(ACCESS SHARE on the parent and every partition for ${READER_HOLD_S} s; ${p.preloadRows} preloaded rows). ` +
      `Each scenario: ${p.warmupMs / 1000} s warm-up (not recorded), then a ${p.windowMs / 1000} s measured window; ` +
      `the DDL starts ${DDL_PHASE_MS} ms into reader query #${DDL_READER_TICK + 1} of the window, while it holds its locks. ` +
      `Lock waits sampled every ${MONITOR_PERIOD_MS} ms (waits shorter than that may be missed; the writer's own latencies catch them).`,
    "",
    "### Writer (INSERT statement latency, send to result)",
    "",
    markdownTable(
      [
        "scenario",
        "window",
        "rows inserted",
        "statements",
        "errors",
        "p50",
        "p99",
        "worst",
        "worst vs (a)",
        "worst behind schedule",
      ],
      writerRows,
    ),
    "",
    "### Lock waits (pg_locks, sessions other than the DDL's) and reader",
    "",
    markdownTable(
      [
        "scenario",
        "max lock wait, other sessions",
        "max lock wait, the DDL itself",
        "reader queries / slowest",
        "monitor samples",
        "event-loop max delay",
      ],
      lockRows,
    ),
    "",
    ...(waitDetails.length > 0
      ? ["Longest waits and their blockers (pg_blocking_pids):", "", ...waitDetails, ""]
      : []),
    "### DDL",
    "",
    markdownTable(["scenario", "outcome", "created", "duration", "detail"], ddlRows),
    ...(problems.length > 0 ? ["", "### Problems seen", "", ...problems.map((x) => `- ${x}`)] : []),
  ].join("\n");

  const b = results.find((r) => r.key === "b")!;
  const c = results.find((r) => r.key === "c")!;
  const other = (r: ScenarioResult) => (r.maxOtherWait ? ms(r.maxOtherWait.waitMs, 0) : "none seen");
  return {
    name: "ddl-under-load",
    report,
    summary: [
      ...results.map((r) => [
        "ddl-under-load",
        `${r.title}: INSERT worst / p99; errors; max lock wait of others`,
        `${ms(r.worst)} / ${ms(r.p99, 2)}; ${r.errors} errors; ${other(r)}`,
        ratio(r.worst, base.worst),
      ]),
      [
        "ddl-under-load",
        "worst INSERT, (b) vs (c)",
        `${ms(b.worst)} vs ${ms(c.worst)}`,
        ratio(b.worst, c.worst),
      ],
    ],
    problems,
  };
}

runAloneIfMain(import.meta.url, () => runDdlBench());
