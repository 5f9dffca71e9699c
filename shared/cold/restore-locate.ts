// Finds an exported partition under the cold-tier root for a restore: by the partition's start
// (the directory layout.ts derives from it) or by the partition name its manifest records.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import type { TablePolicy } from "../config/policy.ts";
import type { Relation } from "../db/relation.ts";
import { partitionDirectory, tableDirectoryName } from "./layout.ts";
import { readManifest } from "./manifest.ts";

/** Where to look for a table's exports: --root when given, else the retention policy's export.to. */
export function exportRootOf(policy: TablePolicy, rootFlag: string | undefined): string | undefined {
  return rootFlag ?? policy.retention?.export?.to;
}

export type Located = { found: true; dir: string } | { found: false; reason: string };

/** The directory of the export of `table`'s partition starting at `from`. */
export function locateByStart(root: string, table: Relation, keyColumn: string, from: Date): Located {
  const dir = partitionDirectory(root, { table, keyColumn, startMicros: BigInt(from.getTime()) * 1000n });
  return existsSync(dir)
    ? { found: true, dir }
    : { found: false, reason: `no export of the partition starting ${from.toISOString()} (${dir})` };
}

/** The directory whose manifest names the partition `name` (only complete exports have one). */
export function locateByName(root: string, table: Relation, name: string): Located {
  const tableDir = path.join(path.resolve(root), tableDirectoryName(table));
  const entries = existsSync(tableDir) ? readdirSync(tableDir, { withFileTypes: true }) : [];
  const seen: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const dir = path.join(tableDir, entry.name);
    const read = readManifest(dir);
    if (read.state !== "ok") continue;
    if (read.manifest.partition.relation.name === name) return { found: true, dir };
    seen.push(read.manifest.partition.relation.name);
  }
  const known = seen.length === 0 ? "none" : seen.sort().join(", ");
  return {
    found: false,
    reason: `no export of a partition named ${name} under ${tableDir} (exported partitions: ${known})`,
  };
}
