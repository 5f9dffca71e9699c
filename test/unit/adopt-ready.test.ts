// Whether a rollup source is ready for the rollups, from the facts adoption reads once per run: it
// decides which advisory locks the adoption takes, and whether it works from those facts.
import { describe, expect, it } from "vitest";
import { type AdoptionFacts, adoptionLockKeys, adoptionReady } from "../../shared/adopt/adopt.ts";
import type { IngestFacts, IngestIndexFact, IngestPartitionFact } from "../../shared/adopt/ingest-facts.ts";
import { PolicyFileSchema } from "../../shared/config/policy.ts";

const XID = { type: "xid8", default: "pg_current_xact_id()" };
const index = (over: Partial<IngestIndexFact> = {}): IngestIndexFact => ({
  name: "readings_ingest_xid_idx",
  valid: true,
  partitioned: false,
  leading: true,
  exact: true,
  attachedTo: null,
  ...over,
});
const partition = (columnDefault: string | null): IngestPartitionFact => ({
  relation: { schema: "app", name: "readings_2026_01" },
  relkind: "r",
  isDefault: false,
  indexes: [],
  childNameTaken: false,
  columnDefault,
  bound: null,
});
const ingest = (over: Partial<IngestFacts> = {}): IngestFacts => ({
  table: { schema: "app", name: "readings" },
  timeColumn: "ts",
  relkind: "r",
  timeColumnExists: true,
  column: XID,
  indexes: [index()],
  indexNameTaken: false,
  partitions: [],
  detachPending: [],
  ...over,
});
const facts = (target: AdoptionFacts["target"], over: Partial<IngestFacts> = {}): AdoptionFacts => ({
  target,
  ingest: ingest(over),
});

describe("adoptionReady", () => {
  it("a plain source with its target, ingest_xid and a valid index is ready", () => {
    expect(adoptionReady(facts("present"))).toBe(true);
  });

  it("is not ready while the target is missing", () => {
    expect(adoptionReady(facts("missing"))).toBe(false);
    expect(adoptionReady(facts("schema_missing"))).toBe(false);
  });

  it("is not ready without ingest_xid as rollups need it, or without a valid index", () => {
    expect(adoptionReady(facts("present", { column: null }))).toBe(false);
    expect(adoptionReady(facts("present", { column: { type: "bigint", default: null } }))).toBe(false);
    expect(adoptionReady(facts("present", { column: { type: "xid8", default: null } }))).toBe(false);
    expect(adoptionReady(facts("present", { indexes: [index({ valid: false })] }))).toBe(false);
    expect(adoptionReady(facts("present", { indexes: [] }))).toBe(false);
  });

  it("a partitioned source needs a valid partitioned index and every partition's default", () => {
    const partitioned = { relkind: "p", indexes: [index({ partitioned: true })] };
    expect(adoptionReady(facts("present", { ...partitioned, partitions: [partition(XID.default)] }))).toBe(
      true,
    );
    expect(adoptionReady(facts("present", { ...partitioned, partitions: [partition(null)] }))).toBe(false);
    expect(adoptionReady(facts("present", { ...partitioned, indexes: [index()] }))).toBe(false);
  });
});

describe("adoptionLockKeys", () => {
  const policy = PolicyFileSchema.parse({ tables: [{ table: "app.readings", timeColumn: "ts", rollup: {} }] })
    .tables[0]!;
  it("a ready source keeps partition-manager and retention away no longer", () => {
    expect(adoptionLockKeys(policy, true)).toEqual(["adopt:app.readings"]);
    expect(adoptionLockKeys(policy, false)).toEqual([
      "adopt:app.readings",
      "partition-manager:app.readings",
      "retention:app.readings",
    ]);
  });
});
