// The verifier's row hash writes each row into one reused buffer. Checked against an oracle that
// builds the same bytes the plain way, one Buffer per piece, for random rows of every kind the hash
// treats differently: multi-byte and astral text, values longer than the buffer's first size,
// floats' special values, decimals, NULLs anywhere.
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatDecimal, rowHash } from "../../shared/cold/checksum.ts";
import { type ColdColumn, coldColumn } from "../../shared/cold/schema-map.ts";

const column = (
  name: string,
  typname: string,
  precision: number | null = null,
  scale: number | null = null,
) => coldColumn({ name, typname, formatted: typname, numericPrecision: precision, numericScale: scale });

const COLUMNS: ColdColumn[] = [
  column("t", "text"),
  column("f8", "float8"),
  column("f4", "float4"),
  column("n", "numeric", 20, 4),
  column("i", "int8"),
  column("ts", "timestamptz"),
  column("b", "bool"),
  column("j", "jsonb"),
];

/** Two's-complement big-endian bytes of `value`, `width` bytes wide, as Parquet DECIMAL holds it. */
function twosComplement(value: bigint, width: number): Uint8Array {
  const bytes = new Uint8Array(width);
  let v = BigInt.asUintN(width * 8, value);
  for (let i = width - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return bytes;
}

/** The canonical bytes of one non-NULL value; a decimal is given as its unscaled bigint. */
function canonical(c: ColdColumn, v: unknown): Buffer {
  if (c.kind === "float64" || c.kind === "float32") {
    const b = Buffer.alloc(c.kind === "float64" ? 8 : 4);
    if (c.kind === "float64") b.writeDoubleBE(v as number);
    else b.writeFloatBE(v as number);
    return b;
  }
  const text = c.kind === "decimal" ? formatDecimal(v as bigint, c.scale!) : String(v);
  return Buffer.concat([Buffer.from(text, "utf8"), Buffer.from([0])]);
}

/** The row hash built the plain way; `row` holds decimals as unscaled bigints. */
function oracle(row: readonly unknown[]): bigint {
  const pieces = COLUMNS.map((c, i) =>
    row[i] === null ? Buffer.from([0]) : Buffer.concat([Buffer.from([1]), canonical(c, row[i])]),
  );
  return createHash("sha256").update(Buffer.concat(pieces)).digest().readBigInt64BE(0);
}

const nullable = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: null, freq: 4 });
const anyText = fc.oneof(fc.string({ unit: "grapheme" }), fc.string({ unit: "binary", maxLength: 3000 }));

describe("rowHash", () => {
  it("equals sha256 over the row's canonical bytes, built piece by piece", () => {
    fc.assert(
      fc.property(
        nullable(anyText),
        nullable(fc.double()),
        nullable(fc.float()),
        nullable(fc.bigInt({ min: -(10n ** 19n), max: 10n ** 19n })),
        nullable(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
        nullable(fc.bigInt({ min: -(2n ** 63n) + 1n, max: 2n ** 63n - 1n })),
        nullable(fc.boolean()),
        nullable(anyText),
        (t, f8, f4, unscaled, i, ts, b, j) => {
          const decimal = unscaled === null ? null : twosComplement(unscaled, 9);
          expect(rowHash(COLUMNS, [t, f8, f4, decimal, i, ts, b, j])).toBe(
            oracle([t, f8, f4, unscaled, i, ts, b, j]),
          );
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("grows its buffer for text of 4-byte characters longer than the buffer", () => {
    const wide = "\u{1F600}".repeat(1500); // 3,000 UTF-16 code units, 6,000 UTF-8 bytes
    const row = [wide, null, null, null, null, null, null, wide];
    expect(rowHash(COLUMNS, row)).toBe(oracle(row));
  });

  it("hashes text given as its UTF-8 bytes (verification reads Parquet strings undecoded) as the text", () => {
    fc.assert(
      fc.property(nullable(anyText), nullable(anyText), (t, j) => {
        const bytes = (v: string | null) => (v === null ? null : new TextEncoder().encode(v));
        const row = [t, 1.5, null, null, 7n, 0n, true, j];
        expect(rowHash(COLUMNS, [bytes(t), 1.5, null, null, 7n, 0n, true, bytes(j)])).toBe(oracle(row));
      }),
      { numRuns: 500 },
    );
  });
});
