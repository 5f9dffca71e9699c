// Parsing partition bounds as PostgreSQL prints them (pg_get_expr(relpartbound)). Our sessions run
// with TimeZone=UTC, so timestamptz bounds come back as '2026-11-01 00:00:00+00'; timestamp
// bounds have no offset and are read as UTC.

export type BoundValue = Date | "MINVALUE" | "MAXVALUE";

export type PartitionBound =
  | { readonly kind: "default" }
  | {
      readonly kind: "range";
      readonly from: BoundValue;
      readonly to: BoundValue;
      /** Which bound has sub-millisecond digits, which a JS Date cannot hold exactly (truncated). */
      readonly inexact?: "from" | "to" | "both";
    }
  | { readonly kind: "unsupported"; readonly text: string };

const RANGE = /^FOR VALUES FROM \((.+)\) TO \((.+)\)$/;
const LITERAL =
  /^'(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}):(\d{2})(\.\d+)?)?([+-]\d{2}(?::?\d{2})?)?'(?:::[a-z ]+)?$/;

export function parsePartitionBound(text: string): PartitionBound {
  if (text === "DEFAULT") return { kind: "default" };
  const m = RANGE.exec(text);
  if (!m) return { kind: "unsupported", text };
  const from = parseBoundValue(m[1]!);
  const to = parseBoundValue(m[2]!);
  if (from === undefined || to === undefined) return { kind: "unsupported", text };
  const range = { kind: "range", from: from.value, to: to.value } as const;
  if (from.exact && to.exact) return range;
  return { ...range, inexact: from.exact ? "to" : to.exact ? "from" : "both" };
}

function parseBoundValue(raw: string): { value: BoundValue; exact: boolean } | undefined {
  const v = raw.trim();
  if (v === "MINVALUE" || v === "MAXVALUE") return { value: v, exact: true };
  const m = LITERAL.exec(v);
  if (!m) return undefined;
  const exact = !/^\.\d{3}0*[1-9]/.test(m[7] ?? "");
  const [, y, mo, d, h = "00", mi = "00", s = "00", frac = "", offset] = m;
  let zone = "Z";
  if (offset)
    zone =
      offset.length === 3
        ? `${offset}:00`
        : offset.includes(":")
          ? offset
          : `${offset.slice(0, 3)}:${offset.slice(3)}`;
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}${frac.slice(0, 4)}${zone}`);
  return Number.isNaN(date.getTime()) ? undefined : { value: date, exact };
}

/** A bound literal for DDL: always with an explicit UTC offset for timestamptz, none for timestamp. */
export function boundLiteral(instant: Date, keyType: "timestamptz" | "timestamp"): string {
  const iso = instant.toISOString().replace("T", " ").replace("Z", "");
  return keyType === "timestamptz" ? `${iso}+00` : iso;
}

/** A range bound in epoch ms: MINVALUE is -Infinity, MAXVALUE is +Infinity. */
export interface BoundRange {
  readonly from: number;
  readonly to: number;
}

/** The range a bound covers, [from, to); undefined for DEFAULT and bounds this tool does not read. */
export function boundRange(bound: PartitionBound): BoundRange | undefined {
  if (bound.kind !== "range") return undefined;
  return { from: boundMs(bound.from), to: boundMs(bound.to) };
}

function boundMs(v: BoundValue): number {
  if (v === "MINVALUE") return Number.NEGATIVE_INFINITY;
  if (v === "MAXVALUE") return Number.POSITIVE_INFINITY;
  return v.getTime();
}
