// The partition checksum, computed by PostgreSQL over the table and by JavaScript over values read
// back from the Parquet files, with the same definition on both sides (algorithm CHECKSUM_ALGORITHM):
//
//   row bytes  = for each column in table order:
//                  NULL     -> 0x00
//                  non-NULL -> 0x01, B, and for every kind but the floats a closing 0x00
//   B          = the value's canonical bytes, by kind:
//                  float32/float64 -> IEEE 754 big-endian (float4send/float8send), so NaN, -0 and
//                                     infinities compare bit for bit
//                  timestamptz/timestamp -> decimal text of microseconds since 1970-01-01
//                                     (±infinity as ±9223372036854775807)
//                  decimal         -> PostgreSQL's numeric text (always `scale` fraction digits)
//                  anything else   -> PostgreSQL's text output, UTF-8 (bool: "true"/"false")
//   row hash   = first 8 bytes of sha256(row bytes), as a signed big-endian int8
//   checksum   = exact sum of the row hashes over all rows (numeric; never wraps)
//
// The encoding is unambiguous without length prefixes: floats are fixed-width, and every other B is
// text, which PostgreSQL never lets contain a NUL byte, so 0x00 can close it. (No length prefix
// also means PostgreSQL builds each B once per row, not twice.) A sum of per-row hashes does not
// depend on row order, so the database needs no ORDER BY and the files can hold rows in any order;
// it changes when a row is lost, duplicated or altered.
import { createHash } from "node:crypto";
import { quoteIdentifier } from "../db/quote.ts";
import type { ColdColumn, ColdKind } from "./schema-map.ts";

export const CHECKSUM_ALGORITHM = "sha256-int8-sum/v1";

/**
 * Microseconds since 1970 of a timestamptz or timestamp expression, as exact int8. 'infinity' and
 * '-infinity' become +/-9223372036854775807, which DuckDB reads as infinity and -infinity (the
 * smallest int8, PostgreSQL's own internal -infinity, would read there as a date in 290309 BC); a
 * finite time after about year 294,000 does not fit and fails the export.
 */
export function epochMicrosSql(expression: string): string {
  return `(CASE WHEN ${expression} = 'infinity' THEN 9223372036854775807
               WHEN ${expression} = '-infinity' THEN -9223372036854775807
               ELSE (extract(epoch from ${expression}) * 1000000)::int8 END)`;
}

function canonicalBytesSql(column: string, kind: ColdKind): string {
  switch (kind) {
    case "float32":
      return `float4send(${column})`;
    case "float64":
      return `float8send(${column})`;
    case "timestamptz":
    case "timestamp":
      return `convert_to(${epochMicrosSql(column)}::text, 'UTF8')`;
    default:
      return `convert_to(${column}::text, 'UTF8')`;
  }
}

/** One row's hash (int8) as an SQL expression over the columns of the FROM item. */
export function rowHashSql(columns: readonly ColdColumn[]): string {
  const pieces = columns.map((c) => {
    const bytes = canonicalBytesSql(quoteIdentifier(c.name), c.kind);
    // Every function in B is strict: B is NULL exactly when the value is, and so is the concatenation.
    const value = isFixedWidth(c.kind)
      ? `'\\x01'::bytea || ${bytes}`
      : `'\\x01'::bytea || ${bytes} || '\\x00'::bytea`;
    return `coalesce(${value}, '\\x00'::bytea)`;
  });
  const row = pieces.length === 0 ? "''::bytea" : pieces.join("\n    || ");
  return `('x' || left(encode(sha256(${row}), 'hex'), 16))::bit(64)::int8`;
}

/** A decimal's unscaled value and scale as PostgreSQL prints numeric(p,s): "-5.000", "0.250". */
export function formatDecimal(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, "0");
  const body = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${body}` : body;
}

/** A two's-complement big-endian integer (Parquet's DECIMAL bytes) as a bigint. */
export function bigintFromTwosComplement(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  const bits = BigInt(bytes.length * 8);
  return bytes.length > 0 && (bytes[0]! & 0x80) !== 0 ? value - (1n << bits) : value;
}

/**
 * A value as read back from Parquet (see verify.ts for the shapes: bigint microseconds,
 * two's-complement bytes for decimals, strings, numbers, booleans) -> its canonical bytes.
 */
export function canonicalBytes(column: ColdColumn, value: unknown): Buffer {
  switch (column.kind) {
    case "float32": {
      const b = Buffer.alloc(4);
      b.writeFloatBE(value as number);
      return b;
    }
    case "float64": {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(value as number);
      return b;
    }
    case "decimal":
      return Buffer.from(formatDecimal(bigintFromTwosComplement(value as Uint8Array), column.scale!), "utf8");
    case "boolean":
    case "int16":
    case "int32":
    case "int64":
    case "xid8":
    case "timestamptz":
    case "timestamp":
      return Buffer.from(String(value), "utf8");
    default:
      return Buffer.from(value as string, "utf8");
  }
}

function isFixedWidth(kind: ColdKind): boolean {
  return kind === "float32" || kind === "float64";
}

const NULL_MARK = Buffer.from([0]);
const VALUE_MARK = Buffer.from([1]);
const END_MARK = Buffer.from([0]);

/** The signed 64-bit hash of one row of read-back values, as rowHashSql computes it. */
export function rowHash(columns: readonly ColdColumn[], row: readonly unknown[]): bigint {
  const hash = createHash("sha256");
  columns.forEach((c, i) => {
    const value = row[i];
    if (value === null || value === undefined) {
      hash.update(NULL_MARK);
      return;
    }
    hash.update(VALUE_MARK).update(canonicalBytes(c, value));
    if (!isFixedWidth(c.kind)) hash.update(END_MARK);
  });
  return hash.digest().readBigInt64BE(0);
}
