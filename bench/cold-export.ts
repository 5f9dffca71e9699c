// Cold-tier export (not part of `npm run bench`): one monthly partition of the starter
// telemetry_points shape, exported to Parquet and verified (read back, checksum, database
// comparison), against the floor of the same partition dumped by PostgreSQL itself:
// `COPY (SELECT * FROM ONLY child) TO PROGRAM 'gzip > file' (FORMAT csv)`. Figures: wall time,
// rows/s, the export process's peak RSS (the export runs in a child process of its own, so the
// data load does not count), and bytes on disk (Parquet, gzip CSV, the partition in PostgreSQL).
//   npx tsx bench/cold-export.ts           (COLD_BENCH_ROWS=1000000 by default; a list such as
//                                           COLD_BENCH_ROWS=250000,1000000 compares peak RSS)
// The server (withServer's) has fsync on, as in production; the export reads only, and fsyncs its
// own files.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { exportPartition, type PartitionToExport } from "../shared/cold/export.ts";
import { verifyExport } from "../shared/cold/verify.ts";
import {
  type BenchResult,
  createMigratedDatabase,
  markdownTable,
  ms,
  nowMs,
  ratio,
  runAloneIfMain,
  serverSettings,
  withServer,
} from "./support.ts";

const SIZES = (process.env.COLD_BENCH_ROWS ?? "1000000").split(",").map(Number);
const PARTITION: PartitionToExport = {
  table: { schema: "public", name: "telemetry_points" },
  partition: { schema: "public", name: "telemetry_points_2026_01" },
  keyColumn: "ts",
  timeColumn: "ts",
  from: new Date("2026-01-01T00:00:00Z"),
  to: new Date("2026-02-01T00:00:00Z"),
};

interface ChildFigures {
  exportMs: number;
  verifyMs: number;
  maxRssMiB: number;
  rows: string;
  maxBufferedRows: number;
}

/** Child mode: export and verify once, print the figures as JSON. */
async function runChild(): Promise<void> {
  const pool = new pg.Pool({ connectionString: process.env.COLD_BENCH_URL, max: 2 });
  try {
    const t0 = nowMs();
    const result = await exportPartition(pool, PARTITION, {
      root: process.env.COLD_BENCH_ROOT!,
      productVersion: "bench",
    });
    const t1 = nowMs();
    const verdict = await verifyExport(result.dir, pool);
    const t2 = nowMs();
    if (!verdict.ok) throw new Error(`verification failed: ${JSON.stringify(verdict.problems)}`);
    const figures: ChildFigures = {
      exportMs: t1 - t0,
      verifyMs: t2 - t1,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      rows: result.manifest.rows,
      maxBufferedRows: result.maxBufferedRows,
    };
    console.log(JSON.stringify(figures));
  } finally {
    await pool.end();
  }
}

async function loadPartition(client: pg.Client, rows: number): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS public.telemetry_points_2026_01`);
  await client.query(`CREATE TABLE public.telemetry_points_2026_01 PARTITION OF public.telemetry_points
                        FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-02-01 00:00:00+00')`);
  await client.query(`INSERT INTO public.devices (id) SELECT 'device-' || d FROM generate_series(1, 500) d
                      ON CONFLICT DO NOTHING`);
  await client.query(
    `INSERT INTO public.telemetry_points (device_id, message_id, ts, metrics)
     SELECT 'device-' || (1 + g % 500), 'msg-' || g,
            '2026-01-01'::timestamptz + (g::float8 / $1) * interval '31 days',
            jsonb_build_object('temp', round((20 + (g % 1000) / 37.0)::numeric, 2), 'hum', g % 97,
                               'volt', (g % 500) / 100.0, 'fw', '1.' || (g % 7) || '.0', 'ok', g % 13 <> 0)
       FROM generate_series(0, $1 - 1) g`,
    [rows],
  );
  await client.query("VACUUM ANALYZE public.telemetry_points_2026_01");
}

function directoryBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + statSync(path.join(dir, name)).size, 0);
}

async function measure(url: string, rows: number, work: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await loadPartition(client, rows);
    const pgBytes = Number(
      (await client.query("SELECT pg_total_relation_size('public.telemetry_points_2026_01') AS b")).rows[0].b,
    );
    // The server (possibly another OS account) writes the floor's file.
    const gz = path.join(work, `floor-${rows}.csv.gz`);
    const t0 = nowMs();
    await client.query(
      `COPY (SELECT * FROM ONLY public.telemetry_points_2026_01) TO PROGRAM 'gzip > ${gz}' (FORMAT csv)`,
    );
    const floorMs = nowMs() - t0;
    const root = path.join(work, `cold-${rows}`);
    const child = spawnSync(process.execPath, ["--import", "tsx", import.meta.filename, "--child"], {
      env: { ...process.env, COLD_BENCH_URL: url, COLD_BENCH_ROOT: root },
      encoding: "utf8",
    });
    if (child.status !== 0) throw new Error(`export child failed: ${child.stderr}`);
    const f = JSON.parse(child.stdout.trim().split("\n").at(-1)!) as ChildFigures;
    const parquetBytes = directoryBytes(findPartitionDir(root));
    const total = f.exportMs + f.verifyMs;
    return [
      rows.toLocaleString("en"),
      `${ms(floorMs, 0)} (${Math.round((rows / floorMs) * 1000).toLocaleString("en")}/s)`,
      `${ms(f.exportMs, 0)} (${Math.round((rows / f.exportMs) * 1000).toLocaleString("en")}/s)`,
      ms(f.verifyMs, 0),
      ratio(total, floorMs),
      `${f.maxRssMiB.toFixed(0)} MiB`,
      f.maxBufferedRows.toLocaleString("en"),
      `${(parquetBytes / 2 ** 20).toFixed(1)} / ${(statSync(gz).size / 2 ** 20).toFixed(1)} / ${(pgBytes / 2 ** 20).toFixed(1)} MiB`,
    ];
  } finally {
    await client.end();
  }
}

function findPartitionDir(root: string): string {
  const table = path.join(root, readdirSync(root)[0]!);
  return path.join(table, readdirSync(table)[0]!);
}

async function runColdExportBench(): Promise<BenchResult> {
  return withServer("cold-export", async (server) => {
    const url = await createMigratedDatabase(server, "bench_cold");
    const work = mkdtempSync(path.join(tmpdir(), "bench-cold-"));
    chmodSync(work, 0o777);
    try {
      const rows: string[][] = [];
      for (const size of SIZES) rows.push(await measure(url, size, work));
      const table = markdownTable(
        [
          "rows",
          "floor: COPY csv into gzip",
          "export",
          "verify",
          "export+verify vs floor",
          "peak RSS",
          "max rows buffered",
          "Parquet / csv.gz / PostgreSQL",
        ],
        rows,
      );
      const settings = `PostgreSQL ${server.major} (${await serverSettings(server)}).`;
      const report = `## Cold-tier export (bench/cold-export.ts)\n\n${settings}\n\n${table}\n`;
      return { name: "cold-export", report, summary: [], problems: [] };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}

if (process.argv.includes("--child")) {
  await runChild();
} else {
  runAloneIfMain(import.meta.url, runColdExportBench);
}
