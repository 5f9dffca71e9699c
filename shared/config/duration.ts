// Retention windows such as "90 days" or "24 months". Months and years are calendar units in UTC
// (2026-03-31 minus 1 month is 2026-02-28, not March 3), days and hours are fixed lengths.
export const DURATION_UNITS = ["hour", "day", "week", "month", "year"] as const;
export type DurationUnit = (typeof DURATION_UNITS)[number];

export interface Duration {
  readonly amount: number;
  readonly unit: DurationUnit;
}

const PATTERN = /^\s*(\d{1,6})\s*(hour|day|week|month|year)s?\s*$/i;

export function parseDuration(text: string): Duration | undefined {
  const m = PATTERN.exec(text);
  if (!m) return undefined;
  return { amount: Number(m[1]), unit: m[2]!.toLowerCase() as DurationUnit };
}

export function formatDuration(d: Duration): string {
  return `${d.amount} ${d.unit}${d.amount === 1 ? "" : "s"}`;
}

/** `instant - duration`, in UTC; month ends clamp (Mar 31 - 1 month = Feb 28/29). */
export function subtractDuration(instant: Date, d: Duration): Date {
  const t = instant.getTime();
  switch (d.unit) {
    case "hour":
      return new Date(t - d.amount * 3_600_000);
    case "day":
      return new Date(t - d.amount * 86_400_000);
    case "week":
      return new Date(t - d.amount * 7 * 86_400_000);
    case "month":
    case "year": {
      const months = d.unit === "year" ? 12 * d.amount : d.amount;
      const y = instant.getUTCFullYear();
      const m = instant.getUTCMonth() - months;
      const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
      const day = Math.min(instant.getUTCDate(), lastDay);
      return new Date(
        Date.UTC(
          y,
          m,
          day,
          instant.getUTCHours(),
          instant.getUTCMinutes(),
          instant.getUTCSeconds(),
          instant.getUTCMilliseconds(),
        ),
      );
    }
  }
}

/** Approximate length, for comparing a window against a safety floor. */
export function approximateMs(d: Duration): number {
  const day = 86_400_000;
  const perUnit: Record<DurationUnit, number> = {
    hour: 3_600_000,
    day,
    week: 7 * day,
    month: 28 * day,
    year: 365 * day,
  };
  return d.amount * perUnit[d.unit];
}
