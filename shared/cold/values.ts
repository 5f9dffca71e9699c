// PostgreSQL's text output of one value -> the value handed to the Parquet writer, exactly:
// integers that do not fit a double as bigint, decimals as their unscaled bigint, timestamps as
// bigint microseconds (source.ts selects them that way). Pure.
import type { ColdColumn } from "./schema-map.ts";

export class UnrepresentableValueError extends Error {
  constructor(column: string, pgType: string, value: string, why: string) {
    super(`column "${column}" (${pgType}): value ${JSON.stringify(value.slice(0, 40))} ${why}`);
    this.name = "UnrepresentableValueError";
  }
}

const DECIMAL_TEXT = /^(-?)(\d+)(?:\.(\d+))?$/;

/** numeric(p,s) text -> unscaled bigint; NaN/Infinity have no DECIMAL form. */
export function unscaledDecimal(column: ColdColumn, text: string): bigint {
  const m = DECIMAL_TEXT.exec(text);
  const fraction = m?.[3] ?? "";
  if (!m || fraction.length > column.scale!) {
    throw new UnrepresentableValueError(column.name, column.pgType, text, "has no Parquet DECIMAL form");
  }
  const unscaled = BigInt(`${m[2]}${fraction.padEnd(column.scale!, "0")}`);
  return m[1] === "-" ? -unscaled : unscaled;
}

const INT64_MAX = 2n ** 63n - 1n;

/** An unsigned 64-bit value (xid8) into a signed INT64; the rare value above 2^63 - 1 is refused. */
export function signedInt64(column: ColdColumn, text: string): bigint {
  const value = BigInt(text);
  if (value > INT64_MAX)
    throw new UnrepresentableValueError(column.name, column.pgType, text, "exceeds INT64");
  return value;
}

/** One value for the writer; `text` is PostgreSQL's output (null for NULL). */
export function writerValue(column: ColdColumn, text: string | null): unknown {
  if (text === null) return null;
  switch (column.kind) {
    case "boolean":
      return text === "t";
    case "int16":
    case "int32":
    case "float32":
    case "float64":
      // Number() reads "NaN", "Infinity" and "-Infinity" as PostgreSQL prints them, and float
      // text at extra_float_digits 3 is the shortest form that reads back to the same value.
      return Number(text);
    case "int64":
    case "timestamptz":
    case "timestamp":
      return BigInt(text);
    case "decimal":
      return unscaledDecimal(column, text);
    case "xid8":
      return signedInt64(column, text);
    default:
      return text;
  }
}

/** Rough in-memory bytes of a value, to close a row group before it grows too large. */
export function approximateBytes(text: string | null): number {
  return text === null ? 1 : 8 + text.length;
}
