// The manifest: the one file that says an exported partition is complete. It is written last,
// atomically (temp file, fsync, rename, fsync of the directory), so a reader sees either no
// manifest or a whole one, and it lists the part files by name, size and sha256: nothing else in
// the directory counts. Times are kept both as exact microseconds (decimal text) and as ISO 8601.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { inProgressName, MANIFEST_FILE } from "./layout.ts";
import { COLD_KINDS } from "./schema-map.ts";

export const MANIFEST_FORMAT = 1;

const relation = z.strictObject({ schema: z.string(), name: z.string() });
const micros = z.string().regex(/^-?\d+$/);
const instant = z.strictObject({ micros, iso: z.string() });

const manifestSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  product: z.strictObject({ name: z.literal("telemetry-jobs"), version: z.string() }),
  writer: z.string(),
  table: relation,
  partition: z.strictObject({
    relation,
    keyColumn: z.string(),
    from: instant,
    to: instant,
  }),
  rows: z.string().regex(/^\d+$/),
  time: z.strictObject({ column: z.string(), min: instant.nullable(), max: instant.nullable() }),
  checksum: z.strictObject({ algorithm: z.string(), value: z.string().regex(/^-?\d+$/) }),
  columns: z.array(
    z.strictObject({
      name: z.string(),
      pgType: z.string(),
      kind: z.enum(COLD_KINDS),
      precision: z.number().int().optional(),
      scale: z.number().int().optional(),
    }),
  ),
  files: z.array(
    z.strictObject({
      name: z.string(),
      rows: z.number().int().nonnegative(),
      bytes: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
  exportedAt: z.string(),
});

export type Manifest = z.infer<typeof manifestSchema>;

/** fsync of a directory, so that renames and new entries in it survive a crash. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `_manifest.json` atomically and durably. */
export function writeManifest(dir: string, manifest: Manifest): void {
  const temp = path.join(dir, inProgressName(MANIFEST_FILE));
  const fd = openSync(temp, "w");
  try {
    writeSync(fd, `${JSON.stringify(manifest, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path.join(dir, MANIFEST_FILE));
  fsyncDirectory(dir);
}

export type ManifestRead =
  | { state: "ok"; manifest: Manifest }
  | { state: "missing" }
  | { state: "invalid"; reason: string };

/** Reads and checks the manifest's shape; a torn or hand-edited file is "invalid", not an exception. */
export function readManifest(dir: string): ManifestRead {
  let text: string;
  try {
    text = readFileSync(path.join(dir, MANIFEST_FILE), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { state: "missing" };
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { state: "invalid", reason: `not JSON: ${(error as Error).message}` };
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return { state: "invalid", reason: `${issue.path.join(".") || "(root)"}: ${issue.message}` };
  }
  return { state: "ok", manifest: parsed.data };
}
