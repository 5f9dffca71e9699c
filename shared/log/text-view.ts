// How a run reads on a terminal: pure functions from values to text, used by the text log writer
// and by the plan executor. Nothing here depends on the process's locale or time zone: numbers are
// grouped by hand (toLocaleString would follow LANG/ICU) and times are UTC.

/** Log fields that say how a record reads as text. A symbol key: JSON records never carry it. */
export const TEXT = Symbol("text");

/**
 * What a record shows on a terminal in place of its message and fields: lines of text, or null for
 * nothing (a record whose content another line already shows, e.g. the progress line of its action).
 */
export type TextHint = string | null;

/** 74411 -> "74,411"; non-integers keep one decimal. */
export function formatCount(n: number): string {
  const negative = n < 0;
  const [whole = "0", fraction] = Math.abs(n)
    .toFixed(Number.isInteger(n) ? 0 : 1)
    .split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${grouped}${fraction ? `.${fraction}` : ""}`;
}

/** A duration as a person reads it at a glance: "0.4 s", "12.3 s", "4 min 05 s". */
export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

/** Bytes in the largest unit that keeps the number readable. */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${formatCount(bytes)} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * How finely an instant must be shown: a monthly range reads `2026-10 .. 2026-11`, a daily one
 * `2026-10-03 .. 2026-10-04`, an hourly one `2026-10-03 05:00 .. 2026-10-03 06:00`.
 */
type Precision = "year" | "month" | "day" | "hour" | "exact";

function precisionOf(d: Date): Precision {
  if (d.getUTCMilliseconds() || d.getUTCSeconds()) return "exact";
  if (d.getUTCMinutes()) return "exact";
  if (d.getUTCHours()) return "hour";
  if (d.getUTCDate() !== 1) return "day";
  return d.getUTCMonth() === 0 ? "year" : "month";
}

const ORDER: Precision[] = ["year", "month", "day", "hour", "exact"];

function render(d: Date, precision: Precision): string {
  const iso = d.toISOString();
  switch (precision) {
    case "year":
      return iso.slice(0, 4);
    case "month":
      return iso.slice(0, 7);
    case "day":
      return iso.slice(0, 10);
    case "hour":
      return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
    case "exact":
      return iso;
  }
}

/**
 * A range [from, to) in the coarsest precision both ends share; an open end reads
 * "MINVALUE"/"MAXVALUE". With one end only, years are not shown as such: "MINVALUE .. 2026" would
 * hide that the bound is January 1st.
 */
export function rangeText(from: Date | undefined, to: Date | undefined): string {
  const ends = [from, to].filter((d): d is Date => d !== undefined);
  if (ends.length === 0) return "";
  const finest = Math.max(ends.length === 1 ? 1 : 0, ...ends.map((d) => ORDER.indexOf(precisionOf(d))));
  const precision = ORDER[finest] ?? "exact";
  return `${from ? render(from, precision) : "MINVALUE"} .. ${to ? render(to, precision) : "MAXVALUE"}`;
}

/** One instant in its own precision, never coarser than a month: "2026-11-21 05:00", "2026-10". */
export function instantText(d: Date): string {
  return render(d, ORDER[Math.max(1, ORDER.indexOf(precisionOf(d)))] ?? "exact");
}

/** Columns padded to their widest cell; the columns named in `right` are right-aligned (numbers). */
export function renderTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  right: ReadonlySet<number> = new Set(),
): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)));
  return all.map((r) =>
    r
      .map((cell, c) => (right.has(c) ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

/** `[3/12] telemetry_points_p202610  74,411 rows moved  1.2 s` */
export function progressLine(
  index: number,
  total: number,
  name: string,
  what: string,
  elapsedMs: number,
): string {
  return [`[${index}/${total}] ${name}`, what, formatDuration(elapsedMs)].filter(Boolean).join("  ");
}

/** A field value as one short word or phrase. */
export function valueText(value: unknown): string {
  if (typeof value === "number") return formatCount(value);
  if (typeof value === "string") return value;
  if (value instanceof Date) return value.toISOString();
  return JSON.stringify(value) ?? String(value);
}

/** Fields every record of a kind carries for machines (log-based metrics), not for a reader. */
const MACHINE_FIELDS = new Set(["event", "job", "table", "dryRun", "clockShifted"]);

/** `key=value` pairs of the fields a reader needs, in their order. */
export function fieldsText(fields: Record<string, unknown>, skip: ReadonlySet<string> = new Set()): string {
  return Object.entries(fields)
    .filter(([k, v]) => v !== undefined && !MACHINE_FIELDS.has(k) && !skip.has(k))
    .map(([k, v]) => `${k}=${valueText(v)}`)
    .join(" ");
}

/** How the health figures every job reports read in a sentence; other fields read as key=value. */
const HEALTH_WORDS: Record<string, (v: unknown) => string | undefined> = {
  partitions: (v) => `partitions ${valueText(v)}`,
  futureBufferIntervals: (v) => `future buffer ${valueText(v)}`,
  futureBufferShortfall: (v) => (v ? `buffer short by ${valueText(v)}` : undefined),
  defaultRows: (v) => `rows in DEFAULT ${valueText(v)}`,
  missingIntervals: (v) => `missing ${valueText(v)}`,
  totalRowsEstimate: (v) => `~${valueText(v)} rows`,
  totalBytes: (v) => (typeof v === "number" ? formatBytes(v) : undefined),
  bytesFreed: (v) => (typeof v === "number" ? `${formatBytes(v)} freed` : undefined),
  rowsDeleted: (v) => `${valueText(v)} rows deleted`,
  rowDeletesIncomplete: (v) => (v ? "row deletes stopped early (the next run goes on)" : undefined),
  cutoff: (v) => (typeof v === "string" ? `cutoff ${v}` : undefined),
};

/** A table's health record: its verdict and figures on one line, each reason on a line of its own. */
export function healthText(fields: Record<string, unknown>): string {
  const { verdict, reasons, coveredFrom, coveredTo } = fields;
  const words: string[] = [];
  // An open end (null) is a MINVALUE or MAXVALUE bound, e.g. a converted table's history partition.
  const end = (v: unknown) => (typeof v === "string" ? new Date(v) : undefined);
  if (typeof coveredFrom === "string" || typeof coveredTo === "string")
    words.push(`covered ${rangeText(end(coveredFrom), end(coveredTo))}`);
  for (const [key, value] of Object.entries(fields)) {
    const say = HEALTH_WORDS[key];
    const word = say ? say(value) : undefined;
    if (word) words.push(word);
  }
  const rest = fieldsText(
    fields,
    new Set(["verdict", "reasons", "coveredFrom", "coveredTo", ...Object.keys(HEALTH_WORDS)]),
  );
  const head = ["health", typeof verdict === "string" ? verdict : "", words.join(", "), rest];
  const lines = Array.isArray(reasons) ? reasons.map((r) => `  ${String(r)}`) : [];
  return [head.filter(Boolean).join("  "), ...lines].join("\n");
}

/** The run's last line: status, duration, actions by kind, each table's status. */
export function summaryText(fields: Record<string, unknown>): string {
  const { job, status, dryRun, durationMs, tables, actions } = fields;
  const counts = Object.entries((actions ?? {}) as Record<string, number>).map(
    ([kind, n]) => `${kind} ${formatCount(n)}`,
  );
  const perTable = Object.entries((tables ?? {}) as Record<string, string>).map(([t, s]) => `${t} ${s}`);
  return [
    `${String(job)} ${String(status)}${dryRun ? " (dry run: nothing changed)" : ""}`,
    typeof durationMs === "number" ? `in ${formatDuration(durationMs)}` : "",
    counts.length > 0 ? `${dryRun ? "planned" : "actions"}: ${counts.join(", ")}` : "no action",
    perTable.length > 0 ? `tables: ${perTable.join(", ")}` : "",
  ]
    .filter(Boolean)
    .join("  ");
}
