// Values read back from the cold tier's Parquet files (the shapes verify.ts reads: bigint
// microseconds for timestamps, two's-complement bytes for decimals, numbers, bigints, booleans,
// strings) -> the text PostgreSQL reads back as exactly the exported value, and the SQL that turns
// that text into the column's type. Pure.
import { quoteIdentifier } from "../db/quote.ts";
import { bigintFromTwosComplement, formatDecimal } from "./checksum.ts";
import type { ColdColumn } from "./schema-map.ts";

/** ±infinity as the export writes them (see checksum.ts epochMicrosSql). */
const PLUS_INFINITY_MICROS = "9223372036854775807";
const MINUS_INFINITY_MICROS = "-9223372036854775807";
const MICROS_PER_DAY = "86400000000";

/** A float as text PostgreSQL's float4in/float8in read back bit for bit (NaN, ±Infinity, -0 too). */
export function floatText(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "Infinity";
  if (value === Number.NEGATIVE_INFINITY) return "-Infinity";
  // String(-0) is "0": the sign would be lost, and with it the row's checksum.
  if (Object.is(value, -0)) return "-0";
  // The shortest text that reads back as this double; for a FLOAT read into a double, float4in
  // rounds it back to the same single.
  return String(value);
}

/** One read-back value as text for the load (null for NULL). */
export function loadText(column: ColdColumn, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  switch (column.kind) {
    case "boolean":
      return value ? "true" : "false";
    case "float32":
    case "float64":
      return floatText(value as number);
    case "decimal":
      return formatDecimal(bigintFromTwosComplement(value as Uint8Array), column.scale!);
    case "int16":
    case "int32":
    case "int64":
    case "xid8":
    case "timestamptz":
    case "timestamp":
      return String(value);
    default:
      return value as string;
  }
}

/**
 * The SQL expression that turns the text of `input` (an unnest column) into a value of `pgType`.
 * Timestamps arrive as microseconds since 1970 and are rebuilt with exact integer arithmetic
 * (whole days, then microseconds; multiplying one interval by the whole count would go through a
 * double and lose microseconds beyond about 285 years from 1970), on timestamp without time zone
 * so that no session time zone takes part, then read as UTC.
 */
export function castSql(column: ColdColumn, input: string, pgType: string): string {
  if (column.kind !== "timestamptz" && column.kind !== "timestamp") return `${input}::${pgType}`;
  const micros = `${input}::int8`;
  const wallClock = `('epoch'::timestamp + (${micros} / ${MICROS_PER_DAY}) * interval '1 day'
      + (${micros} % ${MICROS_PER_DAY}) * interval '1 microsecond')`;
  const finite = column.kind === "timestamptz" ? `(${wallClock} AT TIME ZONE 'UTC')` : wallClock;
  return `(CASE ${input} WHEN '${PLUS_INFINITY_MICROS}' THEN 'infinity'::${pgType}
      WHEN '${MINUS_INFINITY_MICROS}' THEN '-infinity'::${pgType} ELSE ${finite}::${pgType} END)`;
}

/**
 * `INSERT INTO target (columns) SELECT <casts> FROM unnest($1::text[], ...)`: one parameter per
 * column, each an array of the batch's values as text.
 */
export function insertSql(
  target: string,
  columns: readonly ColdColumn[],
  pgTypes: readonly string[],
): string {
  const names = columns.map((c) => quoteIdentifier(c.name)).join(", ");
  const inputs = columns.map((_, i) => `u.c${i}`);
  const casts = columns.map((c, i) => castSql(c, inputs[i]!, pgTypes[i]!)).join(",\n       ");
  const arrays = columns.map((_, i) => `$${i + 1}::text[]`).join(", ");
  const aliases = inputs.map((_, i) => `c${i}`).join(", ");
  return `INSERT INTO ${target} (${names})
SELECT ${casts}
  FROM unnest(${arrays}) AS u(${aliases})`;
}
