// Named points where a test can freeze a real job process, to SIGKILL it there and prove that the
// next run repairs whatever the kill left behind. Inert unless TELEMETRY_JOBS_FAULT_PAUSE names the
// point (or "point:detail", e.g. "convert-after-prepare-step:validate"); then the job logs "paused
// at fault point" and waits until it is killed, or until TELEMETRY_JOBS_FAULT_RESUME_FILE exists.
import { existsSync } from "node:fs";
import type { Logger } from "../log/logger.ts";

export type FaultPoint =
  | "after-create-table"
  | "attach-after-probe"
  | "after-move-rows"
  | "after-delete-batch"
  | "after-rollup-batch"
  | "convert-after-record"
  | "convert-after-prepare-step"
  | "convert-before-swap"
  | "retention-after-mark"
  | "retention-after-detach"
  | "retention-in-drop-together"
  | "retention-in-finish"
  | "retention-export-row-group"
  | "retention-export-before-manifest"
  | "retention-export-before-verify"
  | "retention-export-before-detach"
  | "retention-export-after-detach"
  | "guard-after-add"
  | "guard-before-drop";

export async function pauseAtFaultPoint(point: FaultPoint, log: Logger, detail?: string): Promise<void> {
  const wanted = process.env.TELEMETRY_JOBS_FAULT_PAUSE;
  if (wanted !== point && (detail === undefined || wanted !== `${point}:${detail}`)) return;
  log.warn("paused at fault point", { faultPoint: point, detail });
  // A test that orders another session between two steps of a job lets it go on by creating this
  // file; without one the pause lasts until the process is killed.
  const resumeFile = process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE;
  if (!resumeFile) await new Promise(() => {});
  while (!existsSync(resumeFile!)) await new Promise((r) => setTimeout(r, 5));
  log.warn("resumed at fault point", { faultPoint: point, detail });
}
