import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { canonicalBytes, formatDecimal, rowHash, rowHashSql } from "../../shared/cold/checksum.ts";
import { WRITER_NAME } from "../../shared/cold/export.ts";
import {
  type CatalogColumn,
  coldColumn,
  coldColumns,
  decimalByteWidth,
  parquetSchema,
  UnsupportedColumnTypeError,
} from "../../shared/cold/schema-map.ts";
import { unscaledDecimal, writerValue } from "../../shared/cold/values.ts";

function col(
  name: string,
  typname: string,
  formatted = typname,
  p: number | null = null,
  s: number | null = null,
) {
  return { name, typname, formatted, numericPrecision: p, numericScale: s } satisfies CatalogColumn;
}

describe("cold-tier schema mapping", () => {
  it("maps each supported PostgreSQL type to its Parquet element", () => {
    const schema = parquetSchema(
      coldColumns([
        col("ts", "timestamptz", "timestamp with time zone"),
        col("local", "timestamp", "timestamp without time zone"),
        col("id", "uuid"),
        col("doc", "jsonb"),
        col("amount", "numeric", "numeric(12,3)", 12, 3),
        col("free", "numeric"),
        col("n", "int2", "smallint"),
        col("f", "float4", "real"),
        col("flag", "bool", "boolean"),
      ]),
    );
    expect(schema[0]).toMatchObject({ name: "root", num_children: 9 });
    expect(schema[1]).toMatchObject({
      name: "ts",
      type: "INT64",
      repetition_type: "OPTIONAL",
      converted_type: "TIMESTAMP_MICROS",
      logical_type: { type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MICROS" },
    });
    expect(schema[2]).toMatchObject({
      type: "INT64",
      logical_type: { isAdjustedToUTC: false, unit: "MICROS" },
    });
    expect(schema[2]!.converted_type).toBeUndefined();
    for (const i of [3, 4, 6])
      expect(schema[i]).toMatchObject({ type: "BYTE_ARRAY", converted_type: "UTF8" });
    expect(schema[5]).toMatchObject({
      type: "FIXED_LEN_BYTE_ARRAY",
      type_length: 6,
      converted_type: "DECIMAL",
      precision: 12,
      scale: 3,
    });
    expect(schema[7]).toMatchObject({ type: "INT32", converted_type: "INT_16" });
    expect(schema[8]).toMatchObject({ type: "FLOAT" });
    expect(schema[9]).toMatchObject({ type: "BOOLEAN" });
  });

  it("writes numeric as DECIMAL only when precision 1..38 and scale 0..precision; text otherwise", () => {
    expect(coldColumn(col("a", "numeric", "numeric(38,0)", 38, 0)).kind).toBe("decimal");
    expect(coldColumn(col("a", "numeric", "numeric(30,10)", 30, 10)).kind).toBe("decimal");
    expect(coldColumn(col("a", "numeric", "numeric(39,2)", 39, 2)).kind).toBe("numeric_text");
    expect(coldColumn(col("a", "numeric", "numeric(5,-2)", 5, -2)).kind).toBe("numeric_text");
    expect(coldColumn(col("a", "numeric", "numeric(2,5)", 2, 5)).kind).toBe("numeric_text");
    expect(coldColumn(col("a", "numeric")).kind).toBe("numeric_text");
  });

  it("sizes DECIMAL bytes to the precision", () => {
    expect(decimalByteWidth(1)).toBe(1);
    expect(decimalByteWidth(2)).toBe(1);
    expect(decimalByteWidth(3)).toBe(2);
    expect(decimalByteWidth(9)).toBe(4);
    expect(decimalByteWidth(18)).toBe(8);
    expect(decimalByteWidth(38)).toBe(16);
  });

  it("refuses an unsupported type with an error naming the column", () => {
    expect(() => coldColumns([col("ts", "timestamptz"), col("payload", "bytea")])).toThrow(
      UnsupportedColumnTypeError,
    );
    expect(() => coldColumn(col("where", "point"))).toThrow(/column "where" has type point/);
    expect(() => coldColumn(col("tags", "_text", "text[]"))).toThrow(/column "tags" has type text\[\]/);
  });
});

describe("cold-tier values and checksum", () => {
  const amount = coldColumn(col("amount", "numeric", "numeric(30,10)", 30, 10));

  it("reads numeric text into the unscaled DECIMAL value exactly", () => {
    expect(unscaledDecimal(amount, "-12345678901234567890.1234567890")).toBe(
      -123456789012345678901234567890n,
    );
    expect(unscaledDecimal(amount, "0.5")).toBe(5000000000n);
    expect(() => unscaledDecimal(amount, "NaN")).toThrow(/column "amount" .*no Parquet DECIMAL form/);
    expect(formatDecimal(-123456789012345678901234567890n, 10)).toBe("-12345678901234567890.1234567890");
    expect(formatDecimal(5n, 3)).toBe("0.005");
    expect(formatDecimal(0n, 0)).toBe("0");
  });

  it("converts PostgreSQL text to writer values without going through a double where it matters", () => {
    expect(writerValue(coldColumn(col("b", "int8")), "9223372036854775807")).toBe(9223372036854775807n);
    expect(writerValue(coldColumn(col("t", "timestamptz")), "-1")).toBe(-1n);
    expect(writerValue(coldColumn(col("f", "float8")), "-Infinity")).toBe(Number.NEGATIVE_INFINITY);
    expect(Object.is(writerValue(coldColumn(col("f", "float8")), "-0"), -0)).toBe(true);
    expect(writerValue(coldColumn(col("ok", "bool")), "f")).toBe(false);
    expect(writerValue(coldColumn(col("x", "text")), null)).toBeNull();
    const xid = coldColumn(col("ingest_xid", "xid8"));
    expect(writerValue(xid, "9223372036854775807")).toBe(9223372036854775807n);
    expect(() => writerValue(xid, "9223372036854775808")).toThrow(
      /column "ingest_xid" \(xid8\).*exceeds INT64/,
    );
  });

  it("hashes NULL and empty text differently, and depends on every column", () => {
    const cols = coldColumns([col("a", "text"), col("b", "int4")]);
    expect(rowHash(cols, [null, 1])).not.toBe(rowHash(cols, ["", 1]));
    expect(rowHash(cols, ["x", 1])).not.toBe(rowHash(cols, ["x", 2]));
    expect(rowHash(cols, ["ab", 1])).toBe(rowHash(cols, ["ab", 1]));
    // The closing 0x00 keeps ("a","bc") and ("ab","c") apart.
    const two = coldColumns([col("a", "text"), col("b", "text")]);
    expect(rowHash(two, ["a", "bc"])).not.toBe(rowHash(two, ["ab", "c"]));
  });

  it("gives floats their IEEE bytes, so NaN, -0 and infinities are exact", () => {
    const f8 = coldColumn(col("f", "float8"));
    expect(canonicalBytes(f8, Number.NaN).toString("hex")).toBe("7ff8000000000000");
    expect(canonicalBytes(f8, -0).toString("hex")).toBe("8000000000000000");
    expect(canonicalBytes(coldColumn(col("f", "float4")), 1).toString("hex")).toBe("3f800000");
  });

  it("builds the SQL row hash from quoted column names", () => {
    const sql = rowHashSql(coldColumns([col('we"ird', "text"), col("f", "float4")]));
    expect(sql).toContain('"we""ird"');
    expect(sql).toContain('float4send("f")');
    expect(sql).toMatch(/^\('x' \|\| left\(encode\(sha256\(/);
  });
});

describe("cold-tier writer identity", () => {
  it("names the hyparquet-writer version that is installed (files and manifests record it)", () => {
    const installed = JSON.parse(readFileSync("node_modules/hyparquet-writer/package.json", "utf8")).version;
    expect(WRITER_NAME).toBe(`hyparquet-writer ${installed}`);
  });
});
