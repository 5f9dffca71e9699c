// The conversion design as prepare stores it in telemetry_jobs.conversions.plan, checked when a
// later run reads it back: swap, revert and finalize build their SQL from it, so a row edited by
// hand or written by a telemetry-jobs whose design differs is reported, naming the row, instead of
// being used as if it matched.
//
// A conversion prepared by one release may be swapped, reverted or finalized by the next, so a
// design written by an earlier release must stay readable. The rule: a release that changes the
// design's shape (adds, removes or changes the meaning of a field) raises DESIGN_VERSION, and this
// file keeps reading every earlier version, giving each missing field what the release that wrote
// it did without it. Version 1 was written with three shapes, because two fields were added
// without raising it: parentIndexes[].constraintDef and identity.indexed may be absent from it.
// Version 2 is the latest of those shapes with every field required: a version 2 design that
// lacks one was edited, and is refused rather than given a default.
import { z } from "zod";
import { type ConversionDesign, DESIGN_VERSION } from "./design.ts";

const names = z.object({
  parent: z.string(),
  history: z.string(),
  newKeyIndex: z.string(),
  oldKeyIndex: z.string(),
  ingestIndex: z.string(),
});

const parentIndexFields = {
  original: z.string(),
  temporary: z.string(),
  history: z.string(),
  body: z.string(),
  unique: z.boolean(),
  constraint: z.enum(["p", "u"]).nullable(),
  constraintDef: z.string().nullable(),
  columns: z.array(z.string()),
  replacesKey: z.boolean(),
};

const identityFields = { column: z.string(), kind: z.enum(["a", "d"]), indexed: z.boolean() };

/** The design's fields, with the parent indexes and identity of one version's shape. */
function designFields(
  parentIndex: z.ZodType<ConversionDesign["parentIndexes"][number]>,
  identity: z.ZodType<NonNullable<ConversionDesign["identity"]>>,
) {
  return {
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
    identity: identity.nullable(),
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
  };
}

/**
 * The design this release writes. Typed as ConversionDesign: a field the design gains and this
 * schema lacks does not compile.
 */
export const ConversionDesignSchema: z.ZodType<ConversionDesign> = z.object({
  version: z.literal(DESIGN_VERSION),
  ...designFields(z.object(parentIndexFields), z.object(identityFields)),
});

/**
 * Version 1, read as the current design. Without constraintDef the parent's keys were added from
 * their columns alone (PRIMARY KEY (...), UNIQUE (...)), which is what a null constraintDef does.
 * Without identity.indexed the swap and revert always read max(column) to continue the identity
 * past ids inserted with explicit values: indexed true does the same.
 */
const DesignV1Schema: z.ZodType<ConversionDesign, unknown> = z
  .object({
    version: z.literal(1),
    ...designFields(
      z.object({ ...parentIndexFields, constraintDef: z.string().nullable().default(null) }),
      z.object({ ...identityFields, indexed: z.boolean().default(true) }),
    ),
  })
  .transform((d) => ({ ...d, version: DESIGN_VERSION }));

/** The stored design did not match: no phase can build its SQL from it. */
export class StoredDesignError extends Error {
  override readonly name = "StoredDesignError";
}

/**
 * The design stored with the conversion row of `tableKey` (its table_name), checked. Throws
 * StoredDesignError naming the row and the first fields that do not match.
 */
export function readStoredDesign(tableKey: string, row: { phase: string; plan: unknown }): ConversionDesign {
  const version =
    typeof row.plan === "object" && row.plan !== null
      ? (row.plan as { version?: unknown }).version
      : undefined;
  const schema = version === 1 ? DesignV1Schema : ConversionDesignSchema;
  const parsed = schema.safeParse(row.plan);
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
