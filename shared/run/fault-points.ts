// Named points where a test can freeze a real job process, to SIGKILL it there and prove that the
// next run repairs whatever the kill left behind. Inert unless TELEMETRY_JOBS_FAULT_PAUSE names the
// point; then the job logs "paused at fault point" and waits until it is killed.
import type { Logger } from "../log/logger.ts";

export type FaultPoint =
  | "after-create-table"
  | "after-move-rows"
  | "after-delete-batch"
  | "after-rollup-batch";

export async function pauseAtFaultPoint(point: FaultPoint, log: Logger): Promise<void> {
  if (process.env.TELEMETRY_JOBS_FAULT_PAUSE !== point) return;
  log.warn("paused at fault point", { faultPoint: point });
  await new Promise(() => {}); // until SIGKILL
}
