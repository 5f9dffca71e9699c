// Structured logging. On Cloud Run, stdout lines that are JSON with `severity` and `message` become
// structured log entries; @google-cloud/logging's LogSync writes exactly that format (and adds the
// `logging.googleapis.com/labels` field that log-based metrics and alerts filter on). On a terminal
// we print readable lines instead.

import type { Writable } from "node:stream";
import { Entry } from "@google-cloud/logging";
import { fieldsText, healthText, summaryText, TEXT, type TextHint } from "./text-view.ts";

export type Severity = "DEBUG" | "INFO" | "NOTICE" | "WARNING" | "ERROR" | "CRITICAL";
/** A record's fields; the TEXT key (never in JSON) says how it reads on a terminal. */
export type LogFields = Record<string, unknown> & { [TEXT]?: TextHint };

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  notice(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger whose records carry these extra fields (e.g. the table being worked on). */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  job: string;
  /** JSON lines (Cloud Logging) or readable text; default: JSON unless stdout is a terminal. */
  format?: "json" | "text";
  out?: Writable;
  env?: NodeJS.ProcessEnv;
  verbose?: boolean;
}

/**
 * The one label of every record: the command. Cloud Run adds the execution, task index and task
 * attempt to each entry of a job's log by itself (labels run.googleapis.com/...), so repeating them
 * here would only duplicate them.
 */
export function logLabels(job: string): Record<string, string> {
  return { job };
}

export function createLogger(options: LoggerOptions): Logger {
  const out = options.out ?? process.stdout;
  const env = options.env ?? process.env;
  const format = options.format ?? ((out as { isTTY?: boolean }).isTTY ? "text" : "json");
  const labels = logLabels(options.job);
  const write = format === "json" ? jsonWriter(out, labels, options.job, env) : textWriter(out);
  const make = (bound: LogFields): Logger => {
    const at = (severity: Severity) => (message: string, fields?: LogFields) => {
      if (severity === "DEBUG" && !options.verbose) return;
      write(severity, message, { ...bound, ...fields });
    };
    return {
      debug: at("DEBUG"),
      info: at("INFO"),
      notice: at("NOTICE"),
      warn: at("WARNING"),
      error: at("ERROR"),
      child: (fields) => make({ ...bound, ...fields }),
    };
  };
  return make({});
}

type Writer = (severity: Severity, message: string, fields: LogFields) => void;

function jsonWriter(
  out: Writable,
  labels: Record<string, string>,
  job: string,
  env: NodeJS.ProcessEnv,
): Writer {
  const projectId = env.GOOGLE_CLOUD_PROJECT ?? env.GCLOUD_PROJECT ?? "unknown-project";
  return (severity, message, fields) => {
    // This is what LogSync.write does for each entry (Entry.toStructuredJSON, one JSON line on the
    // transport), minus two things we must avoid in a batch job: `new Logging()` starts a gRPC
    // client that probes the GCE metadata server (a warning and a delay off Google Cloud), and
    // LogSync emits a one-off "diagnostic" record with no severity or message. Cloud Run's agent
    // names the log itself: a logName field would only land in jsonPayload.
    const entry = new Entry(
      { severity, labels },
      { ...toJsonSafe(fields), ...errorReport(severity, job, fields), message },
    );
    out.write(`${JSON.stringify(entry.toStructuredJSON(projectId, false))}\n`);
  };
}

/**
 * An ERROR record about an exception carries its stack in `stack_trace`, where Error Reporting
 * looks first, and a serviceContext naming the job, so failures of one kind group together instead
 * of each run's message being an event of its own.
 */
function errorReport(severity: Severity, job: string, fields: LogFields): LogFields {
  if (severity !== "ERROR") return {};
  const error = Object.values(fields).find((v): v is Error => v instanceof Error);
  if (!error?.stack) return {};
  return { stack_trace: error.stack, serviceContext: { service: `telemetry-jobs-${job}` } };
}

/** The tag before a line's message: nothing for the ordinary records, so the others stand out. */
const TEXT_TAGS: Record<Severity, string> = {
  DEBUG: "debug ",
  INFO: "",
  NOTICE: "",
  WARNING: "WARN ",
  ERROR: "ERROR ",
  CRITICAL: "CRIT ",
};

/**
 * Readable lines. The table a record is about is a heading printed when it changes, not a field of
 * every line; the records under it are indented. A record may say how it reads as text (TEXT:
 * other lines, or nothing); the health and summary records have a compact form of their own.
 */
function textWriter(out: Writable): Writer {
  let heading: unknown;
  return (severity, message, fields) => {
    const hint = fields[TEXT];
    if (hint === null) return;
    const table = fields.table;
    if (table !== undefined && table !== heading) out.write(`\n${String(table)}\n`);
    heading = table;
    const body =
      hint ??
      (fields.event === "table_health"
        ? healthText(toJsonSafe(fields))
        : fields.event === "run_summary"
          ? summaryText(toJsonSafe(fields))
          : [message, fieldsText(toJsonSafe(fields))].filter(Boolean).join("  "));
    const prefix = `${new Date().toISOString().slice(11, 19)} ${table === undefined ? "" : "  "}${TEXT_TAGS[severity]}`;
    const [first = "", ...rest] = body.split("\n");
    const pad = " ".repeat(prefix.length - TEXT_TAGS[severity].length);
    out.write(`${[prefix + first, ...rest.map((line) => pad + line)].join("\n")}\n`);
  };
}

/** Dates as ISO strings, bigints as numbers or strings, errors as {name, message, code}. */
export function toJsonSafe(value: unknown): any {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "bigint")
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(code !== undefined ? { code } : {}) };
  }
  if (Array.isArray(value)) return value.map(toJsonSafe);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonSafe(v)]));
  }
  return value;
}
