// Benchmark: `telemetry-jobs migrate convert` (online conversion of an unpartitioned table into a
// partitioned one) vs. the copy-everything-in-one-transaction approach, on EdgeWatch's legacy
// telemetry_points (5M rows by default) under a steady insert load.
//
//   npm run bench:convert            # = npx tsx bench/convert.ts; about 8-10 minutes on 2 cores
//   CONVERT_BENCH_ROWS=500000 npm run bench:convert   # a quick look (fixed overheads dominate)
//
// Not part of `npm run bench` (which already takes 15-20 minutes); writes bench/results/convert.md.
//
// Set-up: one database with the bookkeeping schema (the migrator, as `migrate up` runs it) and the
// legacy table (test/support/legacy-tables.ts createLegacyTable, shape "edgewatch": varchar(36) uuid
// key, FK to devices, unique (device_id, message_id), indexes on (device_id, ts) and (ts)), vacuumed
// and analyzed; each scenario runs in its own copy of it (CREATE DATABASE ... TEMPLATE), so both
// start from the same table, byte for byte.
//
// Each scenario: startLoad (one writer at 600 single-row INSERTs/s, one reader, both recording every
// latency and error), 2 s, the conversion, 2 s, stop. A monitor samples pg_locks every 100 ms for the
// writer's longest lock wait and what blocked it.
//   convert: `telemetry-jobs migrate convert --table edgewatch.telemetry_points --drop-unique
//            telemetry_points_device_message_key --json` as a child process (the real CLI, from
//            source via tsx), with the policy the acceptance tests use (monthly, premake 3, rollup).
//   copy in one transaction (the naive approach): BEGIN; LOCK the table ACCESS EXCLUSIVE; create
//            the partitioned parent with monthly partitions covering every row (+ DEFAULT); INSERT
//            ... SELECT every row; then the same keys, foreign key and indexes the converted table
//            has (built after the copy, the fastest order); rename old and new; COMMIT.
// Afterwards, in both: the table is partitioned, holds exactly the original rows (count and
// checksum, tableChecksum) plus every row the writer reported written, each once.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import type { EmbeddedPostgres } from "../test/support/embedded-postgres.ts";
import { type LogRecord, runCli } from "../test/support/jobs.ts";
import {
  createLegacyTable,
  type LegacyTable,
  type Load,
  legacyTable,
  percentile,
  policyFor,
  startLoad,
  tableChecksum,
  type WriterStats,
} from "../test/support/legacy-tables.ts";
import {
  type BenchResult,
  closeClient,
  createMigratedDatabase,
  markdownTable,
  max,
  ms,
  nowMs,
  openClient,
  ratio,
  runAloneIfMain,
  serverSettings,
  sleep,
  withServer,
} from "./support.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS = join(ROOT, "bench", "results", "convert.md");
const ROWS = Number(process.env.CONVERT_BENCH_ROWS ?? 5_000_000);
const RATE = 600; // rows/s, as in the issue and the acceptance tests
const SETTLE_MS = 2_000; // load before and after the conversion
const SCHEMA = "edgewatch";
const DROP_UNIQUE = "telemetry_points_device_message_key";
const MONITOR_PERIOD_MS = 100;
const LABEL = "convert";

// ---------------------------------------------------------------------------------------------
// Lock monitor: the writer's longest lock wait and who blocked it

interface LockWait {
  waitMs: number;
  mode: string;
  relation: string;
  blockedBy: string;
}

function startLockMonitor(client: pg.Client) {
  let stop = false;
  let worst: LockWait | null = null;
  const loop = (async () => {
    const t0 = nowMs();
    for (let i = 0; !stop; i++) {
      try {
        const r = await client.query<LockWait>(`
          SELECT (extract(epoch FROM clock_timestamp() - l.waitstart) * 1000)::float8 AS "waitMs",
                 l.mode, coalesce(l.relation::regclass::text, l.locktype) AS relation,
                 coalesce((SELECT string_agg(coalesce(nullif(b.application_name, ''), b.backend_type) || ': '
                                             || left(regexp_replace(b.query, '\\s+', ' ', 'g'), 100), '; ')
                             FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))), '') AS "blockedBy"
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE NOT l.granted AND a.application_name = 'test-writer'`);
        for (const w of r.rows) if (w.waitMs !== null && (!worst || w.waitMs > worst.waitMs)) worst = w;
      } catch {
        // a sample lost to a catalog change in flight: the next one will do
      }
      await sleep(t0 + (i + 1) * MONITOR_PERIOD_MS - nowMs());
    }
  })();
  return {
    async stop(): Promise<LockWait | null> {
      stop = true;
      await loop;
      return worst;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Outcome {
  name: string;
  /** The conversion itself: CLI start to exit, or BEGIN to COMMIT. */
  wallMs: number;
  ok: boolean;
  writer: WriterStats;
  reader: { queries: number; errors: string[]; worstMs: number };
  worstLockWait: LockWait | null;
  /** convert only: the swap transaction (log event convert_swap) and each step's duration. */
  swap?: { durationMs: number; attempts: number };
  steps: { step: string; durationMs: number; attempts: number }[];
  check: Check;
  notes: string[];
}

interface Check {
  relkind: string;
  rows: number;
  expected: number;
  oldRowsUnchanged: boolean;
  writtenFound: number;
  distinctKeys: number;
  partitions: number;
}

/** Creates `name` as a copy of the prepared template database and returns its URL. */
async function cloneDatabase(server: EmbeddedPostgres, template: string, name: string): Promise<string> {
  const admin = await openClient(server.url(), "bench-admin");
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    // FILE_COPY (15+): copies the files after a checkpoint instead of WAL-logging every block.
    const strategy = server.major >= 15 ? " STRATEGY = FILE_COPY" : "";
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}${strategy}`);
  } finally {
    await closeClient(admin);
  }
  return server.url(name);
}

async function dropDatabase(server: EmbeddedPostgres, name: string): Promise<void> {
  const admin = await openClient(server.url(), "bench-admin");
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await closeClient(admin);
  }
}

/** Runs `convert` between SETTLE_MS of load before and after, with the lock monitor. */
async function underLoad(
  url: string,
  t: LegacyTable,
  convert: () => Promise<{ ok: boolean; notes?: string[]; lines?: LogRecord[] }>,
) {
  let loadStats!: Awaited<ReturnType<Load["stop"]>> & { worstLockWait: LockWait | null };
  const monitorClient = await openClient(url, "bench-monitor");
  const monitor = startLockMonitor(monitorClient);
  const load = await startLoad(url, t, RATE);
  let result: Awaited<ReturnType<typeof convert>> = { ok: false, notes: ["did not run"] };
  let wallMs = Number.NaN;
  try {
    await sleep(SETTLE_MS);
    const t0 = nowMs();
    result = await convert();
    wallMs = nowMs() - t0;
    await sleep(SETTLE_MS);
  } finally {
    // Stopped whatever happens: the writer and reader would otherwise keep the process alive.
    const stats = await load.stop();
    const worstLockWait = await monitor.stop();
    await closeClient(monitorClient);
    loadStats = { ...stats, worstLockWait };
  }
  return { ...result, wallMs, ...loadStats };
}

async function runConvertScenario(url: string, t: LegacyTable) {
  const env = {
    DATABASE_URL: url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("edgewatch", t.schema)] }),
  };
  const args = ["migrate", "convert", "--table", t.qualified, "--drop-unique", DROP_UNIQUE];
  args.push("--progress-every-s", "10");
  const out = await underLoad(url, t, async () => {
    const run = await runCli(args, env);
    const notes: string[] = [];
    if (run.code !== 0) {
      notes.push(`convert exited with ${run.code}`);
      for (const l of run.lines.filter((x) => ["ERROR", "CRITICAL", "ALERT"].includes(x.severity)))
        notes.push(`convert ${l.severity}: ${l.message}`);
      if (run.stderr.trim()) notes.push(`convert stderr: ${run.stderr.trim().slice(0, 2000)}`);
    }
    const warnings = new Set(
      run.lines
        .filter((x) => x.severity === "WARNING")
        .map((l) => String(l.message).replace(/^warning: /, "")),
    );
    for (const w of warnings) notes.push(`convert warning: ${w}`);
    return { ok: run.code === 0, notes, lines: run.lines };
  });
  const lines = out.lines ?? [];
  const swapLine = lines.find((l) => l.event === "convert_swap");
  const steps = lines
    .filter((l) => String(l.message).startsWith("done: ") && typeof l.durationMs === "number")
    .map((l) => ({
      step: String(l.step),
      durationMs: Number(l.durationMs),
      attempts: Number(l.attempts ?? 1),
    }));
  return {
    ...out,
    swap: swapLine
      ? { durationMs: Number(swapLine.durationMs), attempts: Number(swapLine.attempts) }
      : undefined,
    steps,
  };
}

/** Monthly bounds (UTC) from the month of `min` to `premake` months after the month of `now`. */
function monthlyBounds(min: Date, now: Date, premake: number): { from: Date; to: Date }[] {
  const bounds: { from: Date; to: Date }[] = [];
  let from = new Date(Date.UTC(min.getUTCFullYear(), min.getUTCMonth(), 1));
  const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + premake + 1, 1));
  while (from < end) {
    const to = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1));
    bounds.push({ from, to });
    from = to;
  }
  return bounds;
}

async function runNaiveScenario(url: string, t: LegacyTable) {
  const c = await openClient(url, "bench-naive", { statement_timeout: "0" });
  try {
    const range = await c.query<{ min: Date }>(`SELECT min(${t.timeColumn}) AS min FROM ${t.qualified}`);
    const bounds = monthlyBounds(range.rows[0]!.min, new Date(), 3);
    const s = t.schema;
    const cols = t.columns.join(", ");
    const month = (d: Date) => `${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
    const statements = [
      `LOCK TABLE ${t.qualified} IN ACCESS EXCLUSIVE MODE`,
      `CREATE TABLE ${s}.telemetry_points_new (LIKE ${t.qualified} INCLUDING DEFAULTS, ingest_xid xid8 DEFAULT pg_current_xact_id()) PARTITION BY RANGE (${t.timeColumn})`,
      ...bounds.map(
        (b) =>
          `CREATE TABLE ${s}.telemetry_points_p${month(b.from)} PARTITION OF ${s}.telemetry_points_new FOR VALUES FROM ('${b.from.toISOString()}') TO ('${b.to.toISOString()}')`,
      ),
      `CREATE TABLE ${s}.telemetry_points_default PARTITION OF ${s}.telemetry_points_new DEFAULT`,
      `INSERT INTO ${s}.telemetry_points_new (${cols}, ingest_xid) SELECT ${cols}, NULL FROM ${t.qualified}`,
      // What the converted table has (PK extended by the time column, the FK, the plain indexes, the
      // rollup index), built after the copy: faster than maintaining them row by row.
      `ALTER TABLE ${s}.telemetry_points_new ADD PRIMARY KEY (id, ${t.timeColumn})`,
      `ALTER TABLE ${s}.telemetry_points_new ADD FOREIGN KEY (device_id) REFERENCES ${s}.devices (id)`,
      `CREATE INDEX ON ${s}.telemetry_points_new (device_id, ${t.timeColumn})`,
      `CREATE INDEX ON ${s}.telemetry_points_new (${t.timeColumn})`,
      `CREATE INDEX ON ${s}.telemetry_points_new (ingest_xid, ${t.timeColumn})`,
      `ALTER TABLE ${t.qualified} RENAME TO telemetry_points_old`,
      `ALTER TABLE ${s}.telemetry_points_new RENAME TO telemetry_points`,
    ];
    const steps: { step: string; durationMs: number; attempts: number }[] = [];
    const out = await underLoad(url, t, async () => {
      await c.query("BEGIN");
      try {
        for (const sql of statements) {
          const t0 = nowMs();
          await c.query(sql);
          const step =
            sql.startsWith("CREATE TABLE") && sql.includes("PARTITION OF") ? "create partitions" : sql;
          const last = steps.at(-1);
          if (last && last.step === step) last.durationMs += nowMs() - t0;
          else steps.push({ step, durationMs: nowMs() - t0, attempts: 1 });
        }
        const t0 = nowMs();
        await c.query("COMMIT");
        steps.push({ step: "COMMIT", durationMs: nowMs() - t0, attempts: 1 });
        return { ok: true };
      } catch (error) {
        await c.query("ROLLBACK").catch(() => {});
        return { ok: false, notes: [`copy in one transaction failed: ${(error as Error).message}`] };
      }
    });
    return {
      ...out,
      steps: steps.map((x) => ({ ...x, step: x.step.length > 90 ? `${x.step.slice(0, 87)}...` : x.step })),
      notes: [...(out.notes ?? []), `${bounds.length} monthly partitions + DEFAULT`],
    };
  } finally {
    await closeClient(c);
  }
}

/** Every original row once and unchanged, every written row once, nothing else. */
async function checkTable(
  url: string,
  t: LegacyTable,
  before: { rows: number; checksum: string },
  writer: WriterStats,
): Promise<Check> {
  const c = await openClient(url, "bench-check", { statement_timeout: "0" });
  try {
    const keys = writer.written.map((w) => w.key);
    await c.query("CREATE TABLE public.bench_written_keys (key text PRIMARY KEY)");
    await c.query("INSERT INTO public.bench_written_keys SELECT unnest($1::text[])", [keys]);
    await c.query("ANALYZE public.bench_written_keys");
    const after = await tableChecksum(c, t);
    const old = await tableChecksum(
      c,
      t,
      `NOT EXISTS (SELECT 1 FROM public.bench_written_keys w WHERE w.key = ${t.keyColumn}::text)`,
    );
    const r = await c.query(
      `SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)) AS relkind,
              (SELECT count(*)::int FROM pg_inherits WHERE inhparent = to_regclass($1)) AS partitions,
              (SELECT count(*)::int FROM ${t.qualified} x JOIN public.bench_written_keys w ON w.key = x.${t.keyColumn}::text) AS found,
              (SELECT count(DISTINCT ${t.keyColumn})::int FROM ${t.qualified}) AS distinct_keys`,
      [t.qualified],
    );
    const row = r.rows[0];
    return {
      relkind: row.relkind,
      rows: after.rows,
      expected: before.rows + keys.length,
      oldRowsUnchanged: old.rows === before.rows && old.checksum === before.checksum,
      writtenFound: row.found,
      distinctKeys: row.distinct_keys,
      partitions: row.partitions,
    };
  } finally {
    await closeClient(c);
  }
}

function checkOk(c: Check, written: number): boolean {
  return (
    c.relkind === "p" &&
    c.rows === c.expected &&
    c.oldRowsUnchanged &&
    c.writtenFound === written &&
    c.distinctKeys === c.rows
  );
}

// ---------------------------------------------------------------------------------------------
// The benchmark

export async function runConvertBench(): Promise<BenchResult> {
  // The CLI is started as `node --import tsx jobs/cli.ts` (test/support/jobs.ts), relative to the root.
  process.chdir(ROOT);
  const started = Date.now();
  return await withServer(LABEL, async (server) => {
    const t = legacyTable("edgewatch", SCHEMA);
    const template = "bench_convert_src";
    const srcUrl = await createMigratedDatabase(server, template);
    const setup = await openClient(srcUrl, "bench-setup", {
      maintenance_work_mem: "256MB",
      statement_timeout: "0",
    });
    let before: { rows: number; checksum: string };
    try {
      const t0 = nowMs();
      await createLegacyTable(setup, t, ROWS);
      await setup.query(`VACUUM ANALYZE ${t.qualified}`);
      before = await tableChecksum(setup, t);
      const size = await setup.query(
        `SELECT pg_size_pretty(pg_table_size($1::regclass)) AS t, pg_size_pretty(pg_indexes_size($1::regclass)) AS i`,
        [t.qualified],
      );
      console.log(
        `[${LABEL}] ${t.qualified}: ${before.rows} rows, table ${size.rows[0].t}, indexes ${size.rows[0].i} (${ms(nowMs() - t0, 0)})`,
      );
    } finally {
      await closeClient(setup);
    }
    if (before.rows !== ROWS) throw new Error(`the legacy table has ${before.rows} rows, not ${ROWS}`);

    const outcomes: Outcome[] = [];
    for (const scenario of [
      { name: "convert", db: "bench_convert_ours", run: runConvertScenario },
      { name: "copy in one transaction", db: "bench_convert_naive", run: runNaiveScenario },
    ]) {
      const t0 = nowMs();
      const url = await cloneDatabase(server, template, scenario.db);
      console.log(`[${LABEL}] ${scenario.name}: database ${scenario.db} cloned (${ms(nowMs() - t0, 0)})`);
      const out = await scenario.run(url, t);
      console.log(
        `[${LABEL}] ${scenario.name}: ${out.ok ? "done" : "FAILED"} in ${ms(out.wallMs, 0)}, worst insert ${ms(max(out.writer.latenciesMs))}, ${out.writer.errors.length} insert errors`,
      );
      const check = await checkTable(url, t, before, out.writer);
      outcomes.push({
        name: scenario.name,
        wallMs: out.wallMs,
        ok: out.ok,
        writer: out.writer,
        reader: out.reader,
        worstLockWait: out.worstLockWait,
        swap: "swap" in out ? out.swap : undefined,
        steps: out.steps,
        check,
        notes: out.notes ?? [],
      });
      await dropDatabase(server, scenario.db);
    }
    const settings = await serverSettings(server);
    return buildReport(outcomes, { major: server.major, settings, totalS: (Date.now() - started) / 1000 });
  });
}

function commandLine(): string {
  const env = ["CONVERT_BENCH_ROWS", "PG_MAJOR"]
    .filter((k) => process.env[k])
    .map((k) => `${k}=${process.env[k]} `)
    .join("");
  const cmd =
    process.env.npm_lifecycle_event === "bench:convert"
      ? "npm run bench:convert"
      : "npx tsx bench/convert.ts";
  return `${env}${cmd}`;
}

/**
 * Each insert's completion measured from when the writer's schedule (startLoad: insert i not before
 * startedAt + i / RATE s) wanted to send it, reconstructed from the latencies in order: insert i is
 * sent at max(its due time, the previous insert's completion). A stall of one statement delays every
 * insert queued behind it; the writer's own latencies count it once (coordinated omission), this
 * counts it for each. Timer slop is ignored, so it slightly understates.
 */
function behindSchedule(w: WriterStats): number[] {
  const period = 1000 / RATE;
  let done = w.startedAt;
  return w.latenciesMs.map((latency, i) => {
    const due = w.startedAt + i * period;
    done = Math.max(due, done) + latency;
    return done - due;
  });
}

/** ratio() from support.ts, with enough digits (and the inverse) when convert is hundreds of times lower. */
function ratioText(value: number, base: number): string {
  const r = value / base;
  if (!Number.isFinite(r) || base <= 0 || r >= 0.1) return ratio(value, base);
  return `${r.toPrecision(2)}x (1/${Math.round(base / value)})`;
}

function buildReport(
  outcomes: Outcome[],
  p: { major: number; settings: string; totalS: number },
): BenchResult {
  const [ours, naive] = outcomes as [Outcome, Outcome];
  const fig = (o: Outcome) => {
    const l = o.writer.latenciesMs;
    const seconds = (o.writer.stoppedAt - o.writer.startedAt) / 1000;
    const late = behindSchedule(o.writer);
    return {
      worst: max(l),
      p99: percentile(l, 99),
      p50: percentile(l, 50),
      lateWorst: max(late),
      lateP99: percentile(late, 99),
      written: o.writer.written.length,
      rate: o.writer.written.length / seconds,
      seconds,
      backlog: Math.max(0, Math.floor(seconds * RATE) - l.length),
    };
  };
  const a = fig(ours);
  const b = fig(naive);
  const s = (x: number) => `${(x / 1000).toFixed(1)} s`;
  const lockWait = (o: Outcome) =>
    o.worstLockWait ? `${ms(o.worstLockWait.waitMs, 0)} (${o.worstLockWait.mode})` : "none seen";
  const checkText = (o: Outcome) =>
    `${checkOk(o.check, o.writer.written.length) ? "ok" : "MISMATCH"}: ${o.check.rows} = ${ROWS} + ${o.writer.written.length}` +
    (o.check.rows === o.check.expected ? "" : ` (expected ${o.check.expected})`);

  const rows = [
    ["worst insert latency", ms(a.worst), ms(b.worst), ratioText(a.worst, b.worst)],
    ["p99 insert latency", ms(a.p99), ms(b.p99), ratioText(a.p99, b.p99)],
    ["p50 insert latency", ms(a.p50), ms(b.p50), ratioText(a.p50, b.p50)],
    [
      "worst insert, from its scheduled time",
      ms(a.lateWorst),
      ms(b.lateWorst),
      ratioText(a.lateWorst, b.lateWorst),
    ],
    ["p99 insert, from its scheduled time", ms(a.lateP99), ms(b.lateP99), ratioText(a.lateP99, b.lateP99)],
    ["failed inserts", String(ours.writer.errors.length), String(naive.writer.errors.length), ""],
    ["rows written", String(a.written), String(b.written), ""],
    ["writer rows/s (whole window)", a.rate.toFixed(0), b.rate.toFixed(0), ""],
    ["inserts still due at stop (backlog)", String(a.backlog), String(b.backlog), ""],
    ["load window", s(a.seconds * 1000), s(b.seconds * 1000), ""],
    [
      "reader worst latency",
      ms(ours.reader.worstMs),
      ms(naive.reader.worstMs),
      ratioText(ours.reader.worstMs, naive.reader.worstMs),
    ],
    [
      "reader queries / errors",
      `${ours.reader.queries} / ${ours.reader.errors.length}`,
      `${naive.reader.queries} / ${naive.reader.errors.length}`,
      "",
    ],
    ["writer's longest lock wait (sampled)", lockWait(ours), lockWait(naive), ""],
    [
      "total wall time of the conversion",
      s(ours.wallMs),
      s(naive.wallMs),
      ratioText(ours.wallMs, naive.wallMs),
    ],
    [
      "writes blocked: swap transaction / whole copy",
      ours.swap ? `${ms(ours.swap.durationMs, 0)} (${ours.swap.attempts} attempt(s))` : "n/a",
      s(naive.wallMs),
      ours.swap ? ratioText(ours.swap.durationMs, naive.wallMs) : "n/a",
    ],
    ["exit / outcome", ours.ok ? "0 (ok)" : "FAILED", naive.ok ? "committed" : "FAILED", ""],
    ["rows afterwards (count check)", checkText(ours), checkText(naive), ""],
    [
      "original rows unchanged (checksum), keys distinct",
      `${ours.check.oldRowsUnchanged ? "yes" : "NO"}, ${ours.check.distinctKeys === ours.check.rows ? "yes" : "NO"}`,
      `${naive.check.oldRowsUnchanged ? "yes" : "NO"}, ${naive.check.distinctKeys === naive.check.rows ? "yes" : "NO"}`,
      "",
    ],
    ["partitions afterwards", String(ours.check.partitions), String(naive.check.partitions), ""],
  ];

  const problems: string[] = [];
  for (const o of outcomes) {
    if (!o.ok) problems.push(`${o.name}: the conversion failed (${o.notes.join("; ")})`);
    if (o.writer.errors.length > 0) {
      const distinct = [...new Set(o.writer.errors)];
      problems.push(
        `${o.name}: ${o.writer.errors.length} failed insert(s): ${distinct.slice(0, 3).join(" | ")}`,
      );
    }
    if (o.reader.errors.length > 0)
      problems.push(
        `${o.name}: ${o.reader.errors.length} failed reader queries: ${[...new Set(o.reader.errors)].slice(0, 3).join(" | ")}`,
      );
    if (!checkOk(o.check, o.writer.written.length))
      problems.push(`${o.name}: row check failed: ${JSON.stringify(o.check)}`);
  }
  const target = a.worst < 500 && ours.writer.errors.length === 0;

  const stepTable = (o: Outcome) =>
    markdownTable(
      ["step", "duration", "attempts"],
      o.steps.map((x) => [x.step, ms(x.durationMs, 0), String(x.attempts)]),
    );
  const blocker = (o: Outcome) =>
    o.worstLockWait
      ? `- ${o.name}: ${ms(o.worstLockWait.waitMs, 0)} waiting for ${o.worstLockWait.mode} on ${o.worstLockWait.relation}, blocked by ${o.worstLockWait.blockedBy || "?"}`
      : `- ${o.name}: no lock wait of the writer seen (sampled every ${MONITOR_PERIOD_MS} ms)`;

  const report = [
    "## migrate convert vs. copy in one transaction",
    "",
    `Measured on ${new Date().toISOString().slice(0, 10)} by \`${commandLine()}\`: Node ${process.version}, ` +
      `${cpus().length} cores (${cpus()[0]?.model.trim() ?? "unknown"}), embedded PostgreSQL ${p.major} on the same machine (${p.settings}); whole run ${p.totalS.toFixed(0)} s.`,
    "",
    `Table: EdgeWatch's legacy \`${SCHEMA}.telemetry_points\` (createLegacyTable, ${ROWS.toLocaleString("en-US")} rows over 365 days; ` +
      "varchar(36) uuid key, FK to devices, unique (device_id, message_id), indexes on (device_id, ts) and (ts)), vacuumed; " +
      "each scenario in its own copy of the same database. " +
      `Load: startLoad, one writer at ${RATE} single-row INSERTs/s (half dated now, half up to 300 days back) and one reader (one device's last day), ` +
      `from ${SETTLE_MS / 1000} s before the conversion to ${SETTLE_MS / 1000} s after it; latencies over that whole window.`,
    "",
    `Target (issue): worst insert latency under 500 ms, no failed insert: **${target ? "met" : "NOT met"}** ` +
      `(worst ${ms(a.worst)}, ${ours.writer.errors.length} failed).`,
    "",
    markdownTable(["measure", "convert", "copy in one transaction", "ratio (convert / copy)"], rows),
    "",
    `- **convert**: \`telemetry-jobs migrate convert --table ${SCHEMA}.telemetry_points --drop-unique ${DROP_UNIQUE} --progress-every-s 10 --json\` ` +
      "(child process, `node --import tsx jobs/cli.ts`; default --lock-timeout-ms 200), policy: monthly, premake 3, retention 12 months, rollup {} " +
      "(so prepare also adds ingest_xid and builds its index). Wall time: process start to exit, all phases (preflight, prepare, swap, verify); " +
      "the swap is the `convert_swap` log event's durationMs.",
    "- **copy in one transaction**: BEGIN; `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`; the partitioned parent (LIKE ... INCLUDING DEFAULTS, plus ingest_xid) " +
      "with monthly partitions covering every row through 3 months ahead, plus DEFAULT; `INSERT INTO new SELECT ... FROM old`; then the primary key (id, ts), " +
      "the foreign key and the three indexes the converted table has (after the copy: the fastest order); rename old to telemetry_points_old and new to " +
      "telemetry_points; COMMIT. Wall time: BEGIN to COMMIT, i.e. how long every insert and read is blocked. The writer's INSERTs queue on the lock and, " +
      "after the commit, resolve the name again and land in the new table.",
    "- Ratios are convert / copy: below 1x means convert is better for latencies; for wall time, convert does more work (validation scan and index builds " +
      "without blocking anyone) and may take longer.",
    "- The writer is one session sending one INSERT at a time on a fixed schedule: a stall shows up as one slow INSERT (worst), while p99 of the " +
      "statement latencies barely moves, because the inserts that should have been sent meanwhile are not sent at all (coordinated omission). " +
      'The "from its scheduled time" rows count each insert from when the schedule wanted to send it (reconstructed from the latencies in order), ' +
      "which is what a steady stream of devices would see. After a stall the writer sends its backlog back to back; the backlog row is what was still " +
      "unsent when the load stopped.",
    "- The server runs with fsync, synchronous_commit and full_page_writes on, as in production (above). The baseline builds its keys and indexes " +
      "after the copy rather than maintaining them row by row, which favours it, so its figures are a lower bound of the stall.",
    "",
    "Writer's longest lock wait, sampled from pg_locks every 100 ms:",
    "",
    ...outcomes.map(blocker),
    "",
    "### convert: steps (from its log)",
    "",
    stepTable(ours),
    "",
    "### copy in one transaction: statements (all inside the one transaction)",
    "",
    stepTable(naive),
    ...(outcomes.some((o) => o.notes.length > 0)
      ? ["", "Notes:", "", ...outcomes.flatMap((o) => o.notes.map((n) => `- ${o.name}: ${n}`))]
      : []),
    ...(problems.length > 0 ? ["", "Problems:", "", ...problems.map((x) => `- ${x}`)] : []),
  ].join("\n");

  return {
    name: "convert",
    report,
    summary: [
      ["convert", "worst insert latency (convert vs copy)", ms(a.worst), ratioText(a.worst, b.worst)],
      ["convert", "p99 insert latency (convert vs copy)", ms(a.p99), ratioText(a.p99, b.p99)],
      ["convert", "wall time (convert vs copy)", s(ours.wallMs), ratioText(ours.wallMs, naive.wallMs)],
      ["convert", "failed inserts (convert)", String(ours.writer.errors.length), ""],
    ],
    problems,
  };
}

runAloneIfMain(import.meta.url, async () => {
  const result = await runConvertBench();
  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(
    RESULTS,
    [
      "# Benchmark: migrate convert under load",
      "",
      "Written by `npm run bench:convert` (bench/convert.ts); not part of `npm run bench`. See bench/README.md.",
      "",
      result.report,
      "",
    ].join("\n"),
  );
  console.log(`[${LABEL}] written to ${RESULTS}`);
  return result;
});
