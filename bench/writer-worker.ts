// The writer of bench/ddl-under-load.ts, on its own thread: its timings must not include delays of
// the main thread's event loop (partition-manager, the monitor, log parsing), only the database's.
// Paced INSERTs on one dedicated session; each statement's latency is recorded.
import { parentPort, workerData } from "node:worker_threads";
import { closeClient, nowMs, openClient, sleep } from "./support.ts";

export interface WriterParams {
  url: string;
  applicationName: string;
  batchRows: number;
  periodMs: number;
  devices: number;
  maxStatements: number;
  /** Row timestamps are now(), kept inside [monthStart, monthEnd - 1 s] (epoch ms). */
  monthStart: number;
  monthEnd: number;
}

export interface WriterStats {
  rows: number;
  statements: number;
  errors: number;
  /** Distinct error messages ("SQLSTATE: message") with their counts. */
  errorSamples: [string, number][];
  /** Per statement: result received minus sent. */
  latencies: number[];
  /** Per statement: result received minus scheduled start (includes queueing behind a stalled one). */
  lags: number[];
}

/** From the main thread: start now (timings on the nowMs() clock), or stop. */
export type WriterCommand =
  | {
      type: "go";
      /** Statements sent before this are not recorded (warm-up). */
      measureFrom: number;
      /** No statement is sent after this, whatever happens. */
      hardDeadline: number;
    }
  | { type: "stop" };

export type WriterMessage =
  | { type: "ready" }
  | { type: "done"; stats: WriterStats }
  | { type: "failed"; error: string };

async function main(p: WriterParams): Promise<WriterStats> {
  let stop = false;
  let onGo: (go: Extract<WriterCommand, { type: "go" }>) => void = () => {};
  const go = new Promise<Extract<WriterCommand, { type: "go" }>>((resolve) => {
    onGo = resolve;
  });
  parentPort!.on("message", (m: WriterCommand) => {
    if (m.type === "stop") {
      stop = true;
      onGo({ type: "go", measureFrom: 0, hardDeadline: 0 }); // stopped before it started
    } else onGo(m);
  });
  parentPort!.unref(); // the port alone must not keep this thread alive once the loop is over
  const stats: WriterStats = { rows: 0, statements: 0, errors: 0, errorSamples: [], latencies: [], lags: [] };
  const errors = new Map<string, number>();
  const text = `
    INSERT INTO public.telemetry_points (device_id, ts, metrics)
    SELECT 'dev-' || (1 + ($2::int + g) % ${p.devices}), $1::timestamptz,
           jsonb_build_object('temp', 20 + g, 'seq', $2::int)
      FROM generate_series(1, ${p.batchRows}) AS g`;
  const tsFor = () =>
    new Date(Math.min(Math.max(Date.now(), p.monthStart), p.monthEnd - 1_000)).toISOString();
  const client = await openClient(p.url, p.applicationName, { statement_timeout: "30s" });
  try {
    parentPort!.postMessage({ type: "ready" } satisfies WriterMessage);
    const { measureFrom, hardDeadline } = await go;
    const t0 = nowMs();
    for (let i = 0; i < p.maxStatements && !stop; i++) {
      const due = t0 + i * p.periodMs;
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
      if (failed) {
        stats.errors++;
        errors.set(failed, (errors.get(failed) ?? 0) + 1);
      } else stats.rows += p.batchRows;
    }
  } finally {
    await closeClient(client);
  }
  stats.errorSamples = [...errors];
  return stats;
}

if (parentPort && workerData) {
  main(workerData as WriterParams).then(
    (stats) => parentPort!.postMessage({ type: "done", stats } satisfies WriterMessage),
    (error) => parentPort!.postMessage({ type: "failed", error: String(error) } satisfies WriterMessage),
  );
}
