// The terminal's text: numbers grouped without the locale, ranges in their interval's precision,
// tables aligned, and the text log writer's heading per table, hints and compact records.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log/logger.ts";
import {
  formatBytes,
  formatCount,
  formatDuration,
  instantText,
  progressLine,
  rangeText,
  renderTable,
  TEXT,
} from "../../shared/log/text-view.ts";

const d = (iso: string) => new Date(iso);

describe("text values", () => {
  it("groups thousands the same whatever the locale", () => {
    expect(formatCount(0)).toBe("0");
    expect(formatCount(999)).toBe("999");
    expect(formatCount(74411)).toBe("74,411");
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatCount(-1234)).toBe("-1,234");
    expect(formatCount(1234.56)).toBe("1,234.6");
  });

  it("durations and sizes", () => {
    expect(formatDuration(1234)).toBe("1.2 s");
    expect(formatDuration(40)).toBe("0.0 s");
    expect(formatDuration(245_000)).toBe("4 min 05 s");
    expect(formatBytes(512)).toBe("512 bytes");
    expect(formatBytes(3 * 1024 * 1024)).toBe("3.0 MiB");
  });

  it("shows a range in the precision its bounds share", () => {
    expect(rangeText(d("2026-10-01T00:00Z"), d("2026-11-01T00:00Z"))).toBe("2026-10 .. 2026-11");
    expect(rangeText(d("2025-12-01T00:00Z"), d("2026-01-01T00:00Z"))).toBe("2025-12 .. 2026-01");
    expect(rangeText(d("2026-01-01T00:00Z"), d("2027-01-01T00:00Z"))).toBe("2026 .. 2027");
    expect(rangeText(d("2026-10-03T00:00Z"), d("2026-10-04T00:00Z"))).toBe("2026-10-03 .. 2026-10-04");
    expect(rangeText(d("2026-10-03T05:00Z"), d("2026-10-03T06:00Z"))).toBe(
      "2026-10-03 05:00 .. 2026-10-03 06:00",
    );
    expect(rangeText(d("2026-10-03T05:30Z"), d("2026-10-03T06:00Z"))).toBe(
      "2026-10-03T05:30:00.000Z .. 2026-10-03T06:00:00.000Z",
    );
    expect(rangeText(undefined, d("2026-01-01T00:00Z"))).toBe("MINVALUE .. 2026-01");
    expect(rangeText(undefined, undefined)).toBe("");
    expect(instantText(d("2026-11-21T05:00Z"))).toBe("2026-11-21 05:00");
    expect(instantText(d("2027-01-01T00:00Z"))).toBe("2027-01");
  });

  it("aligns a table's columns, numbers to the right", () => {
    const lines = renderTable(
      ["partition", "rows", "action"],
      [
        ["p202610", "74,411", "create (rescue)"],
        ["p202611", "0", "create"],
      ],
      new Set([1]),
    );
    expect(lines).toEqual([
      "partition    rows  action",
      "p202610    74,411  create (rescue)",
      "p202611         0  create",
    ]);
  });

  it("a progress line names the step, what it did and how long it took", () => {
    expect(progressLine(3, 12, "telemetry_points_p202610", "74,411 rows moved", 1234)).toBe(
      "[3/12] telemetry_points_p202610  74,411 rows moved  1.2 s",
    );
  });
});

function textLog() {
  let text = "";
  const out = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  const log = createLogger({ job: "partition-manager", format: "text", out });
  // Each line starts with the UTC time of day; the rest is what a snapshot can compare.
  return { log, lines: () => text.split("\n").map((l) => l.replace(/^\d\d:\d\d:\d\d /, "")) };
}

describe("text log writer", () => {
  it("prints the table once as a heading and indents its records", () => {
    const { log, lines } = textLog();
    const t = log.child({ table: "public.telemetry_points" });
    t.info("first", { partition: "p1", rows: 74411 });
    t.warn("second");
    log.notice("no table");
    expect(lines()).toEqual([
      "",
      "public.telemetry_points",
      "  first  partition=p1 rows=74,411",
      "  WARN second",
      "no table",
      "",
    ]);
  });

  it("a record's text hint replaces it, or hides it; JSON never carries the hint", () => {
    const { log, lines } = textLog();
    log.info("hidden", { [TEXT]: null });
    log.info("replaced", { rows: 1, [TEXT]: "line one\nline two" });
    expect(lines()).toEqual(["line one", "         line two", ""]);

    let json = "";
    const out = new Writable({
      write(chunk, _enc, done) {
        json += String(chunk);
        done();
      },
    });
    createLogger({ job: "x", format: "json", out }).info("replaced", { rows: 1, [TEXT]: "other" });
    const record = JSON.parse(json);
    expect(record.message).toBe("replaced");
    expect(record.rows).toBe(1);
    expect(json).not.toContain("other");
  });

  it("a health record's open end reads as MINVALUE, and no coverage at all as nothing", () => {
    const { log, lines } = textLog();
    log.info("table health", {
      event: "table_health",
      verdict: "OK",
      coveredFrom: null,
      coveredTo: "2027-01-01T00:00:00.000Z",
    });
    log.info("table health", { event: "table_health", verdict: "WARN", coveredFrom: null, coveredTo: null });
    expect(lines()).toEqual(["health  OK  covered MINVALUE .. 2027-01", "health  WARN", ""]);
  });

  it("health and summary records read compactly, without the fields meant for metrics", () => {
    const { log, lines } = textLog();
    log.child({ table: "public.t" }).info("table health", {
      event: "table_health",
      job: "partition-manager",
      table: "public.t",
      dryRun: false,
      clockShifted: false,
      verdict: "WARN",
      reasons: ["WARN: 75205 rows in the DEFAULT partition"],
      partitions: 16,
      coveredFrom: "2025-11-01T00:00:00.000Z",
      coveredTo: "2027-03-01T00:00:00.000Z",
      defaultRows: 75205,
    });
    log.notice("partition-manager ok", {
      event: "run_summary",
      job: "partition-manager",
      status: "ok",
      dryRun: false,
      clockShifted: false,
      durationMs: 8411,
      tables: { "public.t": "ok" },
      actions: { create_partition: 12 },
      health: { "public.t": { verdict: "WARN" } },
    });
    expect(lines()).toEqual([
      "",
      "public.t",
      "  health  WARN  covered 2025-11 .. 2027-03, partitions 16, rows in DEFAULT 75,205",
      "             WARN: 75205 rows in the DEFAULT partition",
      "partition-manager ok  in 8.4 s  actions: create_partition 12  tables: public.t ok",
      "",
    ]);
  });
});
