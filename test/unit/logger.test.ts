// What Cloud Logging and Error Reporting receive: one JSON line per record with severity, message,
// the job label and the fields; an ERROR record about an exception carries its stack where Error
// Reporting reads it (stack_trace) and a serviceContext naming the job; no logName (Cloud Run's agent
// names the log) and no labels Cloud Run adds itself.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log/logger.ts";

function capture() {
  const lines: Record<string, any>[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, out };
}

const env = {
  CLOUD_RUN_EXECUTION: "retention-abc12",
  CLOUD_RUN_TASK_INDEX: "0",
  CLOUD_RUN_TASK_ATTEMPT: "1",
};

describe("JSON log records", () => {
  it("an ERROR about an exception carries its stack and the job's service context", () => {
    const { lines, out } = capture();
    const log = createLogger({ job: "retention", format: "json", out, env });
    const error = new Error("could not obtain lock on relation");
    log.error("table failed", { error: error.message, cause: error });
    expect(lines).toHaveLength(1);
    const [record] = lines;
    expect(record!.severity).toBe("ERROR");
    expect(record!.message).toBe("table failed");
    expect(record!.stack_trace).toBe(error.stack);
    expect(record!.stack_trace).toMatch(/^Error: could not obtain lock on relation\n\s+at /);
    expect(record!.serviceContext).toEqual({ service: "telemetry-jobs-retention" });
  });

  it("records carry only the job label, and no logName", () => {
    const { lines, out } = capture();
    const log = createLogger({ job: "retention", format: "json", out, env });
    log.info("run started");
    log.error("refused", { error: "a plain message" });
    for (const record of lines) {
      expect(record["logging.googleapis.com/labels"]).toEqual({ job: "retention" });
      expect(record).not.toHaveProperty("logName");
    }
    // An ERROR without an exception has no stack to report.
    expect(lines[1]).not.toHaveProperty("stack_trace");
  });

  it("below ERROR an exception is described, not reported", () => {
    const { lines, out } = capture();
    const log = createLogger({ job: "rollup-hourly", format: "json", out, env });
    log.warn("retrying", { cause: new Error("lock timeout") });
    expect(lines[0]).not.toHaveProperty("stack_trace");
    expect(lines[0]!.cause).toEqual({ name: "Error", message: "lock timeout" });
  });
});
