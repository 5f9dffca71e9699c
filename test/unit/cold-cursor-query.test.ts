// The export's cursor query builds each column's canonical text once and both sends it and hashes
// it: the row hash must not render a column a second time (that doubled the server's work).
import { describe, expect, it } from "vitest";
import { type ColdColumn, coldColumns } from "../../shared/cold/schema-map.ts";
import { rowCursorQuery } from "../../shared/cold/source.ts";

const columns: ColdColumn[] = coldColumns(
  [
    ["id", "uuid"],
    ["ts", "timestamptz"],
    ["local", "timestamp"],
    ["metrics", "jsonb"],
    ["f", "float8"],
    ["ok", "bool"],
  ].map(([name, typname]) => ({
    name: name!,
    typname: typname!,
    formatted: typname!,
    numericPrecision: null,
    numericScale: null,
  })),
);
const child = { schema: "s", name: 'we"ird' };

function count(text: string, piece: string): number {
  return text.split(piece).length - 1;
}

describe("rowCursorQuery", () => {
  const sql = rowCursorQuery(child, columns);

  it("renders each column's text once, in a subquery kept apart by OFFSET 0", () => {
    expect(count(sql, '"id"::text')).toBe(1);
    expect(count(sql, 'extract(epoch from "ts")')).toBe(1);
    expect(count(sql, 'extract(epoch from "local")')).toBe(1);
    expect(count(sql, '"metrics"::text')).toBe(1);
    expect(sql).toContain('FROM ONLY "s"."we""ird" OFFSET 0) AS r');
  });

  it("hashes the rendered text, floats in binary and booleans as their text", () => {
    expect(sql).toContain("convert_to(c0, 'UTF8')");
    expect(sql).toContain("convert_to(c3, 'UTF8')");
    expect(sql).toContain("float8send(c4)");
    expect(sql).toContain("convert_to(c5::text, 'UTF8')");
  });

  it("sends the columns in table order, then the hash", () => {
    expect(sql).toMatch(/^SELECT c0, c1, c2, c3, c4, c5, \('x' \|\| left\(encode\(sha256\(/);
  });
});
