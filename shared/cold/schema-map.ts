// PostgreSQL column types -> Parquet schema for the cold tier. Pure.
//
// Each supported column gets a `kind`, which fixes three things that must agree: the Parquet
// schema element, how export.ts turns the database's text output into writer values, and the
// column's canonical bytes in the row checksum (checksum.ts). The choices, and why:
// - timestamptz: INT64 TIMESTAMP(isAdjustedToUTC=true, MICROS), PostgreSQL's own resolution;
//   BigQuery reads it as TIMESTAMP and DuckDB as TIMESTAMP WITH TIME ZONE.
// - numeric(p,s) with 1 <= p <= 38 and 0 <= s <= p: DECIMAL(p,s) in a FIXED_LEN_BYTE_ARRAY just
//   wide enough for p digits. 38 is the widest DECIMAL DuckDB reads, and BigQuery maps it to
//   NUMERIC or BIGNUMERIC. Anything else (unconstrained numeric, p > 38, negative scale) is a
//   STRING holding PostgreSQL's own text: a DECIMAL needs one scale for the whole column, which
//   an unconstrained numeric does not have, and the text loses nothing.
// - uuid: STRING, the canonical 36-character text. BigQuery has no UUID type and would load the
//   UUID logical type as BYTES, which cannot be compared with the hot table's uuid text.
// - jsonb/json: STRING holding PostgreSQL's text. The writer's JSON type re-serialises values
//   through JavaScript (losing number precision and jsonb's text form); readers cast the string.
// - text/varchar: STRING; int2/int4 INT32 (int2 annotated INT_16); int8 INT64; float4 FLOAT;
//   float8 DOUBLE (NaN and infinities kept); boolean BOOLEAN; timestamp (a partition key can be
//   one) INT64 TIMESTAMP(isAdjustedToUTC=false, MICROS); xid8 (the starter table's ingest_xid)
//   INT64: unsigned in PostgreSQL, but a transaction id's epoch keeps it far below 2^63, and
//   BigQuery has no unsigned 64-bit type. Every column OPTIONAL (NULLs).
import type { SchemaElement } from "hyparquet";

export const COLD_KINDS = [
  "boolean",
  "int16",
  "int32",
  "int64",
  "float32",
  "float64",
  "decimal",
  "numeric_text",
  "text",
  "uuid",
  "json",
  "timestamptz",
  "timestamp",
  "xid8",
] as const;

export type ColdKind = (typeof COLD_KINDS)[number];

/** A column as the catalog describes it (see readPartitionColumns). */
export interface CatalogColumn {
  name: string;
  /** pg_type.typname, e.g. "int4", "numeric", "timestamptz". */
  typname: string;
  /** format_type(atttypid, atttypmod), e.g. "numeric(12,3)"; kept in the manifest. */
  formatted: string;
  /** numeric's declared precision and scale; null when unconstrained or not numeric. */
  numericPrecision: number | null;
  numericScale: number | null;
}

export interface ColdColumn {
  name: string;
  pgType: string;
  kind: ColdKind;
  /** For "decimal": the declared precision and scale. */
  precision?: number;
  scale?: number;
}

/** Widest DECIMAL written as DECIMAL; wider ones are written as text. */
export const MAX_DECIMAL_PRECISION = 38;

export class UnsupportedColumnTypeError extends Error {
  constructor(
    readonly column: string,
    readonly pgType: string,
  ) {
    super(
      `column "${column}" has type ${pgType}, which the cold tier cannot export yet ` +
        "(supported: boolean, smallint, integer, bigint, real, double precision, numeric, text, " +
        "varchar, uuid, json, jsonb, timestamp, timestamp with time zone, xid8)",
    );
    this.name = "UnsupportedColumnTypeError";
  }
}

const SIMPLE_KINDS: Record<string, ColdKind> = {
  bool: "boolean",
  int2: "int16",
  int4: "int32",
  int8: "int64",
  float4: "float32",
  float8: "float64",
  text: "text",
  varchar: "text",
  uuid: "uuid",
  json: "json",
  jsonb: "json",
  timestamptz: "timestamptz",
  timestamp: "timestamp",
  xid8: "xid8",
};

/** The cold column for one catalog column; UnsupportedColumnTypeError names the column. */
export function coldColumn(c: CatalogColumn): ColdColumn {
  const base = { name: c.name, pgType: c.formatted };
  const simple = SIMPLE_KINDS[c.typname];
  if (simple) return { ...base, kind: simple };
  if (c.typname !== "numeric") throw new UnsupportedColumnTypeError(c.name, c.formatted);
  const p = c.numericPrecision;
  const s = c.numericScale;
  if (p !== null && s !== null && p >= 1 && p <= MAX_DECIMAL_PRECISION && s >= 0 && s <= p) {
    return { ...base, kind: "decimal", precision: p, scale: s };
  }
  return { ...base, kind: "numeric_text" };
}

/** Maps every column; the first unsupported one throws. */
export function coldColumns(columns: readonly CatalogColumn[]): ColdColumn[] {
  return columns.map(coldColumn);
}

/** Bytes of a two's-complement big-endian integer holding any `precision`-digit number. */
export function decimalByteWidth(precision: number): number {
  const largest = 10n ** BigInt(precision) - 1n;
  let bytes = 1;
  while (largest >= 1n << BigInt(8 * bytes - 1)) bytes++;
  return bytes;
}

const STRING: Partial<SchemaElement> = {
  type: "BYTE_ARRAY",
  converted_type: "UTF8",
  logical_type: { type: "STRING" },
};

function leafElement(c: ColdColumn): Partial<SchemaElement> {
  switch (c.kind) {
    case "boolean":
      return { type: "BOOLEAN" };
    case "int16":
      // Converted type only: hyparquet-writer 0.17.0 serialises the INTEGER logical type in a form
      // DuckDB rejects ("TProtocolException: Invalid data"); INT_16 alone means the same to readers.
      return { type: "INT32", converted_type: "INT_16" };
    case "int32":
      return { type: "INT32" };
    case "int64":
    case "xid8":
      return { type: "INT64" };
    case "float32":
      return { type: "FLOAT" };
    case "float64":
      return { type: "DOUBLE" };
    case "decimal":
      return {
        type: "FIXED_LEN_BYTE_ARRAY",
        type_length: decimalByteWidth(c.precision!),
        converted_type: "DECIMAL",
        precision: c.precision!,
        scale: c.scale!,
        logical_type: { type: "DECIMAL", precision: c.precision!, scale: c.scale! },
      };
    case "timestamptz":
      return {
        type: "INT64",
        converted_type: "TIMESTAMP_MICROS",
        logical_type: { type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MICROS" },
      };
    case "timestamp":
      // Wall-clock time, no zone: no converted type, which would claim UTC. BigQuery: DATETIME.
      return { type: "INT64", logical_type: { type: "TIMESTAMP", isAdjustedToUTC: false, unit: "MICROS" } };
    case "numeric_text":
    case "text":
    case "uuid":
    case "json":
      return STRING;
  }
}

/** The Parquet schema: a root, then one OPTIONAL leaf per column, in table order. */
export function parquetSchema(columns: readonly ColdColumn[]): SchemaElement[] {
  const leaves = columns.map(
    (c) => ({ name: c.name, repetition_type: "OPTIONAL", ...leafElement(c) }) as SchemaElement,
  );
  return [{ name: "root", num_children: columns.length } as SchemaElement, ...leaves];
}
