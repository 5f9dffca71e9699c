// The conversion design as prepare stores it in telemetry_jobs.conversions.plan, checked when a
// later run reads it back: swap, revert and finalize build their SQL from it, so a row edited by
// hand or written by a telemetry-jobs whose design differs is reported, naming the row, instead of
// being used as if it matched.
import { z } from "zod";
import type { ConversionDesign } from "./design.ts";

const names = z.object({
  parent: z.string(),
  history: z.string(),
  newKeyIndex: z.string(),
  oldKeyIndex: z.string(),
  ingestIndex: z.string(),
});

const parentIndex = z.object({
  original: z.string(),
  temporary: z.string(),
  history: z.string(),
  body: z.string(),
  unique: z.boolean(),
  constraint: z.enum(["p", "u"]).nullable(),
  constraintDef: z.string().nullable(),
  columns: z.array(z.string()),
  replacesKey: z.boolean(),
});

/** Typed as ConversionDesign: a field the design gains and this schema lacks does not compile. */
export const ConversionDesignSchema: z.ZodType<ConversionDesign> = z.object({
  version: z.literal(1),
  schema: z.string(),
  table: z.string(),
  timeColumn: z.string(),
  keyType: z.enum(["timestamptz", "timestamp"]),
  boundary: z.iso.datetime(),
  names,
  primaryKey: z
    .object({
      name: z.string(),
      columns: z.array(z.string()),
      newColumns: z.array(z.string()),
      changes: z.boolean(),
    })
    .nullable(),
  identity: z.object({ column: z.string(), kind: z.enum(["a", "d"]), indexed: z.boolean() }).nullable(),
  ownedSequences: z.array(z.object({ sequence: z.string(), column: z.string() })),
  parentIndexes: z.array(parentIndex),
  keptOnHistory: z.array(z.object({ name: z.string(), isConstraint: z.boolean() })),
  foreignKeys: z.array(z.object({ name: z.string(), definition: z.string() })),
  grants: z.array(z.object({ grantee: z.string(), privilege: z.string(), grantable: z.boolean() })),
  owner: z.string(),
  comment: z.string().nullable(),
  partitions: z.array(z.object({ name: z.string(), from: z.iso.datetime(), to: z.iso.datetime() })),
  defaultPartition: z.string().nullable(),
  columns: z.array(z.string()),
  addIngestColumn: z.boolean(),
  buildIngestIndex: z.boolean(),
});

/** The stored design did not match: no phase can build its SQL from it. */
export class StoredDesignError extends Error {
  override readonly name = "StoredDesignError";
}

/**
 * The design stored with the conversion row of `tableKey` (its table_name), checked. Throws
 * StoredDesignError naming the row and the first fields that do not match.
 */
export function readStoredDesign(tableKey: string, row: { phase: string; plan: unknown }): ConversionDesign {
  const parsed = ConversionDesignSchema.safeParse(row.plan);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join(".") || "the design"}: ${i.message}`)
    .join("; ");
  throw new StoredDesignError(
    `the telemetry_jobs.conversions row of ${tableKey} (phase ${row.phase}) holds a design this version of telemetry-jobs cannot use (${issues}); nothing was changed. ` +
      "The column plan is what prepare stored: restore it, or run the version of telemetry-jobs that wrote it",
  );
}
