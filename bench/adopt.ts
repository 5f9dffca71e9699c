// Benchmark: `telemetry-jobs adopt` on an application's busy partitioned table. What does a
// steady writer see while adoption adds ingest_xid, builds the (ingest_xid, time) index partition by
// partition, attaches it, installs the change-tracking triggers and registers the table?
//
//   npm run bench:adopt                           # = npx tsx bench/adopt.ts; a few minutes on 2 cores
//   ADOPT_BENCH_ROWS=100000 npm run bench:adopt   # a quick look (fixed overheads dominate)
//
// Not part of `npm run bench`; writes bench/results/adopt.md.
//
// Server: withServer's, as every benchmark's: fsync, synchronous_commit and full_page_writes on, as
// in production, which matters here because an INSERT's commit latency is what it measures.
//
// Set-up: public.app_readings, an application's own table (not the starter schema): identity key,
// device_id (FK to public.app_devices), ts, metrics jsonb, primary key (id, ts), an index on
// (device_id, ts); 12 monthly children (10 months back to next month) + DEFAULT; ADOPT_BENCH_ROWS
// (default 1,000,000) rows over the 11 months up to now, 1% of them older (in DEFAULT). Vacuumed and
// analyzed, then copied (CREATE DATABASE ... TEMPLATE) so both scenarios start from the same table.
//
// Load: a writer on its own session in its own worker thread (this file, run as the worker), one
// 10-row INSERT into the current month every 20 ms = 500 rows/s on a fixed schedule, each
// statement's latency recorded; a monitor session sampling pg_locks/pg_stat_activity every 50 ms for
// sessions waiting on a heavyweight lock (wait_event_type = 'Lock').
//   (b) adopt: the writer, 1 s, runAdoptJob (the job's code, as `telemetry-jobs adopt` runs it)
//       with the policy below, 1 s, stop. Run first, on the copy, so that (a) can be as long.
//   (a) baseline: the same writer for exactly as long as (b)'s window, no adoption, on the original.
// Afterwards (b)'s table is checked: parent index valid, every partition's index attached, target
// present, triggers installed, registered for the real-time read, a second run changes nothing.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import type pg from "pg";
import { ingestIndexName } from "../shared/adopt/ingest-plan.ts";
import { runAdoptJob } from "../shared/adopt/job.ts";
import { createLogger } from "../shared/log/logger.ts";
import { CHANGE_TRIGGERS } from "../shared/rollups/changes.ts";
import type { EmbeddedPostgres } from "../test/support/embedded-postgres.ts";
import { type LogRecord, makeConfig } from "../test/support/jobs.ts";
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
  percentile,
  ratio,
  runAloneIfMain,
  serverSettings,
  sleep,
  stopAllServers,
  withServer,
} from "./support.ts";
import type { WriterCommand, WriterMessage, WriterStats } from "./writer-worker.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS = join(ROOT, "bench", "results", "adopt.md");
const LABEL = "adopt";
const ROWS = Number(process.env.ADOPT_BENCH_ROWS ?? 1_000_000);
const DEVICES = 200;
const MONTHS_BACK = 10; // children: current month - 10 .. current month + 1 = 12
const WRITER_BATCH_ROWS = 10;
const WRITER_PERIOD_MS = 20; // 10 rows / 20 ms = 500 rows/s
const WARMUP_MS = 1_000; // writer running, not recorded
const SETTLE_MS = 1_000; // recorded load before and after the adoption
const MIN_WINDOW_MS = 10_000; // (b)'s recorded window is at least this long (load goes on after adopt)
const MONITOR_PERIOD_MS = 50;
const ADOPT_TIMEOUT_MS = 10 * 60_000;
const WATCHDOG_MS = 25 * 60_000;
const DATABASE = "adopt_bench";
const DATABASE_B = "adopt_bench_b";
const TABLE = "public.app_readings";
const TARGET = "public.app_readings_hourly";
const POLICY = {
  table: TABLE,
  timeColumn: "ts",
  interval: "monthly",
  rollup: { target: TARGET, metrics: { jsonb: "metrics" } },
};
const APP = { writer: "bench-writer", monitor: "bench-monitor", adopt: "telemetry-jobs/adopt" } as const;

// ---------------------------------------------------------------------------------------------
// The writer thread: paced INSERTs into public.app_readings on one session.

interface AdoptWriterParams {
  url: string;
  applicationName: string;
  /** Row timestamps are now(), kept inside [monthStart, monthEnd - 1 s] (epoch ms). */
  monthStart: number;
  monthEnd: number;
}

/** WriterStats plus, per statement, when it was sent (nowMs() clock, shared by the threads). */
interface AdoptWriterStats extends WriterStats {
  sent: number[];
}

async function writerMain(p: AdoptWriterParams): Promise<AdoptWriterStats> {
  let stop = false;
  let onGo: (go: Extract<WriterCommand, { type: "go" }>) => void = () => {};
  const go = new Promise<Extract<WriterCommand, { type: "go" }>>((resolve) => {
    onGo = resolve;
  });
  parentPort!.on("message", (m: WriterCommand) => {
    if (m.type === "stop") {
      stop = true;
      onGo({ type: "go", measureFrom: 0, hardDeadline: 0 });
    } else onGo(m);
  });
  parentPort!.unref();
  const stats: AdoptWriterStats = {
    rows: 0,
    statements: 0,
    errors: 0,
    errorSamples: [],
    latencies: [],
    lags: [],
    sent: [],
  };
  const errors = new Map<string, number>();
  const text = `
    INSERT INTO ${TABLE} (device_id, ts, metrics)
    SELECT 'dev-' || (1 + ($2::int * ${WRITER_BATCH_ROWS} + g) % ${DEVICES}), $1::timestamptz,
           jsonb_build_object('temp', 20 + g, 'hum', 40 + g, 'seq', $2::int)
      FROM generate_series(1, ${WRITER_BATCH_ROWS}) AS g`;
  const tsFor = () =>
    new Date(Math.min(Math.max(Date.now(), p.monthStart), p.monthEnd - 1_000)).toISOString();
  const client = await openClient(p.url, p.applicationName, { statement_timeout: "60s" });
  try {
    parentPort!.postMessage({ type: "ready" } satisfies WriterMessage);
    const { measureFrom, hardDeadline } = await go;
    const t0 = nowMs();
    for (let i = 0; !stop; i++) {
      const due = t0 + i * WRITER_PERIOD_MS;
      const wait = due - nowMs();
      if (wait > 0) await sleep(wait);
      if (stop || nowMs() > hardDeadline) break;
      const sent = nowMs();
      let failed: string | undefined;
      try {
        await client.query({ name: "bench-insert", text, values: [tsFor(), i] });
      } catch (error) {
        const e = error as Error & { code?: string };
        failed = `${e.code ?? "?"}: ${e.message}`;
      }
      const done = nowMs();
      if (sent < measureFrom) continue;
      stats.statements++;
      stats.latencies.push(done - sent);
      stats.lags.push(done - due);
      stats.sent.push(sent);
      if (failed) {
        stats.errors++;
        errors.set(failed, (errors.get(failed) ?? 0) + 1);
      } else stats.rows += WRITER_BATCH_ROWS;
    }
  } finally {
    await closeClient(client);
  }
  stats.errorSamples = [...errors];
  return stats;
}

if (!isMainThread && parentPort && (workerData as { adoptWriter?: AdoptWriterParams })?.adoptWriter) {
  writerMain((workerData as { adoptWriter: AdoptWriterParams }).adoptWriter).then(
    (stats) => parentPort!.postMessage({ type: "done", stats } satisfies WriterMessage),
    (error) => parentPort!.postMessage({ type: "failed", error: String(error) } satisfies WriterMessage),
  );
}

/** Starts the writer thread; resolves once its session is connected. */
async function startWriter(params: AdoptWriterParams) {
  const worker = new Worker(new URL(import.meta.url), { workerData: { adoptWriter: params } });
  let onReady: () => void = () => {};
  let onFail: (e: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onFail = reject;
  });
  const done = new Promise<AdoptWriterStats>((resolve, reject) => {
    worker.on("message", (m: WriterMessage) => {
      if (m.type === "ready") onReady();
      else if (m.type === "done") resolve(m.stats as AdoptWriterStats);
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
  done.catch(() => {});
  try {
    await ready;
  } catch (error) {
    await worker.terminate();
    throw error;
  }
  return {
    go: (measureFrom: number, hardDeadline: number) =>
      worker.postMessage({ type: "go", measureFrom, hardDeadline } satisfies WriterCommand),
    stop: () => worker.postMessage({ type: "stop" } satisfies WriterCommand),
    done,
    terminate: () => worker.terminate(),
  };
}

// ---------------------------------------------------------------------------------------------
// Server

/** withServer (fsync on), and a watchdog that stops the server and exits if the run hangs. */
async function withWatchedServer<T>(work: (server: EmbeddedPostgres) => Promise<T>): Promise<T> {
  const watchdog = setTimeout(() => {
    console.error(`[${LABEL}] watchdog: still running after ${WATCHDOG_MS / 60_000} minutes, stopping`);
    void stopAllServers().finally(() => process.exit(1));
  }, WATCHDOG_MS);
  watchdog.unref();
  try {
    return await withServer(LABEL, work);
  } finally {
    clearTimeout(watchdog);
  }
}

// ---------------------------------------------------------------------------------------------
// Set-up

const monthStart = (d: Date, offset = 0) =>
  new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1));
const yyyymm = (d: Date) => `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;

async function createAppTable(c: pg.Client, now: Date): Promise<void> {
  await c.query(`CREATE TABLE public.app_devices (id text PRIMARY KEY, site text NOT NULL)`);
  await c.query(
    `INSERT INTO public.app_devices SELECT 'dev-' || i, 'site-' || (i % 7) FROM generate_series(1, ${DEVICES}) AS i`,
  );
  await c.query(`
    CREATE TABLE ${TABLE} (
      id bigint GENERATED ALWAYS AS IDENTITY,
      device_id text NOT NULL REFERENCES public.app_devices (id),
      ts timestamptz NOT NULL,
      metrics jsonb NOT NULL,
      PRIMARY KEY (id, ts)
    ) PARTITION BY RANGE (ts)`);
  await c.query(`CREATE INDEX app_readings_device_ts ON ${TABLE} (device_id, ts)`);
  for (let k = -MONTHS_BACK; k <= 1; k++) {
    const from = monthStart(now, k);
    await c.query(
      `CREATE TABLE public.app_readings_p${yyyymm(from)} PARTITION OF ${TABLE}
         FOR VALUES FROM ('${from.toISOString()}') TO ('${monthStart(now, k + 1).toISOString()}')`,
    );
  }
  await c.query(`CREATE TABLE public.app_readings_default PARTITION OF ${TABLE} DEFAULT`);
  // 99% over [first child's start, now), 1% in the 60 days before it (DEFAULT), in chunks.
  const lo = monthStart(now, -MONTHS_BACK).getTime() / 1000;
  const hi = now.getTime() / 1000;
  const chunk = 100_000;
  for (let done = 0; done < ROWS; done += chunk) {
    const n = Math.min(chunk, ROWS - done);
    const t = nowMs();
    await c.query(
      `INSERT INTO ${TABLE} (device_id, ts, metrics)
       SELECT 'dev-' || (1 + (g % ${DEVICES})),
              CASE WHEN g % 100 = 0 THEN to_timestamp(${lo} - 1 - (g % 5184000))
                   ELSE to_timestamp(${lo} + (g::float8 / ${ROWS}) * (${hi} - ${lo})) END,
              jsonb_build_object('temp', round((15 + random() * 15)::numeric, 2),
                                 'hum', round((30 + random() * 40)::numeric, 1),
                                 'batt', round((3 + random())::numeric, 3), 'fw', 'v1.4')
         FROM generate_series(${done + 1}, ${done + n}) AS g`,
    );
    console.log(`[${LABEL}] loaded ${done + n} of ${ROWS} rows (${Math.round(nowMs() - t)} ms)`);
  }
  await c.query(`VACUUM (ANALYZE) ${TABLE}`);
  await c.query(`VACUUM (ANALYZE) public.app_devices`);
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const admin = await openClient(url, "bench-admin", { statement_timeout: "0" });
  try {
    await admin.query(sql);
  } finally {
    await closeClient(admin);
  }
}

// ---------------------------------------------------------------------------------------------
// Lock monitor

interface WaitRecord {
  waitMs: number;
  app: string;
  mode: string;
  relation: string;
  blockedBy: string;
}

interface MonitorStats {
  samples: number;
  /** Samples in which the writer was waiting on a lock. */
  writerWaitingSamples: number;
  byApp: Map<string, WaitRecord>;
}

function startMonitor(client: pg.Client, measureFrom: number) {
  let stop = false;
  const stats: MonitorStats = { samples: 0, writerWaitingSamples: 0, byApp: new Map() };
  const sql = `
    SELECT coalesce(nullif(a.application_name, ''), a.backend_type) AS app, l.mode,
           coalesce(CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text END, l.locktype) AS relation,
           (extract(epoch FROM clock_timestamp() - l.waitstart) * 1000)::float8 AS wait_ms,
           (SELECT string_agg(coalesce(nullif(b.application_name, ''), b.backend_type) || ': '
                              || left(regexp_replace(b.query, '\\s+', ' ', 'g'), 100), '; ')
              FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))) AS blocked_by
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE NOT l.granted AND a.wait_event_type = 'Lock' AND l.pid <> pg_backend_pid()`;
  const loop = (async () => {
    const t0 = nowMs();
    for (let i = 0; !stop; i++) {
      await sleep(t0 + i * MONITOR_PERIOD_MS - nowMs());
      if (stop) break;
      let rows: {
        app: string;
        mode: string;
        relation: string;
        wait_ms: number | null;
        blocked_by: string | null;
      }[];
      try {
        rows = (await client.query(sql)).rows;
      } catch {
        continue; // a sample lost to a catalog change in flight
      }
      if (nowMs() < measureFrom) continue;
      stats.samples++;
      if (rows.some((r) => r.app === APP.writer)) stats.writerWaitingSamples++;
      for (const r of rows) {
        const waitMs = r.wait_ms ?? 0;
        const prev = stats.byApp.get(r.app);
        if (!prev || waitMs > prev.waitMs)
          stats.byApp.set(r.app, {
            waitMs,
            app: r.app,
            mode: r.mode,
            relation: r.relation,
            blockedBy: r.blocked_by ?? "",
          });
      }
    }
  })();
  return {
    async stop(): Promise<MonitorStats> {
      stop = true;
      await loop;
      return stats;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface AdoptRun {
  ok: boolean;
  status: string;
  exitCode: number;
  wallMs: number;
  /** Log records, each with the time it was written (t, on the nowMs() clock). */
  logs: (LogRecord & { t: number })[];
  error?: string;
}

interface Scenario {
  key: "a" | "b";
  windowMs: number;
  measureFrom: number;
  /** (b): when runAdoptJob was called and when it returned (nowMs() clock). */
  adoptFrom?: number;
  adoptTo?: number;
  writer: AdoptWriterStats;
  monitor: MonitorStats;
  adopt?: AdoptRun;
}

/** A logger like captureLogger's, that also stamps each record with when it was written. */
function timedLogger() {
  const records: (LogRecord & { t: number })[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      const t = nowMs();
      for (const line of chunk.toString().split("\n"))
        if (line.trim()) records.push({ ...JSON.parse(line), t });
      done();
    },
  });
  return { log: createLogger({ job: "adopt", format: "json", out, verbose: true }), records };
}

async function runAdopt(url: string): Promise<AdoptRun> {
  const db = openKysely(url, "adopt", 4);
  const { log, records } = timedLogger();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ADOPT_TIMEOUT_MS);
  const t0 = nowMs();
  try {
    const config = makeConfig(url, [POLICY], { now: new Date() });
    const r = await runAdoptJob(db, config, log, abort.signal);
    return {
      ok: r.status === "ok",
      status: r.status,
      exitCode: r.exitCode,
      wallMs: nowMs() - t0,
      logs: records,
    };
  } catch (error) {
    return {
      ok: false,
      status: "threw",
      exitCode: -1,
      wallMs: nowMs() - t0,
      logs: records,
      error: String(error),
    };
  } finally {
    clearTimeout(timer);
    await db.destroy();
  }
}

/**
 * The writer and the monitor for SETTLE_MS, then `work` (or, without it, `windowMs` minus both
 * settles of nothing), then SETTLE_MS. The recorded window starts after the writer's warm-up.
 */
async function underLoad(
  url: string,
  key: "a" | "b",
  now: Date,
  work: { adopt: true } | { windowMs: number },
): Promise<Scenario> {
  await adminQuery(url, "CHECKPOINT");
  const writer = await startWriter({
    url,
    applicationName: APP.writer,
    monthStart: monthStart(now).getTime(),
    monthEnd: monthStart(now, 1).getTime(),
  });
  const monitorClient = await openClient(url, APP.monitor);
  const measureFrom = nowMs() + WARMUP_MS;
  const monitor = startMonitor(monitorClient, measureFrom);
  writer.go(measureFrom, measureFrom + ADOPT_TIMEOUT_MS + 60_000);
  let adopt: AdoptRun | undefined;
  let adoptFrom: number | undefined;
  let adoptTo: number | undefined;
  let stats: AdoptWriterStats;
  let monitorStats: MonitorStats;
  let windowMs: number;
  try {
    await sleep(measureFrom - nowMs());
    if ("adopt" in work) {
      await sleep(SETTLE_MS);
      console.log(`[${LABEL}] (b): adopt starts`);
      adoptFrom = nowMs();
      adopt = await runAdopt(url);
      adoptTo = nowMs();
      console.log(`[${LABEL}] (b): adopt ${adopt.status} in ${(adopt.wallMs / 1000).toFixed(1)} s`);
      await sleep(Math.max(SETTLE_MS, measureFrom + MIN_WINDOW_MS - nowMs()));
    } else {
      await sleep(measureFrom + work.windowMs - nowMs());
    }
  } finally {
    windowMs = nowMs() - measureFrom;
    writer.stop();
    const killer = setTimeout(() => void writer.terminate(), 90_000);
    try {
      stats = await writer.done;
    } finally {
      clearTimeout(killer);
      monitorStats = await monitor.stop();
      await closeClient(monitorClient);
    }
  }
  return {
    key,
    windowMs,
    measureFrom,
    writer: stats,
    monitor: monitorStats,
    ...(adopt ? { adopt, adoptFrom, adoptTo } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Checks and steps

interface Checks {
  rows: [string, string, boolean][];
  partitionRows: Map<string, number>;
}

async function checkAdopted(url: string): Promise<Checks> {
  const c = await openClient(url, "bench-check", { statement_timeout: "0" });
  try {
    const index = ingestIndexName("app_readings");
    const r = await c.query(
      `SELECT (SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass($1)) AS parent_valid,
              (SELECT count(*)::int FROM pg_inherits i WHERE i.inhparent = to_regclass($2)) AS partitions,
              (SELECT count(*)::int FROM pg_inherits i
                 JOIN pg_index x ON x.indrelid = i.inhrelid AND x.indisvalid
                 JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid AND ii.inhparent = to_regclass($1)
                WHERE i.inhparent = to_regclass($2)) AS attached,
              to_regclass($3) IS NOT NULL AS target,
              (SELECT format_type(a.atttypid, a.atttypmod) || ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)
                 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attrelid = to_regclass($2) AND a.attname = 'ingest_xid' AND NOT a.attisdropped) AS col,
              (SELECT count(*)::int FROM pg_trigger t WHERE t.tgrelid = to_regclass($2)
                  AND t.tgname = ANY ($4::text[]) AND t.tgenabled <> 'D') AS triggers,
              (SELECT count(*)::int FROM telemetry_jobs.rollup_reads
                WHERE source_schema = 'public' AND source_name = 'app_readings') AS registered`,
      [`public.${index}`, TABLE, TARGET, CHANGE_TRIGGERS.map((t) => t.name)],
    );
    const x = r.rows[0];
    const counts = await c.query<{ name: string; n: number }>(
      `SELECT c.relname AS name, count(*)::int AS n FROM ${TABLE} t JOIN pg_class c ON c.oid = t.tableoid GROUP BY 1`,
    );
    return {
      partitionRows: new Map(counts.rows.map((row) => [row.name, row.n])),
      rows: [
        ["parent index valid (pg_index.indisvalid)", `${index}: ${x.parent_valid}`, x.parent_valid === true],
        [
          "partitions with a valid index attached to it",
          `${x.attached} of ${x.partitions}`,
          x.partitions > 0 && x.attached === x.partitions,
        ],
        ["ingest_xid column", String(x.col), x.col === "xid8 DEFAULT pg_current_xact_id()"],
        ["rollup target exists", `${TARGET}: ${x.target}`, x.target === true],
        [
          "change-tracking triggers",
          `${x.triggers} of ${CHANGE_TRIGGERS.length}`,
          x.triggers === CHANGE_TRIGGERS.length,
        ],
        ["registered for the real-time read (rollup_reads)", `${x.registered} row`, x.registered === 1],
      ],
    };
  } finally {
    await closeClient(c);
  }
}

interface Step {
  step: string;
  relation: string;
  durationMs: number;
  /** When its log line was written (nowMs() clock): the step ran in [end - durationMs, end]. */
  end: number;
  rows?: number;
}

/** Steps from the job's log: each ingest action's "done in N ms"; the others by log timestamps. */
function stepsOf(run: AdoptRun, partitionRows: Map<string, number>): Step[] {
  const steps: Step[] = [];
  let lastStart: { title: string; text: string } | undefined;
  let prevT: number | undefined;
  for (const l of run.logs) {
    const m = String(l.message);
    const done = /^(.*): done in (\d+) ms$/.exec(m);
    if (done) {
      const started = lastStart;
      const text = started !== undefined && started.title === done[1] ? started.text : "";
      const on =
        /CONCURRENTLY \S+ ON (\S+)/.exec(text)?.[1] ?? /ATTACH PARTITION (\S+)/.exec(text)?.[1] ?? "";
      const kind = text.startsWith("CREATE INDEX CONCURRENTLY")
        ? "build index concurrently"
        : text.startsWith("ALTER INDEX")
          ? "attach index"
          : text.startsWith("CREATE INDEX IF NOT EXISTS")
            ? "index ON ONLY the parent"
            : text.startsWith("ALTER TABLE")
              ? "add ingest_xid + default"
              : done[1]!;
      const name = on.replace(/^public\./, "");
      const step: Step = { step: kind, relation: on || TABLE, durationMs: Number(done[2]), end: l.t };
      if (kind === "build index concurrently") {
        step.rows = partitionRows.get(name) ?? 0;
      }
      steps.push(step);
    } else {
      const start = /^(.*?): ((?:ALTER|CREATE|DROP) .*)$/.exec(m);
      if (start) lastStart = { title: start[1]!, text: start[2]! };
      else if (m.startsWith("created the rollup target") && prevT !== undefined)
        steps.push({
          step: "create target (from the previous log line)",
          relation: TARGET,
          durationMs: l.t - prevT,
          end: l.t,
        });
      else if (m.startsWith("installed change tracking") && prevT !== undefined)
        steps.push({
          step: "install triggers (from the previous log line)",
          relation: TABLE,
          durationMs: l.t - prevT,
          end: l.t,
        });
    }
    prevT = l.t;
  }
  return steps;
}

// ---------------------------------------------------------------------------------------------
// The benchmark

/** The statements sent in [from, to) ms after the start of the recorded window. */
function slice(s: Scenario, from: number, to: number): Scenario {
  const keep = s.writer.sent.map((t) => t - s.measureFrom >= from && t - s.measureFrom < to);
  const pick = <T>(xs: T[]) => xs.filter((_, i) => keep[i]);
  return { ...s, writer: { ...s.writer, latencies: pick(s.writer.latencies), lags: pick(s.writer.lags) } };
}

function writerFigures(s: Scenario) {
  const w = s.writer;
  return {
    n: w.latencies.length,
    p50: median(w.latencies),
    p99: percentile(w.latencies, 99),
    worst: max(w.latencies),
    lagP99: percentile(w.lags, 99),
    lagWorst: max(w.lags),
  };
}

const secs = (v: number) => (Number.isFinite(v) ? `${(v / 1000).toFixed(1)} s` : "n/a");

function waitText(w: WaitRecord | undefined): string {
  return w ? `${Math.round(w.waitMs)} ms (${w.mode} on ${w.relation})` : "none seen";
}

export async function runAdoptBench(): Promise<BenchResult> {
  const started = nowMs();
  return await withWatchedServer(async (server) => {
    const url = await createMigratedDatabase(server, DATABASE);
    const now = new Date();
    const setup = await openClient(url, "bench-setup", { statement_timeout: "0" });
    try {
      const t = nowMs();
      await createAppTable(setup, now);
      console.log(`[${LABEL}] set-up: ${ROWS} rows in ${secs(nowMs() - t)}`);
    } finally {
      await closeClient(setup);
    }
    const settings = await serverSettings(server, [
      "wal_sync_method",
      "shared_buffers",
      "max_wal_size",
      "checkpoint_timeout",
      "maintenance_work_mem",
      "autovacuum",
    ]);
    const strategy = server.major >= 15 ? " STRATEGY = FILE_COPY" : "";
    await adminQuery(server.url(), `CREATE DATABASE ${DATABASE_B} TEMPLATE ${DATABASE}${strategy}`);
    const urlB = server.url(DATABASE_B);

    console.log(`[${LABEL}] (b): writer + adopt`);
    const b = await underLoad(urlB, "b", now, { adopt: true });
    const checks = await checkAdopted(urlB);
    const again = await runAdopt(urlB);
    const againActions = again.logs.find((l) => String(l.message).startsWith("already adopted"));
    checks.rows.push([
      "a second run changes nothing",
      `${again.status}; ${againActions ? "already adopted: nothing to do" : "did something (see its log)"}`,
      again.ok && againActions !== undefined,
    ]);
    checks.rows.push([
      "adopt job status",
      `${b.adopt?.status} (exit code ${b.adopt?.exitCode})`,
      b.adopt?.ok === true,
    ]);

    console.log(`[${LABEL}] (a): writer alone for ${secs(b.windowMs)}`);
    const a = await underLoad(url, "a", now, { windowMs: b.windowMs });
    await adminQuery(server.url(), `DROP DATABASE ${DATABASE_B} WITH (FORCE)`);

    const fa = writerFigures(a);
    const fb = writerFigures(b);
    const adopt = b.adopt!;
    // The inserts sent while runAdoptJob ran, and those sent in the same slice of (a)'s window.
    const from = (b.adoptFrom ?? b.measureFrom) - b.measureFrom;
    const to = (b.adoptTo ?? b.measureFrom) - b.measureFrom;
    const da = writerFigures(slice(a, from, to));
    const db = writerFigures(slice(b, from, to));
    const steps = stepsOf(adopt, checks.partitionRows);
    const builds = steps.filter((s) => s.step === "build index concurrently");
    const buildRows = builds.reduce((n, s) => n + (s.rows ?? 0), 0);
    const buildMs = builds.reduce((n, s) => n + s.durationMs, 0);
    const problems: string[] = [];
    for (const s of [a, b])
      for (const [msg, n] of s.writer.errorSamples) problems.push(`(${s.key}) ${n} failed insert(s): ${msg}`);
    if (!adopt.ok) problems.push(`adopt ended ${adopt.status}${adopt.error ? `: ${adopt.error}` : ""}`);
    for (const l of adopt.logs.filter((x) => ["WARNING", "ERROR", "CRITICAL"].includes(x.severity)))
      problems.push(`adopt ${l.severity}: ${l.message}`);
    for (const [check, value, ok] of checks.rows) if (!ok) problems.push(`check failed: ${check}: ${value}`);

    const bWriterWait = b.monitor.byApp.get(APP.writer);
    const aWriterWait = a.monitor.byApp.get(APP.writer);
    const adoptWait = [...b.monitor.byApp.values()]
      .filter((w) => w.app !== APP.writer && w.app !== APP.monitor)
      .sort((x, y) => y.waitMs - x.waitMs)[0];
    const cpu = cpus();
    const table = markdownTable(
      ["measure", "(a) baseline, no adoption", "(b) with adopt", "ratio (b)/(a)"],
      [
        ["recorded window", secs(a.windowMs), secs(b.windowMs), ""],
        ["INSERT statements (10 rows each)", String(a.writer.statements), String(b.writer.statements), ""],
        ["failed inserts", String(a.writer.errors), String(b.writer.errors), ""],
        ["median insert latency", ms(fa.p50), ms(fb.p50), ratio(fb.p50, fa.p50)],
        ["p99 insert latency", ms(fa.p99), ms(fb.p99), ratio(fb.p99, fa.p99)],
        ["worst insert latency", ms(fa.worst), ms(fb.worst), ratio(fb.worst, fa.worst)],
        ["p99 behind schedule", ms(fa.lagP99), ms(fb.lagP99), ratio(fb.lagP99, fa.lagP99)],
        ["worst behind schedule", ms(fa.lagWorst), ms(fb.lagWorst), ratio(fb.lagWorst, fa.lagWorst)],
        [
          "while adopt ran: INSERTs sent",
          `${da.n} (same slice of the window)`,
          `${db.n} (${secs(to - from)})`,
          "",
        ],
        ["while adopt ran: median", ms(da.p50), ms(db.p50), ratio(db.p50, da.p50)],
        ["while adopt ran: p99", ms(da.p99), ms(db.p99), ratio(db.p99, da.p99)],
        ["while adopt ran: worst", ms(da.worst), ms(db.worst), ratio(db.worst, da.worst)],
        [
          "while adopt ran: worst behind schedule",
          ms(da.lagWorst),
          ms(db.lagWorst),
          ratio(db.lagWorst, da.lagWorst),
        ],
        ["writer's longest lock wait (sampled)", waitText(aWriterWait), waitText(bWriterWait), ""],
        [
          "samples with the writer waiting on a lock",
          `${a.monitor.writerWaitingSamples} of ${a.monitor.samples}`,
          `${b.monitor.writerWaitingSamples} of ${b.monitor.samples}`,
          "",
        ],
        ["adopt's own longest lock wait (sampled)", "", waitText(adoptWait), ""],
        ["adoption wall time (runAdoptJob)", "", secs(adopt.wallMs), ""],
        [
          "index builds: rows / total build time",
          "",
          `${buildRows} rows / ${secs(buildMs)} = ${buildMs > 0 ? Math.round(buildRows / (buildMs / 1000)) : "n/a"} rows/s`,
          "",
        ],
      ],
    );
    const stepTable = markdownTable(
      ["step", "relation", "duration", "rows", "rows/s"],
      steps.map((s) => [
        s.step,
        s.relation,
        `${Math.round(s.durationMs)} ms`,
        s.rows === undefined ? "" : String(s.rows),
        s.rows === undefined || s.durationMs <= 0 ? "" : String(Math.round(s.rows / (s.durationMs / 1000))),
      ]),
    );
    // The slowest inserts of (b) and the adoption steps that ran while each was in flight.
    const slowest = b.writer.latencies
      .map((latency, i) => ({ latency, sent: b.writer.sent[i]! }))
      .sort((x, y) => y.latency - x.latency)
      .slice(0, 5);
    const adoptFrom = b.adoptFrom ?? b.measureFrom;
    const adoptTo = b.adoptTo ?? b.measureFrom;
    const slowTable = markdownTable(
      ["insert latency", "sent (from adopt's start)", "adopt steps in flight meanwhile"],
      slowest.map(({ latency, sent }) => {
        const during = steps.filter((st) => st.end - st.durationMs <= sent + latency && st.end >= sent);
        const where =
          during.length > 0
            ? during.map((st) => `${st.step} ${st.relation.replace(/^public\./, "")}`).join("; ")
            : sent + latency < adoptFrom
              ? "(before adopt)"
              : sent > adoptTo
                ? "(after adopt)"
                : "(between logged steps)";
        return [ms(latency), `${((sent - adoptFrom) / 1000).toFixed(2)} s`, where];
      }),
    );
    const checkTable = markdownTable(
      ["check after (b)", "found", "ok"],
      checks.rows.map(([c, v, ok]) => [c, v, ok ? "yes" : "**NO**"]),
    );
    const blockers = [
      ["(a) writer", aWriterWait],
      ["(b) writer", bWriterWait],
      ["(b) adopt", adoptWait],
    ] as const;
    const report = [
      "## adopt under load",
      "",
      `Measured on ${new Date().toISOString().slice(0, 10)} by \`npm run bench:adopt\`: Node ${process.version}, ${cpu.length} cores (${cpu[0]?.model ?? "?"}), embedded PostgreSQL ${server.major} on the same machine; whole run ${secs(nowMs() - started)}.`,
      "",
      `Server: fsync, synchronous_commit and full_page_writes **on**, as in production (read from pg_settings): ${settings}.`,
      "",
      `Table: \`${TABLE}\` (identity id, device_id text FK to public.app_devices (${DEVICES} rows), ts timestamptz, metrics jsonb; primary key (id, ts), index (device_id, ts)), 12 monthly children + DEFAULT, ${ROWS} rows over 11 months (1% older, in DEFAULT), vacuumed and analyzed. Policy: \`${JSON.stringify(POLICY)}\` (default lockTimeoutMs 2000, retryBudgetMs 60000). Writer: one session in a worker thread, one ${WRITER_BATCH_ROWS}-row INSERT into the current month every ${WRITER_PERIOD_MS} ms (${(WRITER_BATCH_ROWS * 1000) / WRITER_PERIOD_MS} rows/s), each one committed; ${WARMUP_MS / 1000} s warm-up, then recorded. (b): ${SETTLE_MS / 1000} s, \`runAdoptJob\` (the code of \`telemetry-jobs adopt\`), ${SETTLE_MS / 1000} s (at least ${MIN_WINDOW_MS / 1000} s in all), on a copy of the database; (a): afterwards, the same writer alone on the original for as long as (b)'s window. Lock monitor: pg_locks every ${MONITOR_PERIOD_MS} ms.`,
      "",
      table,
      "",
      "- Ratios are (b)/(a): how much worse inserts are while adoption runs. The worst latency of (a) is the machine's noise floor (with fsync on, mostly the disk's flush time), so read the worst ratio with the absolute figures beside it.",
      '- "behind schedule" counts each insert from when the fixed schedule wanted it sent: a stall delays the inserts queued behind it too, which the statement latencies of a one-at-a-time writer count once.',
      "- Lock waits are sampled: one shorter than 50 ms can be missed; the writer's latencies do not miss it.",
      "- The whole-window rows compare (b)'s window (1 s, adopt, load until the window is at least 10 s) with an (a) window as long; after adopt, (b)'s inserts also maintain the new index. The \"while adopt ran\" rows keep only the inserts sent between runAdoptJob's call and its return, and the same slice of (a)'s window: few inserts when adopt is quick, so their p99 is close to their worst.",
      "- The column is added without a rewrite, so every existing row has ingest_xid NULL: the concurrent builds sort (NULL, ts) keys, which is why they run at about a million rows a second; each still scans its partition twice (CREATE INDEX CONCURRENTLY) and waits for the transactions in flight.",
      "- (a) runs after (b), on the original database (same rows, byte for byte, as (b)'s copy had); CHECKPOINT before each scenario.",
      "",
      "Longest lock waits and their blockers:",
      "",
      ...blockers.map(
        ([who, w]) =>
          `- ${who}: ${w ? `${Math.round(w.waitMs)} ms for ${w.mode} on ${w.relation}, blocked by ${w.blockedBy || "?"}` : "none seen"}`,
      ),
      "",
      "### (b): the five slowest inserts",
      "",
      slowTable,
      "",
      "### adopt: steps (from its log)",
      "",
      stepTable,
      "",
      "Durations of the ingest steps are the job's own \"done in N ms\"; target creation and trigger installation are the time since the job's previous log line (an upper bound). rows: the partition's rows after the run.",
      "",
      "### Checks",
      "",
      checkTable,
      ...(problems.length > 0 ? ["", "Problems:", "", ...problems.map((p) => `- ${p}`)] : []),
    ].join("\n");
    return {
      name: "adopt",
      report,
      summary: [
        ["adopt", "worst insert latency ((b) vs (a))", ms(fb.worst), ratio(fb.worst, fa.worst)],
        ["adopt", "p99 insert latency ((b) vs (a))", ms(fb.p99), ratio(fb.p99, fa.p99)],
        ["adopt", "adoption wall time", secs(adopt.wallMs), ""],
        ["adopt", "failed inserts (b)", String(b.writer.errors), ""],
      ],
      problems,
    };
  });
}

if (isMainThread)
  runAloneIfMain(import.meta.url, async () => {
    const t0 = nowMs();
    const result = await runAdoptBench();
    mkdirSync(dirname(RESULTS), { recursive: true });
    writeFileSync(
      RESULTS,
      [
        "# Benchmark: adopt under load",
        "",
        "Written by `npm run bench:adopt` (bench/adopt.ts); not part of `npm run bench`. See bench/README.md.",
        "",
        result.report,
        "",
      ].join("\n"),
    );
    console.log(`[${LABEL}] written to ${RESULTS} (${secs(nowMs() - t0)})`);
    return result;
  });
