// One Parquet part file, written row group by row group: rows are buffered column by column until
// the group is full (by rows or by approximate bytes), then encoded, compressed (zstd) and written,
// and the buffer is dropped. So memory holds at most one row group, whatever the partition's size.
// The file is written under an in-progress name and only renamed to part-NNNNN.parquet once it is
// complete and fsynced: a killed export leaves no file that looks finished.
import { createHash } from "node:crypto";
import { closeSync, createReadStream, fsyncSync, openSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { constants, zstdCompressSync } from "node:zlib";
import { fileWriter, ParquetWriter } from "hyparquet-writer";
import { inProgressName, partFileName } from "./layout.ts";
import { type ColdColumn, parquetSchema } from "./schema-map.ts";
import { approximateBytes, writerValue } from "./values.ts";

export interface RowGroupLimits {
  /** Rows per row group (the group closes at whichever limit comes first). */
  rows: number;
  /** Approximate in-memory bytes of the buffered values. */
  bytes: number;
}

export interface WrittenPart {
  name: string;
  rows: number;
  bytes: number;
  sha256: string;
}

export interface PartWriterOptions {
  dir: string;
  index: number;
  columns: readonly ColdColumn[];
  limits: RowGroupLimits;
  zstdLevel: number;
  createdBy: string;
  /** Called after each row group is written, with the number of rows it held. */
  onRowGroup?: (rows: number) => void;
}

export class PartWriter {
  readonly name: string;
  private readonly tempPath: string;
  private readonly writer: ParquetWriter;
  private buffer: unknown[][];
  private bufferedBytes = 0;
  private rowsWritten = 0;
  /** The most rows ever buffered at once: at most limits.rows, which tests check. */
  maxBufferedRows = 0;

  constructor(private readonly options: PartWriterOptions) {
    this.name = partFileName(options.index);
    this.tempPath = path.join(options.dir, inProgressName(this.name));
    this.buffer = options.columns.map(() => []);
    const level = options.zstdLevel;
    this.writer = new ParquetWriter({
      writer: fileWriter(this.tempPath),
      schema: parquetSchema(options.columns),
      codec: "ZSTD",
      compressors: {
        ZSTD: (input: Uint8Array) =>
          zstdCompressSync(input, { params: { [constants.ZSTD_c_compressionLevel]: level } }),
      },
      createdBy: options.createdBy,
    });
  }

  get bufferedRows(): number {
    return this.buffer[0]?.length ?? 0;
  }

  get rows(): number {
    return this.rowsWritten + this.bufferedRows;
  }

  /** Adds one row of PostgreSQL text values (table order); writes a row group when one is full. */
  add(row: readonly (string | null)[]): void {
    const { columns, limits } = this.options;
    for (let i = 0; i < columns.length; i++) {
      const text = row[i] ?? null;
      this.buffer[i]!.push(writerValue(columns[i]!, text));
      this.bufferedBytes += approximateBytes(text);
    }
    this.maxBufferedRows = Math.max(this.maxBufferedRows, this.bufferedRows);
    if (this.bufferedRows >= limits.rows || this.bufferedBytes >= limits.bytes) this.writeRowGroup();
  }

  private writeRowGroup(): void {
    const rows = this.bufferedRows;
    if (rows === 0) return;
    const columnData = this.options.columns.map((c, i) => ({ name: c.name, data: this.buffer[i]! }));
    // The writer is synchronous with the file writer (no flush promise), so nothing is pending.
    void this.writer.write({ columnData, rowGroupSize: rows });
    this.rowsWritten += rows;
    this.buffer = this.options.columns.map(() => []);
    this.bufferedBytes = 0;
    this.options.onRowGroup?.(rows);
  }

  /** Writes the last group and the footer, fsyncs, renames to the final name; returns the part. */
  async finish(): Promise<WrittenPart> {
    this.writeRowGroup();
    void this.writer.finish();
    const fd = openSync(this.tempPath, "r+");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const finalPath = path.join(this.options.dir, this.name);
    renameSync(this.tempPath, finalPath);
    return {
      name: this.name,
      rows: this.rowsWritten,
      bytes: statSync(finalPath).size,
      sha256: await fileSha256(finalPath),
    };
  }
}

/** The file's sha256 (hex), read as a stream. */
export async function fileSha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
