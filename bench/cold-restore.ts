// Cold-tier restore (not part of `npm run bench`): one monthly partition of the starter
// telemetry_points shape (COLD_RESTORE_BENCH_ROWS rows, 1,000,000 by default) is exported with
// the export of bench/cold-export.ts and dropped, as retention's mode export does; then
// `telemetry-jobs restore` (runRestore) brings it back while a writer inserts into the current
// month. Figures: the restore's wall time and rows/s, split into the files' verification, load and
// check against the manifest, and the attach (constraints validated, then ATTACH); and the
// writer's worst and p99 INSERT latency during the restore against the same writer with nothing
// running, for a window of the same length, measured in the same run (ratios); and the WAL the
// restore made against the restored partition's size (its rows are written, and logged, once).
// COLD_RESTORE_BENCH_REPEATS rounds (3 by default), each dropping the partition and restoring it
// again: a shared machine's worst latency is noisy, so the medians are reported too.
//   npx tsx bench/cold-restore.ts          (COLD_RESTORE_BENCH_ROWS=200000 for a quick look)
// The writer is bench/writer-worker.ts (its own session on its own thread: one 10-row INSERT every
// 8 ms into the current month). The server (withServer's) has fsync, synchronous_commit and
// full_page_writes on, as in production: the restore's WAL is flushed as a writer's would be. Each
// window starts after a CHECKPOINT, so neither inherits the other's dirty buffers.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { Worker } from "node:worker_threads";
import pg from "pg";
import { exportPartition } from "../shared/cold/export.ts";
import { runRestore } from "../shared/cold/restore.ts";
import { PolicyFileSchema } from "../shared/config/policy.ts";
import { createLogger } from "../shared/log/logger.ts";
import { addIntervals, floorToInterval } from "../shared/partitions/time.ts";
import { loadPartition, PARTITION } from "./cold-export.ts";
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
  withServer,
} from "./support.ts";
import type { WriterMessage, WriterParams, WriterStats } from "./writer-worker.ts";

const LABEL = "cold-restore";
const ROWS = Number(process.env.COLD_RESTORE_BENCH_ROWS ?? 1_000_000);
const DEVICES = 50;
const WARMUP_MS = 500;

/** Runs the writer for WARMUP_MS unrecorded, then records it while `during` runs. */
async function withWriter<T>(url: string, month: Date, during: () => Promise<T>) {
  const params: WriterParams = {
    url,
    applicationName: "bench-writer-current",
    batchRows: 10,
    periodMs: 8,
    devices: DEVICES,
    maxStatements: 10_000_000,
    monthStart: month.getTime(),
    monthEnd: addIntervals(month, "monthly", 1).getTime(),
  };
  const worker = new Worker(new URL("./writer-worker.ts", import.meta.url), { workerData: params });
  const ready = new Promise<void>((resolve, reject) => {
    worker.on("message", (m: WriterMessage) => {
      if (m.type === "ready") resolve();
      else if (m.type === "failed") reject(new Error(m.error));
    });
    worker.on("error", reject);
  });
  const done = new Promise<WriterStats>((resolve, reject) => {
    worker.on("message", (m: WriterMessage) => {
      if (m.type === "done") resolve(m.stats);
    });
    worker.on("error", reject);
  });
  await ready;
  const measureFrom = nowMs() + WARMUP_MS;
  worker.postMessage({ type: "go", measureFrom, hardDeadline: measureFrom + 3_600_000 });
  await sleep(WARMUP_MS);
  const t0 = nowMs();
  const result = await during();
  const windowMs = nowMs() - t0;
  worker.postMessage({ type: "stop" });
  const stats = await done;
  await worker.terminate();
  return { result, windowMs, stats };
}

/** A logger whose records are kept with the time each was written (nowMs()). */
function timedLogger() {
  const records: { at: number; message: string; severity: string }[] = [];
  const out = new Writable({
    write(chunk, _enc, callback) {
      for (const line of chunk.toString().split("\n"))
        if (line.trim()) records.push({ at: nowMs(), ...JSON.parse(line) });
      callback();
    },
  });
  return { log: createLogger({ job: "restore", format: "json", out, verbose: false }), records };
}

function writerCells(s: WriterStats): string[] {
  return [
    s.statements.toLocaleString("en"),
    String(s.errors),
    ms(percentile(s.latencies, 50), 1),
    ms(percentile(s.latencies, 99), 1),
    ms(max(s.latencies), 1),
  ];
}

const REPEATS = Number(process.env.COLD_RESTORE_BENCH_REPEATS ?? 3);
const CHILD = "public.telemetry_points_2026_01";

interface Round {
  restoreMs: number;
  /** From the start of runRestore to the loaded rows matching the manifest. */
  loadMs: number;
  /** From there to the partition attached (constraints validated, then ATTACH). */
  attachMs: number;
  /** WAL the server wrote during the restore, and the restored partition's size. */
  walBytes: number;
  partitionBytes: number;
  during: WriterStats;
  alone: WriterStats;
}

interface Setup {
  url: string;
  admin: pg.Client;
  db: ReturnType<typeof openKysely>;
  month: Date;
  work: string;
}

/** (b) one restore beside the writer, then (a) the writer alone for as long; each after a CHECKPOINT. */
async function round(setup: Setup): Promise<Round> {
  const { url, admin, db, month, work } = setup;
  await admin.query(`ALTER TABLE public.telemetry_points DETACH PARTITION ${CHILD}; DROP TABLE ${CHILD}`);
  const policy = PolicyFileSchema.parse({
    tables: [
      {
        table: "public.telemetry_points",
        timeColumn: "ts",
        interval: "monthly",
        retention: { keep: "90 days", mode: "export", export: { to: work } },
      },
    ],
  }).tables[0]!;
  await admin.query("CHECKPOINT");
  const lsn = async () => (await admin.query("SELECT pg_current_wal_lsn()::text AS l")).rows[0].l as string;
  const before = await lsn();
  const { log, records } = timedLogger();
  const request = { policy, root: work, select: { partition: PARTITION.partition.name }, dryRun: false };
  const during = await withWriter(url, month, async () => {
    const t0 = nowMs();
    const code = await runRestore(db, { ...request, now: new Date() }, log, new AbortController().signal);
    return { code, t0 };
  });
  if (during.result.code !== 0)
    throw new Error(`restore exit ${during.result.code}: ${records.map((r) => r.message).join("; ")}`);
  const after = await admin.query(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::float8 AS wal,
            pg_total_relation_size('${CHILD}')::float8 AS bytes, (SELECT count(*)::int FROM ONLY ${CHILD}) AS n`,
    [before],
  );
  if (after.rows[0].n !== ROWS) throw new Error(`restored ${after.rows[0].n} rows, not ${ROWS}`);
  const at = (message: string) => records.find((r) => r.message === message)?.at ?? Number.NaN;
  const checked = at("restore: the loaded rows match the manifest");
  await admin.query("CHECKPOINT");
  const alone = await withWriter(url, month, () => sleep(during.windowMs));
  return {
    restoreMs: during.windowMs,
    loadMs: checked - during.result.t0,
    attachMs: at("restore: partition attached") - checked,
    walBytes: after.rows[0].wal,
    partitionBytes: after.rows[0].bytes,
    during: during.stats,
    alone: alone.stats,
  };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

function report(rounds: Round[], settings: string): string {
  const restoreTable = markdownTable(
    [
      "round",
      "restore",
      "rows/s",
      "verify files, load, check",
      "constraints + ATTACH",
      "WAL / partition size",
    ],
    rounds.map((r, i) => [
      String(i + 1),
      ms(r.restoreMs, 0),
      Math.round((ROWS / r.restoreMs) * 1000).toLocaleString("en"),
      ms(r.loadMs, 0),
      ms(r.attachMs, 0),
      `${mib(r.walBytes)} / ${mib(r.partitionBytes)} = ${ratio(r.walBytes, r.partitionBytes)}`,
    ]),
  );
  const rows = rounds.flatMap((r, i) => [
    [`${i + 1}`, "(a) alone", ...writerCells(r.alone), "", ""],
    [
      `${i + 1}`,
      "(b) during the restore",
      ...writerCells(r.during),
      ratio(percentile(r.during.latencies, 99), percentile(r.alone.latencies, 99)),
      ratio(max(r.during.latencies), max(r.alone.latencies)),
    ],
  ]);
  const writerTable = markdownTable(
    ["round", "writer", "statements", "errors", "median", "p99", "worst", "p99 vs (a)", "worst vs (a)"],
    rows,
  );
  const m = (f: (r: Round) => number) => median(rounds.map(f));
  const summary =
    `Median over ${rounds.length} rounds: restore ${ms(
      m((r) => r.restoreMs),
      0,
    )} ` +
    `(${Math.round((ROWS / m((r) => r.restoreMs)) * 1000).toLocaleString("en")} rows/s); writer p99 ` +
    `${ms(m((r) => percentile(r.during.latencies, 99)))} during vs ${ms(m((r) => percentile(r.alone.latencies, 99)))} alone ` +
    `(${ratio(
      m((r) => percentile(r.during.latencies, 99)),
      m((r) => percentile(r.alone.latencies, 99)),
    )}), worst ` +
    `${ms(m((r) => max(r.during.latencies)))} during vs ${ms(m((r) => max(r.alone.latencies)))} alone ` +
    `(${ratio(
      m((r) => max(r.during.latencies)),
      m((r) => max(r.alone.latencies)),
    )}).`;
  return `## Cold-tier restore (bench/cold-restore.ts)\n\n${settings}\n\n${ROWS.toLocaleString("en")} rows.\n\n${restoreTable}\n\n${writerTable}\n\n${summary}\n`;
}

async function runColdRestoreBench(): Promise<BenchResult> {
  return withServer(LABEL, async (server) => {
    const url = await createMigratedDatabase(server, "bench_cold_restore");
    const work = mkdtempSync(path.join(tmpdir(), "bench-cold-restore-"));
    const admin = await openClient(url, "bench-admin");
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    const db = openKysely(url, "restore");
    const say = (line: string) => console.log(`[${LABEL}] ${line}`);
    try {
      const month = floorToInterval(new Date(), "monthly");
      await admin.query(`CREATE TABLE public.telemetry_points_current PARTITION OF public.telemetry_points
        FOR VALUES FROM ('${month.toISOString()}') TO ('${addIntervals(month, "monthly", 1).toISOString()}')`);
      await admin.query(
        `INSERT INTO public.devices (id) SELECT 'dev-' || g FROM generate_series(1, ${DEVICES}) g`,
      );
      say(`loading ${ROWS.toLocaleString("en")} rows into ${PARTITION.partition.name}, exporting them`);
      await loadPartition(admin, ROWS);
      await exportPartition(pool, PARTITION, { root: work, productVersion: "bench" });
      const rounds: Round[] = [];
      for (let i = 0; i < REPEATS; i++) {
        say(
          `round ${i + 1}/${REPEATS}: drop the partition, (b) restore it beside the writer, (a) the writer alone`,
        );
        rounds.push(await round({ url, admin, db, month, work }));
      }
      const settings = `PostgreSQL ${server.major} (${await serverSettings(server)}).`;
      const errors = rounds.flatMap((r) => [...r.during.errorSamples, ...r.alone.errorSamples]);
      const m = (f: (r: Round) => number) => median(rounds.map(f));
      return {
        name: LABEL,
        report: report(rounds, settings),
        summary: [
          [
            LABEL,
            `restore of ${ROWS.toLocaleString("en")} rows (median)`,
            ms(
              m((r) => r.restoreMs),
              0,
            ),
            "",
          ],
          [
            LABEL,
            "worst INSERT during the restore (median)",
            ms(m((r) => max(r.during.latencies))),
            ratio(
              m((r) => max(r.during.latencies)),
              m((r) => max(r.alone.latencies)),
            ),
          ],
        ],
        problems: errors.length > 0 ? [`writer errors: ${JSON.stringify(errors)}`] : [],
      };
    } finally {
      await db.destroy();
      await pool.end();
      await closeClient(admin);
      rmSync(work, { recursive: true, force: true });
    }
  });
}

runAloneIfMain(import.meta.url, runColdRestoreBench);
