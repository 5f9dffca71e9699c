// The design stored with a conversion is checked when a run reads it back: what prepare stores
// passes unchanged; anything else fails naming the conversion row and the fields that do not match.
import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import { design } from "../../shared/convert/design.ts";
import { readStoredDesign, StoredDesignError } from "../../shared/convert/design-schema.ts";
import type { TableFacts } from "../../shared/convert/facts.ts";

const utc = (s: string) => new Date(s);
const policy = TablePolicySchema.parse({ table: "ew.points", timeColumn: "ts", premake: 1, rollup: {} });
const column = (name: string, type: string, identity: "" | "a" = "") => ({
  name,
  type,
  notNull: true,
  identity,
  identitySequence: identity ? '"ew"."points_id_seq"' : null,
  defaultExpr: null,
  generated: false,
  hasColumnGrants: false,
});
const facts: TableFacts = {
  table: { schema: "ew", name: "points" },
  exists: true,
  relkind: "r",
  isPartition: false,
  inheritance: false,
  persistence: "p",
  owner: "app",
  comment: "raw points",
  replicaIdentity: "d",
  rowSecurity: false,
  rowEstimate: 10,
  totalBytes: 8192,
  columns: [
    column("id", "bigint", "a"),
    column("device_id", "text"),
    column("ts", "timestamp with time zone"),
  ],
  constraints: [
    {
      name: "points_pkey",
      type: "p",
      columns: ["id"],
      definition: "PRIMARY KEY (id)",
      validated: true,
      noInherit: false,
      indexName: "points_pkey",
    },
  ],
  indexes: [],
  incomingForeignKeys: [],
  dependentViews: [],
  triggers: [],
  changeTriggers: [],
  rules: [],
  publications: [],
  ownedSequences: [],
  grants: [{ grantee: "reader", privilege: "SELECT", grantable: false }],
  minTime: utc("2026-01-01T00:00:00Z"),
  maxTime: utc("2026-11-10T00:00:00Z"),
  rowsAtOrAfterBoundary: 0,
};
const d = design(facts, {
  policy,
  now: utc("2026-11-10T12:00:00Z"),
  boundary: utc("2026-12-01T00:00:00Z"),
  dropUnique: [],
});
/** The design as the jsonb column gives it back. */
const stored = (): Record<string, unknown> => JSON.parse(JSON.stringify(d));
const row = (plan: unknown) => ({ phase: "prepared", plan });

function failure(plan: unknown): StoredDesignError {
  try {
    readStoredDesign("ew.points", row(plan));
  } catch (error) {
    if (error instanceof StoredDesignError) return error;
    throw error;
  }
  throw new Error("the design was accepted");
}

describe("readStoredDesign", () => {
  it("gives back what prepare stored, unchanged", () => {
    expect(d.identity).not.toBeNull();
    expect(d.partitions.length).toBeGreaterThan(0);
    expect(readStoredDesign("ew.points", row(stored()))).toEqual(d);
  });

  it("fails naming the row, its phase and each field that does not match", () => {
    const noNames = stored();
    delete noNames.names;
    const e = failure(noNames);
    expect(e.message).toContain("the telemetry_jobs.conversions row of ew.points (phase prepared)");
    expect(e.message).toMatch(/\(names: [^;)]+\)/);
    expect(e.message).toContain("nothing was changed");

    const several = { ...stored(), version: 3, keyType: "date", boundary: "December" };
    const m = failure(several).message;
    for (const field of ["version", "keyType", "boundary"]) expect(m).toContain(`${field}: `);

    const badPartition = stored();
    (badPartition.partitions as { to: string }[])[0]!.to = "soon";
    expect(failure(badPartition).message).toContain("partitions.0.to: ");
  });

  it("a version 1 design from before constraintDef and identity.indexed reads as its release meant", () => {
    const plan = stored();
    const parentIndexes = plan.parentIndexes as Record<string, unknown>[];
    expect(parentIndexes.length).toBeGreaterThan(0);
    expect((plan.identity as { indexed: boolean }).indexed).toBe(false);
    for (const i of parentIndexes) delete i.constraintDef;
    delete (plan.identity as Record<string, unknown>).indexed;
    const read = readStoredDesign("ew.points", row({ ...plan, version: 1 }));
    // The keys rebuilt from their columns, max(id) always read: what the writing release did.
    expect(read).toEqual({
      ...d,
      parentIndexes: d.parentIndexes.map((i) => ({ ...i, constraintDef: null })),
      identity: { ...d.identity, indexed: true },
    });
    // A version 1 design with every field keeps them.
    expect(readStoredDesign("ew.points", row({ ...stored(), version: 1 }))).toEqual(d);
  });

  it("the current version requires every field: a missing one is an edit, not an old design", () => {
    const plan = stored();
    delete (plan.parentIndexes as Record<string, unknown>[])[0]!.constraintDef;
    expect(failure(plan).message).toContain("parentIndexes.0.constraintDef: ");
  });

  it("a plan that is not a design at all", () => {
    for (const plan of [null, "{}", [], 1]) expect(failure(plan).message).toContain("the design: ");
  });
});
