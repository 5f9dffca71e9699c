// Cold-tier export (not part of `npm run bench`): one monthly partition of the starter
// telemetry_points shape, exported to Parquet and verified as retention does it (every file read
// back and hashed, compared with the manifest, whose count and checksum PostgreSQL computed in the
// export's snapshot), against the floor of the same partition dumped by PostgreSQL itself:
// `COPY (SELECT * FROM ONLY child) TO PROGRAM 'gzip > file' (FORMAT csv)`. Figures: wall time,
// rows/s, CPU time (see cpuSeconds), the export process's peak RSS (the export runs in a child
// process of its own, so the data load does not count), and bytes on disk (Parquet, gzip CSV, the
// partition in PostgreSQL). Reported beside them, not in the ratio: the check mode "export" makes
// after the detach and before the drop (the table's count and checksum in a snapshot of its own).
//   npx tsx bench/cold-export.ts           (COLD_BENCH_ROWS=1000000 by default; a list such as
//                                           COLD_BENCH_ROWS=250000,1000000 compares peak RSS)
// The server (withServer's) has fsync on, as in production; the export reads only, and fsyncs its
// own files.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { exportPartition, type PartitionToExport } from "../shared/cold/export.ts";
import { verifyExport } from "../shared/cold/verify.ts";
import { changedSince } from "../shared/retention/export-finish.ts";
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
export const PARTITION: PartitionToExport = {
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
  /** The table's digest after the detach (retention's check before the drop). */
  checkMs: number;
  /** CPU seconds of the export process and of the server sessions it opened; null if unreadable. */
  cpuSeconds: number | null;
  /** The same for the check after the detach. */
  checkCpuSeconds: number | null;
  maxRssMiB: number;
  rows: string;
  maxBufferedRows: number;
}

/** Linux clock ticks per second, which /proc/<pid>/stat counts CPU time in. */
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/**
 * CPU seconds used so far by process `pid`, its waited-for children included (the floor's gzip is
 * a child of the server session that runs COPY TO PROGRAM); null where /proc cannot be read. The
 * bench server is local, so its sessions can be read this way. CPU time is reported beside wall
 * time because the benchmark machine is often shared: other load stretches wall times, not CPU.
 */
function cpuSeconds(pid: number): number | null {
  try {
    // Fields after the parenthesised command name: utime, stime, cutime, cstime are the 12th to 15th.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
    return ticks / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** Child mode: export and verify once, print the figures as JSON. */
async function runChild(): Promise<void> {
  // Idle sessions stay open until the end, so every session's CPU time can still be read then.
  const pool = new pg.Pool({ connectionString: process.env.COLD_BENCH_URL, max: 2, idleTimeoutMillis: 0 });
  const sessions = new Map<number, number | null>();
  pool.on("connect", (client) => {
    const pid = (client as unknown as { processID: number }).processID;
    sessions.set(pid, cpuSeconds(pid));
  });
  // CPU seconds so far of this process and of every server session it opened.
  const cpuNow = (): number | null => {
    const own = process.cpuUsage();
    let cpu: number | null = (own.user + own.system) / 1e6;
    for (const [pid, before] of sessions) {
      const now = cpuSeconds(pid);
      cpu = cpu === null || before === null || now === null ? null : cpu + now - before;
    }
    return cpu;
  };
  const minus = (a: number | null, b: number | null) => (a === null || b === null ? null : a - b);
  try {
    const cpu0 = cpuNow();
    const t0 = nowMs();
    const result = await exportPartition(pool, PARTITION, {
      root: process.env.COLD_BENCH_ROOT!,
      productVersion: "bench",
    });
    const t1 = nowMs();
    const verdict = await verifyExport(result.dir);
    const t2 = nowMs();
    if (!verdict.ok) throw new Error(`verification failed: ${JSON.stringify(verdict.problems)}`);
    const cpu1 = cpuNow();
    const changed = await changedSince(pool, PARTITION.partition, result.manifest);
    if (changed !== undefined) throw new Error(`the check after the detach found a change: ${changed}`);
    const t3 = nowMs();
    const figures: ChildFigures = {
      exportMs: t1 - t0,
      verifyMs: t2 - t1,
      checkMs: t3 - t2,
      cpuSeconds: minus(cpu1, cpu0),
      checkCpuSeconds: minus(cpuNow(), cpu1),
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      rows: result.manifest.rows,
      maxBufferedRows: result.maxBufferedRows,
    };
    console.log(JSON.stringify(figures));
  } finally {
    await pool.end();
  }
}

/** Makes the January 2026 partition afresh and fills it with `rows` rows of the starter shape. */
export async function loadPartition(client: pg.Client, rows: number): Promise<void> {
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
    const session = (client as unknown as { processID: number }).processID;
    const cpu0 = cpuSeconds(session);
    const t0 = nowMs();
    await client.query(
      `COPY (SELECT * FROM ONLY public.telemetry_points_2026_01) TO PROGRAM 'gzip > ${gz}' (FORMAT csv)`,
    );
    const floorMs = nowMs() - t0;
    const cpu1 = cpuSeconds(session);
    const floorCpu = cpu0 === null || cpu1 === null ? null : cpu1 - cpu0;
    const root = path.join(work, `cold-${rows}`);
    mkdirSync(root); // the export never creates its root
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
      floorCpu === null || f.cpuSeconds === null
        ? "n/a"
        : `${f.cpuSeconds.toFixed(1)} s / ${floorCpu.toFixed(1)} s = ${ratio(f.cpuSeconds, floorCpu)}`,
      `${ms(f.checkMs, 0)}${f.checkCpuSeconds === null ? "" : ` (CPU ${f.checkCpuSeconds.toFixed(1)} s)`}`,
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
          "CPU: export+verify / floor",
          "check after the detach (not in the ratios)",
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
