// UTC interval arithmetic for partition bounds. Every boundary is computed in UTC, never in a
// session or machine time zone: a DST shift must not move a partition bound (pg_partman's
// drift problems came from exactly that).

export const INTERVALS = ["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"] as const;
export type PartitionInterval = (typeof INTERVALS)[number];

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/**
 * How far ahead of now a range must start for its attach to be made without making writers wait
 * (see apply.ts): only a row from a device clock more than a day ahead can belong to it (a device
 * set to the wrong time zone is at most 14 hours off).
 */
export const FUTURE_MARGIN_MS = DAY_MS;

/** The start of the interval that contains `instant` (weeks start on ISO Monday). */
export function floorToInterval(instant: Date, interval: PartitionInterval): Date {
  const t = instant.getTime();
  if (Number.isNaN(t)) throw new RangeError("floorToInterval: invalid date");
  const y = instant.getUTCFullYear();
  const m = instant.getUTCMonth();
  switch (interval) {
    case "hourly":
      return new Date(Math.floor(t / HOUR_MS) * HOUR_MS);
    case "daily":
      return new Date(Math.floor(t / DAY_MS) * DAY_MS);
    case "weekly": {
      const dayStart = Math.floor(t / DAY_MS) * DAY_MS;
      const isoDayIndex = (new Date(dayStart).getUTCDay() + 6) % 7; // Monday = 0
      return new Date(dayStart - isoDayIndex * DAY_MS);
    }
    case "monthly":
      return utc(y, m);
    case "quarterly":
      return utc(y, m - (m % 3));
    case "yearly":
      return utc(y, 0);
    default:
      return assertNever(interval);
  }
}

/** `start + n` intervals. `start` should be aligned (see floorToInterval). */
export function addIntervals(start: Date, interval: PartitionInterval, n: number): Date {
  const t = start.getTime();
  switch (interval) {
    case "hourly":
      return new Date(t + n * HOUR_MS);
    case "daily":
      return new Date(t + n * DAY_MS);
    case "weekly":
      return new Date(t + n * 7 * DAY_MS);
    case "monthly":
      return utc(start.getUTCFullYear(), start.getUTCMonth() + n);
    case "quarterly":
      return utc(start.getUTCFullYear(), start.getUTCMonth() + 3 * n);
    case "yearly":
      return utc(start.getUTCFullYear() + n, 0);
    default:
      return assertNever(interval);
  }
}

/** True when `instant` is exactly on an interval boundary. */
export function isAligned(instant: Date, interval: PartitionInterval): boolean {
  return floorToInterval(instant, interval).getTime() === instant.getTime();
}

/** ISO-8601 week-numbering year and week of an instant, for naming weekly partitions. */
export function isoWeek(instant: Date): { year: number; week: number } {
  const day = utc(instant.getUTCFullYear(), instant.getUTCMonth(), instant.getUTCDate());
  const isoDay = (day.getUTCDay() + 6) % 7;
  const thursday = new Date(day.getTime() + (3 - isoDay) * DAY_MS);
  const year = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - utc(year, 0, 1).getTime()) / (7 * DAY_MS));
  return { year, week };
}

function utc(year: number, month: number, day = 1): Date {
  return new Date(Date.UTC(year, month, day));
}

export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${String(value)}`);
}
