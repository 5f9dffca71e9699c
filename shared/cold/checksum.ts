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
import { hash } from "node:crypto";
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

/**
 * The canonical text of a column (`column`, an SQL expression) as SQL; undefined for the floats,
 * whose canonical bytes are binary.
 */
export function canonicalTextSql(column: string, kind: ColdKind): string | undefined {
  switch (kind) {
    case "float32":
    case "float64":
      return undefined;
    case "timestamptz":
    case "timestamp":
      return `${epochMicrosSql(column)}::text`;
    default:
      return `${column}::text`;
  }
}

/**
 * One column's canonical bytes as SQL. `value` is the column, or, when `rendered`, an expression
 * already holding its canonical text (canonicalTextSql), so the text is built once.
 */
function canonicalBytesSql(value: string, kind: ColdKind, rendered: boolean): string {
  if (kind === "float32") return `float4send(${value})`;
  if (kind === "float64") return `float8send(${value})`;
  return `convert_to(${rendered ? value : canonicalTextSql(value, kind)}, 'UTF8')`;
}

/** A column as the row hash reads it: the SQL expression, and whether it is canonical text already. */
export interface HashInput {
  kind: ColdKind;
  value: string;
  rendered: boolean;
}

/** One row's hash (int8) as an SQL expression over the columns of the FROM item. */
export function rowHashSql(columns: readonly ColdColumn[]): string {
  return rowHashOverSql(
    columns.map((c) => ({ kind: c.kind, value: quoteIdentifier(c.name), rendered: false })),
  );
}

/** One row's hash (int8) as an SQL expression over `inputs`, one per column in table order. */
export function rowHashOverSql(inputs: readonly HashInput[]): string {
  const pieces = inputs.map(({ kind, value, rendered }) => {
    const bytes = canonicalBytesSql(value, kind, rendered);
    // Every function in B is strict: B is NULL exactly when the value is, and so is the concatenation.
    const marked = isFixedWidth(kind)
      ? `'\\x01'::bytea || ${bytes}`
      : `'\\x01'::bytea || ${bytes} || '\\x00'::bytea`;
    return `coalesce(${marked}, '\\x00'::bytea)`;
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
 * two's-complement bytes for decimals, text as a string or as its UTF-8 bytes, numbers,
 * booleans) -> its canonical bytes.
 */
export function canonicalBytes(column: ColdColumn, value: unknown): Buffer {
  const row = new RowBytes();
  row.value(column, value);
  // Without the value's 0x01 mark and, for every kind but the floats, its closing 0x00.
  const written = row.bytes();
  return Buffer.from(written.subarray(1, isFixedWidth(column.kind) ? written.length : written.length - 1));
}

function isFixedWidth(kind: ColdKind): boolean {
  return kind === "float32" || kind === "float64";
}

/**
 * One row's bytes, written into a buffer that is reused from row to row (verification hashes
 * millions of rows: one allocation and one hash call per row, not several per value).
 */
class RowBytes {
  private buffer = Buffer.allocUnsafe(1024);
  private at = 0;

  reset(): void {
    this.at = 0;
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.at);
  }

  nullValue(): void {
    this.room(1);
    this.buffer[this.at++] = 0x00;
  }

  /** 0x01, the value's canonical bytes, and a closing 0x00 for every kind but the floats. */
  value(column: ColdColumn, value: unknown): void {
    switch (column.kind) {
      case "float32":
        this.room(5);
        this.buffer[this.at++] = 0x01;
        this.at = this.buffer.writeFloatBE(value as number, this.at);
        return;
      case "float64":
        this.room(9);
        this.buffer[this.at++] = 0x01;
        this.at = this.buffer.writeDoubleBE(value as number, this.at);
        return;
      case "decimal":
        this.text(formatDecimal(bigintFromTwosComplement(value as Uint8Array), column.scale!));
        return;
      default:
        if (value instanceof Uint8Array) this.utf8(value);
        else this.text(typeof value === "string" ? value : String(value));
    }
  }

  /** Text given as its UTF-8 bytes, as a Parquet STRING holds it: copied, never decoded. */
  private utf8(bytes: Uint8Array): void {
    this.room(bytes.length + 2);
    this.buffer[this.at++] = 0x01;
    this.buffer.set(bytes, this.at);
    this.at += bytes.length;
    this.buffer[this.at++] = 0x00;
  }

  private text(text: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    this.room(text.length * 3 + 2);
    this.buffer[this.at++] = 0x01;
    this.at += this.buffer.write(text, this.at, "utf8");
    this.buffer[this.at++] = 0x00;
  }

  private room(bytes: number): void {
    if (this.at + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.at + bytes));
    this.buffer.copy(grown, 0, 0, this.at);
    this.buffer = grown;
  }
}

const scratch = new RowBytes();

/** The signed 64-bit hash of one row of read-back values, as rowHashSql computes it. */
export function rowHash(columns: readonly ColdColumn[], row: readonly unknown[]): bigint {
  scratch.reset();
  for (let i = 0; i < columns.length; i++) {
    const value = row[i];
    if (value === null || value === undefined) scratch.nullValue();
    else scratch.value(columns[i]!, value);
  }
  return hash("sha256", scratch.bytes(), "buffer").readBigInt64BE(0);
}
