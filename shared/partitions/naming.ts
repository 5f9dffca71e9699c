// Partition names from a template. A name is only a label: planning and retention read the real
// bounds from the catalog, never from names.
import { isoWeek, type PartitionInterval } from "./time.ts";

/** Comment on a DEFAULT partition telemetry-jobs made (partition-manager, or migrate convert). */
export const DEFAULT_PARTITION_MARKER = "telemetry-jobs: DEFAULT partition";

/**
 * The CHECK constraint partition-manager puts on a DEFAULT partition to prove ranges absent from it
 * before attaching them (plan-guard.ts). Recognised by this name when a run that did not finish (it
 * was killed, or could not drop it) left it behind.
 */
export const DEFAULT_GUARD_CONSTRAINT = "telemetry_jobs_default_guard";

/** Where an operator reads what a guard left on DEFAULT does and how to drop it. */
export const GUARD_RUNBOOK = "docs/runbooks/partition-manager.md, section 'The DEFAULT guard'";

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** Placeholders a template needs so that each interval gets a distinct name. */
export function requiredPlaceholders(interval: PartitionInterval): string[] {
  switch (interval) {
    case "hourly":
      return ["{YYYY}", "{MM}", "{DD}", "{HH}"];
    case "daily":
      return ["{YYYY}", "{MM}", "{DD}"];
    case "weekly":
      return ["{IYYY}", "{WW}"];
    case "monthly":
      return ["{YYYY}", "{MM}"];
    case "quarterly":
      return ["{YYYY}", "{Q}"];
    case "yearly":
      return ["{YYYY}"];
  }
}

export function defaultNamingTemplate(interval: PartitionInterval): string {
  switch (interval) {
    case "hourly":
      return "{table}_p{YYYY}{MM}{DD}{HH}";
    case "daily":
      return "{table}_p{YYYY}{MM}{DD}";
    case "weekly":
      return "{table}_p{IYYY}w{WW}";
    case "monthly":
      return "{table}_p{YYYY}{MM}";
    case "quarterly":
      return "{table}_p{YYYY}q{Q}";
    case "yearly":
      return "{table}_p{YYYY}";
  }
}

/** Renders the child name for the interval starting at `start` (UTC). */
export function partitionName(template: string, table: string, start: Date): string {
  const week = isoWeek(start);
  return template
    .replaceAll("{table}", table)
    .replaceAll("{YYYY}", String(start.getUTCFullYear()))
    .replaceAll("{MM}", pad(start.getUTCMonth() + 1))
    .replaceAll("{DD}", pad(start.getUTCDate()))
    .replaceAll("{HH}", pad(start.getUTCHours()))
    .replaceAll("{Q}", String(Math.floor(start.getUTCMonth() / 3) + 1))
    .replaceAll("{IYYY}", String(week.year))
    .replaceAll("{WW}", pad(week.week));
}
