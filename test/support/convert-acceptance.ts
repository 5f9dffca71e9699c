// The acceptance scenario of `migrate convert`, shared by the EdgeWatch and sensor_readings test
// files: a 1M-row legacy table converted by the real CLI (a child process) while a writer inserts
// 600 rows/s and a reader queries; then every row is accounted for.
import pg from "pg";
import { expect } from "vitest";
import type { TestDatabase } from "./database.ts";
import { runCli } from "./jobs.ts";
import {
  createLegacyTable,
  type LegacyShape,
  legacyTable,
  percentile,
  policyFor,
  startLoad,
  tableChecksum,
  type WriterStats,
} from "./legacy-tables.ts";

export interface AcceptanceOutcome {
  code: number | null;
  lines: { message: string; [k: string]: unknown }[];
  writer: WriterStats;
  reader: { queries: number; errors: string[]; worstMs: number };
  worstInsertMs: number;
  p99InsertMs: number;
  rowsPerSecond: number;
  /** The writer's longest wait for a lock, sampled from pg_locks every 50 ms while convert ran. */
  writerLockWaitMs: number;
  convertMs: number;
}

/**
 * Samples pg_locks for the longest lock wait of the load's writer (application_name test-writer)
 * until stopped. A stall that convert causes is a lock wait; a writer slowed by a busy machine is
 * not, so this, not the writer's rate, is what the tests bound.
 */
function sampleWriterLockWaits(url: string): { stop(): Promise<number> } {
  const monitor = new pg.Client({ connectionString: url, application_name: "test-lock-sampler" });
  monitor.on("error", () => {});
  let running = true;
  let longest = 0;
  const loop = (async () => {
    await monitor.connect();
    while (running) {
      const r = await monitor.query(
        `SELECT coalesce(max(extract(epoch FROM clock_timestamp() - l.waitstart) * 1000), 0)::float8 AS ms
           FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
          WHERE NOT l.granted AND a.application_name = 'test-writer' AND a.datname = current_database()`,
      );
      longest = Math.max(longest, r.rows[0].ms);
      await new Promise((done) => setTimeout(done, 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop.finally(() => monitor.end());
      return longest;
    },
  };
}

export async function convertUnderLoad(
  t: TestDatabase,
  shape: LegacyShape,
  schema: string,
  rows: number,
): Promise<AcceptanceOutcome> {
  const table = legacyTable(shape, schema);
  await createLegacyTable(t.pool, table, rows);
  const before = await tableChecksum(t.pool, table);
  expect(before.rows).toBe(rows);

  const env = {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor(shape, schema)] }),
  };
  const load = await startLoad(t.url, table, 600);
  await new Promise((r) => setTimeout(r, 1000));
  const started = Date.now();
  const args = ["migrate", "convert", "--table", table.qualified, "--progress-every-s", "1"];
  if (shape === "edgewatch") args.push("--drop-unique", "telemetry_points_device_message_key");
  const sampler = sampleWriterLockWaits(t.url);
  const run = await runCli(args, env);
  const writerLockWaitMs = await sampler.stop();
  const convertMs = Date.now() - started;
  await new Promise((r) => setTimeout(r, 1000));
  const { writer, reader } = await load.stop();

  // Every row that was there before is there once, unchanged; every row the writer wrote is there
  // once, as written; nothing else is.
  const after = await tableChecksum(t.pool, table);
  const keys = writer.written.map((w) => w.key);
  await t.pool.query("CREATE TABLE public.written_keys (key text PRIMARY KEY)");
  await t.pool.query("INSERT INTO public.written_keys SELECT unnest($1::text[])", [keys]);
  const old = await tableChecksum(
    t.pool,
    table,
    `NOT EXISTS (SELECT 1 FROM public.written_keys w WHERE w.key = ${table.keyColumn}::text)`,
  );
  const found = await t.pool.query(
    `SELECT ${table.keyColumn}::text AS key, device_id, ${table.timeColumn} AS time,
            ${shape === "edgewatch" ? "(metrics->>'temp')::float8" : "value"} AS value
       FROM ${table.qualified} WHERE ${table.keyColumn}::text IN (SELECT key FROM public.written_keys)`,
  );
  const distinct = await t.pool.query(
    `SELECT count(DISTINCT ${table.keyColumn})::int AS n FROM ${table.qualified}`,
  );

  expect(writer.errors).toEqual([]);
  expect(reader.errors).toEqual([]);
  expect(run.code, run.lines.map((l) => l.message).join("\n")).toBe(0);
  expect(old).toEqual(before);
  expect(after.rows).toBe(rows + keys.length);
  expect(distinct.rows[0].n).toBe(after.rows);
  const byKey = new Map(found.rows.map((r) => [r.key, r]));
  expect(byKey.size).toBe(keys.length);
  for (const w of writer.written) {
    const r = byKey.get(w.key)!;
    expect([r.device_id, r.time.getTime(), Number(r.value)]).toEqual([w.device, w.time.getTime(), w.value]);
  }
  const seconds = (writer.stoppedAt - writer.startedAt) / 1000;
  return {
    code: run.code,
    lines: run.lines,
    writer,
    reader,
    worstInsertMs: Math.max(...writer.latenciesMs),
    p99InsertMs: percentile(writer.latenciesMs, 99),
    rowsPerSecond: writer.written.length / seconds,
    writerLockWaitMs,
    convertMs,
  };
}
