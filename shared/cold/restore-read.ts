// Reads an exported partition's rows back for a restore, one row group at a time, in the order the
// manifest lists the files: at most one row group's values are in memory at once. The directory
// must have passed verifyExport first; this reads the same files the same way (hyparquet, exact
// microseconds, decimals as their raw bytes) and hands over each row group as text for the load.
import path from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from "hyparquet";
import type { Manifest } from "./manifest.ts";
import { loadText } from "./restore-values.ts";
import { READ_OPTIONS, rawDecimals } from "./verify.ts";

/** One row group's values as text, column by column: columns[i][r] is column i of row r. */
export interface TextRowGroup {
  file: string;
  rows: number;
  columns: (string | null)[][];
}

/** Every row group of every listed file, in order. */
export async function* readRowGroups(dir: string, manifest: Manifest): AsyncGenerator<TextRowGroup> {
  const columns = manifest.columns;
  for (const f of manifest.files) {
    const buffer = await asyncBufferFromFile(path.join(dir, f.name));
    const metadata = rawDecimals(await parquetMetadataAsync(buffer));
    let start = 0;
    for (const group of metadata.row_groups) {
      const end = start + Number(group.num_rows);
      const out: (string | null)[][] = columns.map(() => []);
      await parquetRead({
        file: buffer,
        metadata,
        rowStart: start,
        rowEnd: end,
        ...READ_OPTIONS,
        onComplete: (rows: unknown[][]) => {
          for (const row of rows) {
            columns.forEach((c, i) => {
              out[i]!.push(loadText(c, row[i]));
            });
          }
        },
      });
      yield { file: f.name, rows: end - start, columns: out };
      start = end;
    }
  }
}
