// npm run demo: the whole product on a throwaway PostgreSQL, in under two minutes.
//   1. start an embedded PostgreSQL (binaries from the npm registry), apply the migrations with the
//      starter telemetry schema (`migrate up --with-starter-schema`);
//   2. run partition-manager on the empty schema (current month + 3 ahead);
//   3. load a synthetic fleet: 50 devices, 14 months, ~1M rows, plus late rows and rows from a
//      device whose clock is years ahead; history lands in the DEFAULT partition;
//   4. run partition-manager again: its dry run refuses the large rescues (maxRescueRows); a run
//      with the bound raised for one run (--max-rescue-rows), as an operator would do it, rescues
//      the DEFAULT rows into monthly partitions;
//   5. status, and EXPLAIN of a last-7-days query for one device showing partition pruning;
//   6. rollups, retention, and the cold tier: an expired month exported to Parquet in a local
//      directory (the files and the manifest shown), dropped, and restored.
// --keep leaves the server running and prints its connection string.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { runCommand } from "../jobs/commands/index.ts";
import { createLogger } from "../shared/log/logger.ts";
import { migrateToLatest } from "../shared/migrate/migrator.ts";
import { readHourlySeries } from "../shared/rollups/read.ts";
import { startEmbeddedPostgres } from "../test/support/embedded-postgres.ts";

const { values } = parseArgs({
  options: {
    keep: { type: "boolean", default: false },
    devices: { type: "string", default: "50" },
    months: { type: "string", default: "14" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("Usage: npm run demo [-- --keep] [-- --devices 50 --months 14]");
  process.exit(0);
}
const devices = Number(values.devices);
const months = Number(values.months);
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const banner = (text: string) => console.log(`\n\x1b[1m== ${text} ==\x1b[0m (${elapsed()})`);

banner("starting an embedded PostgreSQL");
const server = await startEmbeddedPostgres();
const url = server.url();
console.log(`PostgreSQL ${server.major} on port ${server.port}`);
process.env.DATABASE_URL = url;
// The example policy, with a 12-month raw retention so that the demo's 14 months of data have
// something to expire.
const examplePolicy = JSON.parse(readFileSync(new URL("../examples/policy.json", import.meta.url), "utf8"));
for (const table of examplePolicy.tables)
  if (table.table === "public.telemetry_points") table.retention = { ...table.retention, keep: "12 months" };
process.env.TELEMETRY_JOBS_CONFIG_JSON = JSON.stringify(examplePolicy);
delete process.env.TELEMETRY_JOBS_CONFIG;

const pool = new pg.Pool({ connectionString: url, options: "-c TimeZone=UTC", max: 2 });
pool.on("error", () => {}); // idle clients are terminated when the server stops
const kysely = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
const controller = new AbortController();
const run = async (command: string, args: string[]) => {
  const log = createLogger({ job: command, format: "text" });
  const code = await runCommand(command, args, { signal: controller.signal, log });
  console.log(`-> exit code ${code}`);
  return code;
};

// The cold tier's root: in production a Cloud Storage bucket mounted into the retention job; here a
// local directory, the same code path.
const coldRoot = mkdtempSync(join(tmpdir(), "telemetry-cold-"));

/** Mode export one month later: the next expired month to Parquet, verified, dropped; then restored. */
async function coldTier(at: string) {
  const exporting = structuredClone(examplePolicy);
  for (const table of exporting.tables)
    if (table.table === "public.telemetry_points")
      table.retention = { ...table.retention, mode: "export", export: { to: coldRoot } };
  process.env.TELEMETRY_JOBS_CONFIG_JSON = JSON.stringify(exporting);
  banner(`cold tier: retention in mode export (--now ${at}), to ${coldRoot}`);
  await run("retention", ["--now", at, "--table", "public.telemetry_points"]);
  const manifests = listFiles(coldRoot).filter((f) => f.endsWith("_manifest.json"));
  for (const file of listFiles(coldRoot))
    console.log(`  ${relative(coldRoot, file)} (${statSync(file).size.toLocaleString("en")} bytes)`);
  const first = manifests.sort()[0];
  if (!first) throw new Error("the export wrote no manifest");
  const manifest = JSON.parse(readFileSync(first, "utf8"));
  console.log(
    `manifest: ${manifest.partition.relation.name}, ${Number(manifest.rows).toLocaleString("en")} rows, ${manifest.time.min.iso} .. ${manifest.time.max.iso}, checksum ${manifest.checksum.value} (${manifest.checksum.algorithm})`,
  );
  banner(`restore --table public.telemetry_points --from ${manifest.partition.from.iso}`);
  await run("restore", ["--table", "public.telemetry_points", "--from", manifest.partition.from.iso]);
  const back = await pool.query(
    `SELECT count(*)::int AS n FROM telemetry_points WHERE ts >= $1 AND ts < $2`,
    [manifest.partition.from.iso, manifest.partition.to.iso],
  );
  console.log(
    `rows of ${manifest.partition.relation.name} back in telemetry_points: ${back.rows[0].n.toLocaleString("en")} (the manifest says ${Number(manifest.rows).toLocaleString("en")})`,
  );
  process.env.TELEMETRY_JOBS_CONFIG_JSON = JSON.stringify(examplePolicy);
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)],
  );
}

try {
  banner("migrate up --with-starter-schema");
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }),
  });
  await migrateToLatest(db, { starterSchema: true });
  await db.destroy();
  console.log(
    "schema ready: devices, telemetry_points (partitioned, DEFAULT), telemetry_rollups_hourly, telemetry_jobs.*",
  );

  banner("partition-manager on the empty schema");
  await run("partition-manager", []);

  banner(`loading ${devices} devices x ${months} months of telemetry (one reading per device every 30 min)`);
  await pool.query(
    "INSERT INTO devices (id, name) SELECT 'dev-' || lpad(g::text, 3, '0'), 'sensor ' || g FROM generate_series(1, $1) g",
    [devices],
  );
  let loaded = 0;
  for (let d = 1; d <= devices; d++) {
    const r = await pool.query(
      `INSERT INTO telemetry_points (device_id, message_id, ts, metrics)
       SELECT $1, $1 || '-' || extract(epoch FROM t)::bigint, t,
              jsonb_build_object('temp_c', round((15 + 10 * sin(extract(epoch FROM t) / 86400) + random())::numeric, 2),
                                 'humidity', round((40 + 20 * random())::numeric, 1),
                                 'door_open', random() < 0.1, 'fw', '1.4.2')
         FROM generate_series(date_trunc('hour', now()) - make_interval(months => $2::int), now(), interval '30 minutes') t`,
      [`dev-${String(d).padStart(3, "0")}`, months],
    );
    loaded += r.rowCount ?? 0;
    if (d % 10 === 0)
      console.log(`  ${d}/${devices} devices, ${loaded.toLocaleString("en")} rows (${elapsed()})`);
  }
  // Late rows (arrive now, stamped days ago) and a device whose clock is three years ahead.
  await pool.query(`INSERT INTO telemetry_points (device_id, ts, metrics)
    SELECT 'dev-001', now() - g * interval '3 days', '{"temp_c": 19.5}' FROM generate_series(1, 20) g`);
  await pool.query(`INSERT INTO telemetry_points (device_id, ts, metrics)
    SELECT 'dev-002', now() + interval '3 years' + g * interval '1 hour', '{"temp_c": 99}' FROM generate_series(1, 5) g`);
  const inDefault = await pool.query("SELECT count(*)::int AS n FROM ONLY telemetry_points_default");
  console.log(
    `loaded ${(loaded + 25).toLocaleString("en")} rows; ${inDefault.rows[0].n.toLocaleString("en")} of them landed in the DEFAULT partition (no partition for their month yet)`,
  );
  await pool.query("ANALYZE telemetry_points");

  banner("partition-manager --dry-run: the plan");
  await run("partition-manager", ["--dry-run", "--table", "public.telemetry_points"]);

  // Each month holds ~75,000 rows, above the default maxRescueRows (50,000): a scheduled run refuses
  // to hold every reader and writer for such a move (CRIT, exit 2, as the dry run above says). An
  // operator does it deliberately, at a quiet time, with the bound raised for one run.
  banner("partition-manager --max-rescue-rows 100000: rescue DEFAULT rows into monthly partitions");
  await run("partition-manager", ["--table", "public.telemetry_points", "--max-rescue-rows", "100000"]);
  await pool.query("ANALYZE telemetry_points");

  banner("status");
  await run("status", []);

  banner("EXPLAIN: one device, last 7 days");
  // Constant bounds let the planner prune at plan time: only the partitions of the last 7 days appear.
  const until = new Date();
  const since = new Date(until.getTime() - 7 * 86_400_000);
  const plan = await pool.query(
    `EXPLAIN (COSTS OFF) SELECT date_trunc('hour', ts) AS hour, avg((metrics->>'temp_c')::float8)
       FROM telemetry_points
      WHERE device_id = 'dev-007' AND ts >= '${since.toISOString()}' AND ts < '${until.toISOString()}'
      GROUP BY 1 ORDER BY 1`,
  );
  for (const row of plan.rows) console.log(`  ${row["QUERY PLAN"]}`);
  const scanned = new Set(
    plan.rows.flatMap((r) =>
      [...String(r["QUERY PLAN"]).matchAll(/ on (telemetry_points_\w+)/g)].map((m) => m[1]),
    ),
  );
  const total = await pool.query(
    "SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'telemetry_points'::regclass",
  );
  console.log(
    `partitions scanned: ${[...scanned].join(", ")} (${scanned.size} of ${total.rows[0].n}; the others are pruned)`,
  );

  banner("rollup-hourly: the first run rolls up all history, in batches of whole hours");
  await run("rollup-hourly", []);

  // New data after the run: rows in the open hour, and a late row for a final hour.
  await pool.query(`INSERT INTO telemetry_points (device_id, ts, metrics) VALUES
    ('dev-007', now(), '{"temp_c": 30.5}'),
    ('dev-007', date_trunc('hour', now()) - interval '5 hours' + interval '10 minutes', '{"temp_c": -40}')`);
  const printSeries = async (title: string) => {
    const series = await readHourlySeries(kysely, {
      deviceId: "dev-007",
      metricKey: "temp_c",
      from: new Date(Date.now() - 24 * 3_600_000),
      to: new Date(Date.now() + 3_600_000),
    });
    console.log(title);
    console.log("  hour (UTC)         samples     avg      min      max  source");
    for (const p of series.slice(-8))
      console.log(
        `  ${p.bucketTs.toISOString().slice(0, 16)}  ${String(p.sampleCount).padStart(7)}  ${p.avg.toFixed(2).padStart(7)}  ${p.min.toFixed(2).padStart(7)}  ${p.max.toFixed(2).padStart(7)}  ${p.source}`,
      );
    console.log(`  (${series.length} hours in all; the last 8 shown)`);
  };
  banner("real-time read: dev-007 temp_c, last 24 hours (telemetry_hourly_series)");
  await printSeries(
    "Just after two new rows (the open hour, and a late row 5 hours back): both hours come from raw rows, so nothing is stale.",
  );
  banner("rollup-hourly: the incremental run picks up the late row");
  await run("rollup-hourly", []);
  await printSeries("After the run: the late row's hour is final again and served from the rollups.");

  banner("retention --dry-run (keep 12 months)");
  await run("retention", ["--dry-run"]);
  banner("retention: expired rows still in DEFAULT are deleted in batches");
  await run("retention", []);
  const later = new Date(Date.now() + 62 * 86_400_000).toISOString();
  banner(`retention as it will run two months from now (--now ${later}): whole partitions are dropped`);
  await run("retention", ["--now", later]);
  const kept = await pool.query(
    `SELECT count(*)::int AS n, min(bucket_ts) AS first FROM telemetry_rollups_hourly
      WHERE bucket_ts < now() - interval '12 months'`,
  );
  console.log(
    `rollups older than the raw data's 12 months: ${kept.rows[0].n.toLocaleString("en")} buckets, from ${kept.rows[0].first?.toISOString()} (they have their own retention, 5 years)`,
  );

  await coldTier(new Date(Date.now() + 93 * 86_400_000).toISOString());

  banner(`done in ${elapsed()}`);
  if (values.keep) {
    console.log(`PostgreSQL is still running: psql ${url}\nPress Ctrl-C to stop it.`);
    await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
  }
} finally {
  rmSync(coldRoot, { recursive: true, force: true });
  await kysely.destroy();
  if (!pool.ended) await pool.end();
  await server.stop();
}
