// Benchmark 4: retention. Twelve monthly children holding 5M rows; half of them expire.
//   - the drop path (retention, mode drop) vs. plain DROP TABLE of the same six children;
//   - the row-delete fallback on the same rows in an unpartitioned table vs. one plain
//     DELETE ... WHERE ts < cutoff on an identical copy;
// wall time and WAL bytes (pg_current_wal_lsn() before and after) for each, the fallback's rows/s,
// and the worst insert latency of a concurrent writer during the fallback, during the DELETE and
// with nothing else running.
// Server: withServer's, fsync, synchronous_commit and full_page_writes on as in production: each
// commit's WAL flush is part of what retention costs, and of what a concurrent writer waits for.
// Every timed operation starts right after a CHECKPOINT, on sessions that are already open (the
// cost of opening the run's own is a row of its own). The drop path is compared DROP_REPEATS times,
// each on a fresh pair of tables, the side measured first alternating (the first DDL after a
// checkpoint writes whole catalog pages to WAL); the ratio reported is the median of the pairs'.
import { type Kysely, sql } from "kysely";
import type pg from "pg";
import type { DB } from "../shared/db/schema.ts";
import { makeConfig, runRetention } from "../test/support/jobs.ts";
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

const ROWS = Number(process.env.RETENTION_BENCH_ROWS ?? 5_000_000);
const FROM = "2025-01-01T00:00:00Z";
const NOW = "2026-01-01T00:00:00Z"; // keep 6 months -> cutoff 2025-07-01: January .. June expire
const DROP_REPEATS = Number(process.env.RETENTION_BENCH_DROP_REPEATS ?? 3);

type Measured = { wallMs: number; wal: number };

const policy = (table: string, extra: Record<string, unknown>) => ({
  table,
  timeColumn: "ts",
  ...extra,
  retention: {
    keep: "6 months",
    maxDropsPerRun: 6,
    batchSize: 5000,
    batchPauseMs: 0,
    timeBudgetMs: 3_600_000,
  },
});

/** The pair whose ratio (ours / plain) is the median of all pairs': its figures are reported. */
function medianPair<P extends { ours: Measured; plainDrop: Measured }>(pairs: readonly P[]): P {
  const sorted = [...pairs].sort(
    (a, b) => a.ours.wallMs / a.plainDrop.wallMs - b.ours.wallMs / b.plainDrop.wallMs,
  );
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** One comparison of the drop path: ours and plain DROP TABLE on a fresh pair, `oursFirst` or not. */
async function comparePair(
  c: pg.Client,
  url: string,
  pair: number,
  oursFirst: boolean,
): Promise<{ ours: Measured; plainDrop: Measured; noop: Measured }> {
  const [oursTable, plainTable] = [`public.parted_ours_${pair}`, `public.parted_plain_${pair}`];
  for (const table of [oursTable, plainTable]) await load(c, table, true);

  // Both sides start on sessions opened after the load, not timed, that know nothing of the tables:
  // what a job's fresh container and an operator's new psql both have. The loading session `c` has
  // every catalog entry about the tables cached (it made them), a head start of 10-20 ms that no
  // real DROP gets.
  const measureOurs = () =>
    onNewSessions(c, url, (runDb) =>
      walBytes(c, () => runOK(runDb, makeConfig(url, [policy(oursTable, {})], { now: NOW }), oursTable)),
    );
  const measurePlain = () =>
    onNewClient(c, url, "bench-plain-drop", (operator) =>
      walBytes(c, async () => {
        for (let m = 0; m < 6; m++) await operator.query(`DROP TABLE ${plainTable}_p${m}`);
      }),
    );
  let ours: Measured;
  let plainDrop: Measured;
  if (oursFirst) {
    ours = await measureOurs();
    plainDrop = await measurePlain();
  } else {
    plainDrop = await measurePlain();
    ours = await measureOurs();
  }
  // The same run again, with nothing left to remove, on new sessions too: what every run costs
  // before any removal (checks, audit rows of the run, advisory lock, catalog and holds, planning,
  // each loading its catalog entries afresh), to tell it apart.
  const noop = await measureOurs();
  for (const table of [oursTable, plainTable]) await c.query(`DROP TABLE ${table}`);
  return { ours, plainDrop, noop };
}

/**
 * `timed` (which times itself, with walBytes) on a retention pool of its own, opened after the
 * load with its two sessions (lock and work) open, right after a CHECKPOINT. The pool never closes
 * an idle session: pg's default closes one after 10 s, which the CHECKPOINT after a large load can
 * take, and the run would then open it again inside its timed wall.
 */
async function onNewSessions<R>(c: pg.Client, url: string, timed: (db: Kysely<DB>) => Promise<R>) {
  const db = openKysely(url, "retention", 4, { idleTimeoutMillis: 0 });
  try {
    await Promise.all([sql`SELECT 1`.execute(db), sql`SELECT 1`.execute(db)]);
    await c.query("CHECKPOINT");
    return await timed(db);
  } finally {
    await db.destroy();
  }
}

/** `timed` on a client of its own opened after the load (an operator's psql), after a CHECKPOINT. */
async function onNewClient<R>(
  c: pg.Client,
  url: string,
  name: string,
  timed: (client: pg.Client) => Promise<R>,
) {
  const client = await openClient(url, name);
  try {
    await c.query("CHECKPOINT");
    return await timed(client);
  } finally {
    await closeClient(client);
  }
}

/** One retention run that must succeed; its result. */
async function runOK(db: Kysely<DB>, config: ReturnType<typeof makeConfig>, table: string) {
  const r = await runRetention(db, config);
  if (r.exitCode !== 0) throw new Error(`retention on ${table} failed`);
  return r;
}

async function walBytes<T>(c: pg.Client, work: () => Promise<T>) {
  const before = (await c.query("SELECT pg_current_wal_lsn() AS l")).rows[0].l;
  const t0 = nowMs();
  const value = await work();
  const wallMs = nowMs() - t0;
  const after = (await c.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::bigint AS b", [before]))
    .rows[0].b;
  return { wallMs, wal: Number(after), value };
}

/** Inserts one row at a time into `table` while `work` runs; returns insert latencies (ms). */
async function withWriter<T>(url: string, table: string, work: () => Promise<T>) {
  const writer = await openClient(url, "bench-writer");
  const latencies: number[] = [];
  let errors = 0;
  let stop = false;
  let id = 100_000_000;
  const loop = (async () => {
    while (!stop) {
      const t0 = nowMs();
      try {
        await writer.query(`INSERT INTO ${table} VALUES ($1, now(), 1, 1.0)`, [id++]);
        latencies.push(nowMs() - t0);
      } catch {
        errors++;
      }
      await new Promise((r) => setTimeout(r, 2)); // ~300-400 inserts/s
    }
  })();
  try {
    return { value: await work(), latencies, errors: () => errors };
  } finally {
    stop = true;
    await loop;
    await closeClient(writer);
  }
}

async function load(c: pg.Client, table: string, partitioned: boolean) {
  await c.query(
    `CREATE TABLE ${table} (id bigint NOT NULL, ts timestamptz NOT NULL, device int NOT NULL, value float8,
       PRIMARY KEY (id, ts)) ${partitioned ? "PARTITION BY RANGE (ts)" : ""}`,
  );
  if (partitioned)
    for (let m = 0; m < 12; m++) {
      await c.query(
        `CREATE TABLE ${table}_p${m} PARTITION OF ${table}
           FOR VALUES FROM ('${FROM}'::timestamptz + interval '${m} months') TO ('${FROM}'::timestamptz + interval '${m + 1} months')`,
      );
    }
  await c.query(`
    INSERT INTO ${table}
    SELECT g, '${FROM}'::timestamptz + ((g - 1)::float8 / ${ROWS}) * interval '365 days', g % 1000, random()
      FROM generate_series(1, ${ROWS}) g`);
  await c.query(`CREATE INDEX ON ${table} (ts)`);
  await c.query(`VACUUM ANALYZE ${table}`);
  // The unpartitioned pair is measured one after the other, and autovacuum, waking every minute,
  // would start on the first side's 2.5M dead rows inside the second side's window, or on a
  // batched delete's own dead rows midway: runs of the same code swung from 0.9x to 2.2x. Off on
  // both, each side is measured alone.
  if (!partitioned) await c.query(`ALTER TABLE ${table} SET (autovacuum_enabled = off)`);
}

export async function runRetentionBench(): Promise<BenchResult> {
  const label = "retention";
  return await withServer(label, async (server) => {
    const url = await createMigratedDatabase(server, "bench_retention");
    const db = openKysely(url, "retention");
    const c = await openClient(url, "bench-setup", { maintenance_work_mem: "256MB", statement_timeout: "0" });
    try {
      const t0 = nowMs();
      for (const [table, partitioned] of [
        ["public.flat_ours", false],
        ["public.flat_plain", false],
      ] as const) {
        await load(c, table, partitioned);
        console.log(`[${label}] loaded ${table} (${ms(nowMs() - t0)})`);
      }
      const flatLoadedMs = nowMs() - t0;
      await c.query("CHECKPOINT");

      // 1. Drop path vs plain DROP TABLE of the same six children, on fresh pairs of tables, each
      // side on sessions opened after the load and before it is timed (see comparePair). What
      // opening a run's two (its lock session and its work's) costs is reported on its own row,
      // measured here once.
      const connect = await walBytes(c, () =>
        Promise.all([sql`SELECT 1`.execute(db), sql`SELECT 1`.execute(db)]),
      );
      const pairs: Awaited<ReturnType<typeof comparePair>>[] = [];
      for (let i = 0; i < DROP_REPEATS; i++) {
        pairs.push(await comparePair(c, url, i, i % 2 === 0));
        const p = pairs.at(-1)!;
        console.log(
          `[${label}] drop pair ${i + 1}/${DROP_REPEATS} (${i % 2 === 0 ? "ours" : "plain"} first): ours ${ms(p.ours.wallMs)}, plain ${ms(p.plainDrop.wallMs)}, ${ratio(p.ours.wallMs, p.plainDrop.wallMs)}`,
        );
      }
      const mid = medianPair(pairs);
      const { ours, plainDrop, noop } = mid;

      // 2. Fallback on an unpartitioned table vs one plain DELETE, each with a concurrent writer,
      // each on sessions opened after the load like the drop pair's (the writer starts after the
      // CHECKPOINT, so that its latencies are the work's, not the checkpoint's).
      const fallback = await onNewSessions(c, url, (runDb) =>
        withWriter(url, "public.flat_ours", () =>
          walBytes(c, () =>
            runOK(
              runDb,
              makeConfig(url, [policy("public.flat_ours", { partitioned: false })], { now: NOW }),
              "public.flat_ours",
            ),
          ),
        ),
      );
      const deleted = Number(
        (fallback.value.value.summary.health["public.flat_ours"] as { rowsDeleted: number }).rowsDeleted,
      );
      const plainDelete = await onNewClient(c, url, "bench-plain-delete", (deleter) =>
        withWriter(url, "public.flat_plain", () =>
          walBytes(c, () => deleter.query(`DELETE FROM public.flat_plain WHERE ts < '2025-07-01T00:00:00Z'`)),
        ),
      );
      // The same writer with nothing else running, for as long as the DELETE took: what the
      // machine's own WAL flushes and scheduling make its worst insert.
      const alone = await onNewClient(c, url, "bench-idle", () =>
        withWriter(url, "public.flat_plain", () => sleep(plainDelete.value.wallMs)),
      );
      const left = await c.query(
        `SELECT (SELECT count(*) FROM public.flat_ours WHERE ts < '2025-07-01') AS ours,
                (SELECT count(*) FROM public.flat_plain WHERE ts < '2025-07-01') AS plain`,
      );

      const paths = await c.query(
        `SELECT table_name, string_agg(DISTINCT detail->>'path', '; ') AS path FROM telemetry_jobs.job_actions
          WHERE table_name IN ('public.parted_ours_0', 'public.flat_ours') GROUP BY table_name`,
      );
      const pathOf = (table: string) => paths.rows.find((r) => r.table_name === table)?.path ?? "n/a";
      const settings = await serverSettings(server, ["wal_sync_method", "shared_buffers"]);
      const row = (
        name: string,
        m: { wallMs: number; wal: number },
        base: { wallMs: number; wal: number },
      ) => [
        name,
        ms(m.wallMs),
        ratio(m.wallMs, base.wallMs),
        `${(m.wal / 1024 / 1024).toFixed(1)} MiB`,
        ratio(m.wal, base.wal),
      ];
      const worst = (l: number[]) =>
        `${ms(max(l))} (median ${ms(median(l))}, p99 ${ms(percentile(l, 99))}, ${l.length} inserts)`;
      const report = [
        "## 4. retention: drop path and row-delete fallback",
        "",
        `${ROWS.toLocaleString("en-US")} rows over 12 monthly children (per table of each drop pair; and the same rows in an unpartitioned table); keep 6 months expires January-June (about half). The unpartitioned pair loaded in ${ms(flatLoadedMs)}; each drop pair's two tables are loaded right before it is measured.`,
        "",
        `Server: PostgreSQL ${server.major} with the durable settings, as in production (${settings}). Every timed part runs on sessions opened after the load (not timed), which have nothing about the tables cached, as a job's or an operator's new session.`,
        "",
        markdownTable(
          ["operation", "wall", "ratio (wall)", "WAL", "ratio (WAL)"],
          [
            row("plain DROP TABLE of the 6 expired children (baseline)", plainDrop, plainDrop),
            row("**retention, drop path** (the job's whole run, audited)", ours, plainDrop),
            row(
              "retention run with nothing to remove, same table, afterwards, on new sessions",
              noop,
              plainDrop,
            ),
            row(
              "opening a run's two connections (measured once; before each run, not in its wall)",
              connect,
              plainDrop,
            ),
            row(
              "one plain DELETE ... WHERE ts < cutoff, unpartitioned (baseline)",
              plainDelete.value,
              plainDelete.value,
            ),
            row(
              "**retention, row-delete fallback** (the job's whole run), unpartitioned",
              fallback.value,
              plainDelete.value,
            ),
          ],
        ),
        "",
        `Drop path: ${DROP_REPEATS} pairs of fresh tables, the side measured first alternating; each pair, ours / plain: ${pairs.map((p, i) => `${i + 1}: ${ms(p.ours.wallMs)} / ${ms(p.plainDrop.wallMs)} = ${ratio(p.ours.wallMs, p.plainDrop.wallMs)}`).join("; ")}. The rows above are the median pair's.`,
        `Drop path, as audited: ${pathOf("public.parted_ours_0")}. Less the run with nothing to remove: ${ms(ours.wallMs - noop.wallMs)}, ${ratio(ours.wallMs - noop.wallMs, plainDrop.wallMs)} the plain DROP TABLEs.`,
        `Fallback: ${deleted.toLocaleString("en-US")} rows deleted at ${Math.round(deleted / (fallback.value.wallMs / 1000)).toLocaleString("en-US")} rows/s (${pathOf("public.flat_ours")}; first batch 5,000 rows, no pause; autovacuum off on both tables); rows before the cutoff left: ours ${left.rows[0].ours}, plain ${left.rows[0].plain}.`,
        `Concurrent writer's insert latency, worst: during the fallback ${worst(fallback.latencies)}, errors ${fallback.errors()}; during the plain DELETE ${worst(plainDelete.latencies)}, errors ${plainDelete.errors()}; with nothing else running (as long as the DELETE) ${worst(alone.latencies)}, errors ${alone.errors()}.`,
      ].join("\n");
      return {
        name: label,
        report,
        summary: [
          ["retention", "plain DROP TABLE x6", ms(plainDrop.wallMs), "1.00x"],
          ["retention", "drop path", ms(ours.wallMs), ratio(ours.wallMs, plainDrop.wallMs)],
          [
            "retention",
            "drop path with opening its connections",
            ms(ours.wallMs + connect.wallMs),
            ratio(ours.wallMs + connect.wallMs, plainDrop.wallMs),
          ],
          [
            "retention",
            "drop path less a run with nothing to remove",
            ms(ours.wallMs - noop.wallMs),
            ratio(ours.wallMs - noop.wallMs, plainDrop.wallMs),
          ],
          ["retention", "plain DELETE", ms(plainDelete.value.wallMs), "1.00x"],
          [
            "retention",
            "row-delete fallback",
            ms(fallback.value.wallMs),
            ratio(fallback.value.wallMs, plainDelete.value.wallMs),
          ],
          [
            "retention",
            "writer worst insert: fallback / plain DELETE / nothing else",
            `${ms(max(fallback.latencies))} / ${ms(max(plainDelete.latencies))} / ${ms(max(alone.latencies))}`,
            "",
          ],
        ],
        problems:
          fallback.errors() + plainDelete.errors() + alone.errors() > 0
            ? ["retention: concurrent inserts failed"]
            : [],
      };
    } finally {
      await closeClient(c);
      await db.destroy();
    }
  });
}

runAloneIfMain(import.meta.url, () => runRetentionBench());
