// Benchmark 4: retention. Twelve monthly children holding 5M rows; half of them expire.
//   - the drop path (retention, mode drop) vs. plain DROP TABLE of the same six children;
//   - the row-delete fallback on the same rows in an unpartitioned table vs. one plain
//     DELETE ... WHERE ts < cutoff on an identical copy;
// wall time and WAL bytes (pg_current_wal_lsn() before and after) for each, the fallback's rows/s,
// and the worst insert latency of a concurrent writer during the fallback and during the DELETE.
// Server: withServer's, fsync, synchronous_commit and full_page_writes on as in production: each
// commit's WAL flush is part of what retention costs, and of what a concurrent writer waits for.
import type pg from "pg";
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
  withServer,
} from "./support.ts";

const ROWS = Number(process.env.RETENTION_BENCH_ROWS ?? 5_000_000);
const FROM = "2025-01-01T00:00:00Z";
const NOW = "2026-01-01T00:00:00Z"; // keep 6 months -> cutoff 2025-07-01: January .. June expire

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
        ["public.parted_ours", true],
        ["public.parted_plain", true],
        ["public.flat_ours", false],
        ["public.flat_plain", false],
      ] as const) {
        await load(c, table, partitioned);
        console.log(`[${label}] loaded ${table} (${ms(nowMs() - t0)})`);
      }
      await c.query("CHECKPOINT");

      // 1. Drop path vs plain DROP TABLE of the same six children.
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
      const ours = await walBytes(c, () =>
        runRetention(db, makeConfig(url, [policy("public.parted_ours", {})], { now: NOW })),
      );
      if (ours.value.exitCode !== 0) throw new Error("retention (drop path) failed");
      const plainDrop = await walBytes(c, async () => {
        for (let m = 0; m < 6; m++) await c.query(`DROP TABLE public.parted_plain_p${m}`);
      });
      // The same run again, with nothing left to remove: what every run costs before any removal
      // (audit rows of the run, advisory lock, catalog and holds, planning), to tell it apart.
      const noop = await walBytes(c, () =>
        runRetention(db, makeConfig(url, [policy("public.parted_ours", {})], { now: NOW })),
      );
      if (noop.value.exitCode !== 0) throw new Error("retention (no-op run) failed");

      // 2. Fallback on an unpartitioned table vs one plain DELETE, each with a concurrent writer.
      await c.query("CHECKPOINT");
      const fallback = await withWriter(url, "public.flat_ours", () =>
        walBytes(c, () =>
          runRetention(
            db,
            makeConfig(url, [policy("public.flat_ours", { partitioned: false })], { now: NOW }),
          ),
        ),
      );
      if (fallback.value.value.exitCode !== 0) throw new Error("retention (fallback) failed");
      const deleted = Number(
        (fallback.value.value.summary.health["public.flat_ours"] as { rowsDeleted: number }).rowsDeleted,
      );
      await c.query("CHECKPOINT");
      const plainDelete = await withWriter(url, "public.flat_plain", () =>
        walBytes(c, () => c.query(`DELETE FROM public.flat_plain WHERE ts < '2025-07-01T00:00:00Z'`)),
      );
      const left = await c.query(
        `SELECT (SELECT count(*) FROM public.flat_ours WHERE ts < '2025-07-01') AS ours,
                (SELECT count(*) FROM public.flat_plain WHERE ts < '2025-07-01') AS plain`,
      );

      const paths = await c.query(
        `SELECT table_name, string_agg(DISTINCT detail->>'path', '; ') AS path FROM telemetry_jobs.job_actions
          WHERE table_name IN ('public.parted_ours', 'public.flat_ours') GROUP BY table_name`,
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
        `${ROWS.toLocaleString("en-US")} rows over 12 monthly children (and the same rows in an unpartitioned table); keep 6 months expires January-June (about half). Loaded in ${ms(nowMs() - t0)}.`,
        "",
        `Server: PostgreSQL ${server.major} with the durable settings, as in production (${settings}).`,
        "",
        markdownTable(
          ["operation", "wall", "ratio (wall)", "WAL", "ratio (WAL)"],
          [
            row("plain DROP TABLE of the 6 expired children (baseline)", plainDrop, plainDrop),
            row("**retention, drop path** (the job's whole run, audited)", ours, plainDrop),
            row("retention run with nothing to remove, same table, afterwards", noop, plainDrop),
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
        `Drop path, as audited: ${pathOf("public.parted_ours")}. Less the run with nothing to remove: ${ms(ours.wallMs - noop.wallMs)}, ${ratio(ours.wallMs - noop.wallMs, plainDrop.wallMs)} the plain DROP TABLEs.`,
        `Fallback: ${deleted.toLocaleString("en-US")} rows deleted at ${Math.round(deleted / (fallback.value.wallMs / 1000)).toLocaleString("en-US")} rows/s (${pathOf("public.flat_ours")}; first batch 5,000 rows, no pause); rows before the cutoff left: ours ${left.rows[0].ours}, plain ${left.rows[0].plain}.`,
        `Concurrent writer's insert latency, worst: during the fallback ${worst(fallback.latencies)}, errors ${fallback.errors()}; during the plain DELETE ${worst(plainDelete.latencies)}, errors ${plainDelete.errors()}.`,
      ].join("\n");
      return {
        name: label,
        report,
        summary: [
          ["retention", "plain DROP TABLE x6", ms(plainDrop.wallMs), "1.00x"],
          ["retention", "drop path", ms(ours.wallMs), ratio(ours.wallMs, plainDrop.wallMs)],
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
          ["retention", "writer worst insert during fallback", ms(max(fallback.latencies)), ""],
        ],
        problems:
          fallback.errors() + plainDelete.errors() > 0 ? ["retention: concurrent inserts failed"] : [],
      };
    } finally {
      await closeClient(c);
      await db.destroy();
    }
  });
}

runAloneIfMain(import.meta.url, () => runRetentionBench());
