// The pure planner that adds rollup change-tracking to an existing table: from every state a run can
// find (nothing yet, a run killed half way, someone's hand-made pieces, all done) it plans exactly
// what is missing, in an order PostgreSQL accepts, or refuses before changing anything.
import { describe, expect, it } from "vitest";
import { describeIngestAction } from "../../shared/adopt/ingest-actions.ts";
import type { IngestFacts, IngestIndexFact, IngestPartitionFact } from "../../shared/adopt/ingest-facts.ts";
import { planIngestTracking } from "../../shared/adopt/ingest-plan.ts";

const T = { schema: "app", name: "readings" };
const XID = { type: "xid8", default: "pg_current_xact_id()" };

function idx(name: string, over: Partial<IngestIndexFact> = {}): IngestIndexFact {
  return { name, valid: true, partitioned: false, leading: true, exact: true, attachedTo: null, ...over };
}

function part(
  name: string,
  indexes: IngestIndexFact[] = [],
  over: Partial<IngestPartitionFact> = {},
): IngestPartitionFact {
  return {
    relation: { schema: "app", name },
    relkind: "r",
    isDefault: false,
    indexes,
    childNameTaken: false,
    columnDefault: "pg_current_xact_id()",
    bound: "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
    ...over,
  };
}

function facts(over: Partial<IngestFacts> = {}): IngestFacts {
  return {
    table: T,
    timeColumn: "ts",
    relkind: "r",
    timeColumnExists: true,
    column: null,
    indexes: [],
    indexNameTaken: false,
    partitions: [],
    detachPending: [],
    ...over,
  };
}

const kinds = (f: IngestFacts) => {
  const p = planIngestTracking(f);
  expect(p.refusal).toBeUndefined();
  return p.actions.map((a) => a.kind);
};

describe("plain table", () => {
  it("nothing there: column, then a concurrent index build", () => {
    const p = planIngestTracking(facts());
    expect(p.actions.map(describeIngestAction)).toEqual([
      "ALTER TABLE app.readings ADD COLUMN ingest_xid xid8; ALTER TABLE app.readings ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()",
      "CREATE INDEX CONCURRENTLY readings_ingest_xid_idx ON app.readings (ingest_xid, ts)",
    ]);
  });

  it("column only: just the index", () => {
    expect(kinds(facts({ column: XID }))).toEqual(["build_index_concurrently"]);
  });

  it("xid8 column without its default: set the default only, never add the column again", () => {
    const p = planIngestTracking(facts({ column: { type: "xid8", default: null } }));
    expect(p.actions.map((a) => a.kind)).toEqual(["set_default", "build_index_concurrently"]);
    expect(describeIngestAction(p.actions[0]!)).toBe(
      "ALTER TABLE app.readings ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()",
    );
  });

  it("a column of another type: refused, naming the column, its type and what to do", () => {
    const p = planIngestTracking(facts({ column: { type: "bigint", default: null } }));
    expect(p.actions).toEqual([]);
    expect(p.refusal).toMatch(/ingest_xid of type bigint, not xid8/);
    expect(p.refusal).toMatch(/RENAME COLUMN/);
  });

  it("an xid8 column with some other default: refused (new rows would not carry their transaction)", () => {
    const p = planIngestTracking(facts({ column: { type: "xid8", default: "'0'::xid8" } }));
    expect(p.actions).toEqual([]);
    expect(p.refusal).toMatch(/has the default '0'::xid8/);
  });

  it("a valid index leading with (ingest_xid, ts) under any name: nothing to do", () => {
    expect(kinds(facts({ column: XID, indexes: [idx("theirs", { exact: false })] }))).toEqual([]);
  });

  it("an invalid leftover of ours: dropped concurrently, then rebuilt", () => {
    const p = planIngestTracking(
      facts({ column: XID, indexes: [idx("readings_ingest_xid_idx", { valid: false })] }),
    );
    expect(p.actions.map(describeIngestAction)).toEqual([
      "DROP INDEX CONCURRENTLY IF EXISTS app.readings_ingest_xid_idx",
      "CREATE INDEX CONCURRENTLY readings_ingest_xid_idx ON app.readings (ingest_xid, ts)",
    ]);
  });

  it("our index name held by something else: refused, nothing dropped", () => {
    const p = planIngestTracking(
      facts({ column: XID, indexes: [idx("readings_ingest_xid_idx", { leading: false })] }),
    );
    expect(p.refusal).toMatch(/not an index on/);
    expect(planIngestTracking(facts({ column: XID, indexNameTaken: true })).refusal).toMatch(/already used/);
  });

  it("an invalid index of someone else's is neither used nor dropped", () => {
    expect(kinds(facts({ column: XID, indexes: [idx("theirs", { valid: false })] }))).toEqual([
      "build_index_concurrently",
    ]);
  });

  it("missing table, missing time column, a view: refused", () => {
    expect(planIngestTracking(facts({ relkind: undefined })).refusal).toMatch(/does not exist/);
    expect(planIngestTracking(facts({ timeColumnExists: false })).refusal).toMatch(/no column ts/);
    expect(planIngestTracking(facts({ relkind: "v" })).refusal).toMatch(/relkind 'v'/);
  });
});

describe("partitioned table", () => {
  const P = "readings_ingest_xid_idx";
  const parts = ["readings_p1", "readings_p2", "readings_default"];
  const pf = (over: Partial<IngestFacts> = {}) =>
    facts({
      relkind: "p",
      column: XID,
      partitions: parts.map((n) => part(n, [], { isDefault: n.endsWith("default") })),
      ...over,
    });

  it("no parent index: ON ONLY parent, then per partition (DEFAULT too) build and attach", () => {
    const p = planIngestTracking(pf({ column: null }));
    expect(p.actions.map(describeIngestAction)).toEqual([
      "ALTER TABLE app.readings ADD COLUMN ingest_xid xid8; ALTER TABLE app.readings ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()",
      "CREATE INDEX IF NOT EXISTS readings_ingest_xid_idx ON ONLY app.readings (ingest_xid, ts)",
      "CREATE INDEX CONCURRENTLY readings_p1_ingest_xid_idx ON app.readings_p1 (ingest_xid, ts)",
      "ALTER INDEX app.readings_ingest_xid_idx ATTACH PARTITION app.readings_p1_ingest_xid_idx",
      "CREATE INDEX CONCURRENTLY readings_p2_ingest_xid_idx ON app.readings_p2 (ingest_xid, ts)",
      "ALTER INDEX app.readings_ingest_xid_idx ATTACH PARTITION app.readings_p2_ingest_xid_idx",
      "CREATE INDEX CONCURRENTLY readings_default_ingest_xid_idx ON app.readings_default (ingest_xid, ts)",
      "ALTER INDEX app.readings_ingest_xid_idx ATTACH PARTITION app.readings_default_ingest_xid_idx",
    ]);
    const steps = p.actions.flatMap((a) => (a.kind === "build_index_concurrently" ? [a.step] : []));
    expect(steps).toEqual([
      { n: 1, of: 3 },
      { n: 2, of: 3 },
      { n: 3, of: 3 },
    ]);
  });

  it("no partitions at all: the ON ONLY index alone (PostgreSQL marks it valid at once)", () => {
    expect(kinds(pf({ partitions: [] }))).toEqual(["create_parent_index"]);
  });

  it("parent index and some partitions attached: only the rest", () => {
    const p = planIngestTracking(
      pf({
        indexes: [idx(P, { partitioned: true, valid: false })],
        partitions: [
          part("readings_p1", [idx("readings_p1_ingest_xid_idx", { attachedTo: P })]),
          part("readings_p2", [idx("readings_p2_x_ts_idx", { attachedTo: P })]), // made by PARTITION OF
          part("readings_default"),
        ],
      }),
    );
    expect(p.actions.map(describeIngestAction)).toEqual([
      "CREATE INDEX CONCURRENTLY readings_default_ingest_xid_idx ON app.readings_default (ingest_xid, ts)",
      "ALTER INDEX app.readings_ingest_xid_idx ATTACH PARTITION app.readings_default_ingest_xid_idx",
    ]);
  });

  it("a partition with a valid matching unattached index: attach that, build nothing", () => {
    const p = planIngestTracking(
      pf({
        indexes: [idx(P, { partitioned: true, valid: false })],
        partitions: [
          part("readings_p1", [idx("hand_made", {})]),
          part("readings_p2", [idx("wider", { exact: false })]),
        ],
      }),
    );
    expect(p.actions.map(describeIngestAction)).toEqual([
      "ALTER INDEX app.readings_ingest_xid_idx ATTACH PARTITION app.hand_made",
      "CREATE INDEX CONCURRENTLY readings_p2_ingest_xid_idx ON app.readings_p2 (ingest_xid, ts)",
      "ALTER INDEX app.readings_ingest_xid_idx ATTACH PARTITION app.readings_p2_ingest_xid_idx",
    ]);
  });

  it("an invalid child leftover (killed concurrent build): dropped, rebuilt, attached", () => {
    const p = planIngestTracking(
      pf({
        indexes: [idx(P, { partitioned: true, valid: false })],
        partitions: [part("readings_p1", [idx("readings_p1_ingest_xid_idx", { valid: false })])],
      }),
    );
    expect(p.actions.map((a) => a.kind)).toEqual([
      "drop_invalid_index",
      "build_index_concurrently",
      "attach_index",
    ]);
    expect(describeIngestAction(p.actions[0]!)).toBe(
      "DROP INDEX CONCURRENTLY IF EXISTS app.readings_p1_ingest_xid_idx",
    );
  });

  it("a valid index of ours that is attached elsewhere, or a clashing name: refused", () => {
    const clash = pf({
      indexes: [idx(P, { partitioned: true, valid: false })],
      partitions: [part("readings_p1", [idx("readings_p1_ingest_xid_idx", { exact: false })])],
    });
    expect(planIngestTracking(clash).refusal).toMatch(/cannot be attached/);
    const taken = pf({ partitions: [part("readings_p1", [], { childNameTaken: true })] });
    expect(planIngestTracking(taken).refusal).toMatch(/already used/);
  });

  it("an invalid partitioned index of our shape under another name is finished, not duplicated", () => {
    const p = planIngestTracking(
      pf({
        indexes: [idx("by_hand", { partitioned: true, valid: false })],
        partitions: [part("readings_p1")],
      }),
    );
    expect(p.actions.map(describeIngestAction)).toEqual([
      "CREATE INDEX CONCURRENTLY readings_p1_ingest_xid_idx ON app.readings_p1 (ingest_xid, ts)",
      "ALTER INDEX app.by_hand ATTACH PARTITION app.readings_p1_ingest_xid_idx",
    ]);
  });

  it("multi-level partitioning: refused before anything, the column included", () => {
    const p = planIngestTracking(
      pf({ column: null, partitions: [part("readings_p1"), part("readings_sub", [], { relkind: "p" })] }),
    );
    expect(p.actions).toEqual([]);
    expect(p.refusal).toMatch(/multi-level partitioning is not supported/);
    expect(p.refusal).toContain("app.readings_sub");
  });

  it("a foreign partition: refused", () => {
    expect(planIngestTracking(pf({ partitions: [part("remote", [], { relkind: "f" })] })).refusal).toMatch(
      /relkind 'f'/,
    );
  });

  it("all done (a valid partitioned index): no actions", () => {
    expect(
      kinds(
        pf({
          indexes: [idx(P, { partitioned: true })],
          partitions: parts.map((n) => part(n, [idx(`${n}_ingest_xid_idx`, { attachedTo: P })])),
        }),
      ),
    ).toEqual([]);
  });

  it("every partition attached but the parent still invalid: re-attach one so PostgreSQL re-checks it", () => {
    const p = planIngestTracking(
      pf({
        indexes: [idx(P, { partitioned: true, valid: false })],
        partitions: [part("readings_p1", [idx("readings_p1_ingest_xid_idx", { attachedTo: P })])],
      }),
    );
    expect(p.actions).toEqual([
      {
        kind: "attach_index",
        parentIndex: { schema: "app", name: P },
        childIndex: { schema: "app", name: "readings_p1_ingest_xid_idx" },
        partition: { schema: "app", name: "readings_p1" },
        revalidate: true,
      },
    ]);
  });

  it("hostile names are quoted part by part in the statements, and derived names fit 63 bytes", () => {
    const odd = { schema: "public", name: 'Odd.Name "x"' };
    const long = "p".repeat(60);
    const p = planIngestTracking(
      facts({
        table: odd,
        relkind: "p",
        column: XID,
        timeColumn: "Time Col",
        partitions: [part(long, [], { relation: { schema: "Other S", name: long } })],
      }),
    );
    const text = p.actions.map(describeIngestAction);
    expect(text[0]).toBe(
      'CREATE INDEX IF NOT EXISTS "Odd.Name ""x""_ingest_xid_idx" ON ONLY public."Odd.Name ""x""" (ingest_xid, "Time Col")',
    );
    const build = p.actions[1]!;
    expect(build.kind).toBe("build_index_concurrently");
    if (build.kind === "build_index_concurrently") {
      expect(Buffer.byteLength(build.index)).toBeLessThanOrEqual(63);
      expect(build.on).toEqual({ schema: "Other S", name: long });
    }
    expect(text[2]).toMatch(
      /^ALTER INDEX public\."Odd\.Name ""x""_ingest_xid_idx" ATTACH PARTITION "Other S"\./,
    );
  });
});

describe("partitions' own ingest_xid default", () => {
  const P = "readings_ingest_xid_idx";
  const done = (over: Partial<IngestPartitionFact> = {}) =>
    part("readings_p1", [idx("readings_p1_ingest_xid_idx", { attachedTo: P })], over);
  const adopted = (partitions: IngestPartitionFact[], over: Partial<IngestFacts> = {}) =>
    facts({ relkind: "p", column: XID, indexes: [idx(P, { partitioned: true })], partitions, ...over });

  it("a partition attached later without it, on an adopted table: set on that partition", () => {
    const p = planIngestTracking(
      adopted([done(), part("readings_p10", [idx("x", { attachedTo: P })], { columnDefault: null })]),
    );
    expect(p.refusal).toBeUndefined();
    expect(p.actions.map(describeIngestAction)).toEqual([
      "ALTER TABLE app.readings_p10 ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()",
    ]);
    expect(p.actions[0]).toMatchObject({
      kind: "set_default",
      table: { schema: "app", name: "readings_p10" },
      partitionOf: T,
      bound: "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
    });
  });

  it("set before the index work, which still follows", () => {
    expect(
      kinds(
        adopted([part("readings_p1", [], { columnDefault: null })], {
          indexes: [idx(P, { partitioned: true, valid: false })],
        }),
      ),
    ).toEqual(["set_default", "build_index_concurrently", "attach_index"]);
  });

  it("the parent's own SET DEFAULT (or ADD COLUMN) reaches every partition: nothing per partition then", () => {
    const lacking = part("readings_p1", [], { columnDefault: null });
    expect(kinds(adopted([lacking], { column: { type: "xid8", default: null }, indexes: [] }))).toEqual([
      "set_default",
      "create_parent_index",
      "build_index_concurrently",
      "attach_index",
    ]);
    const p = planIngestTracking(adopted([lacking], { column: { type: "xid8", default: null } }));
    expect(p.actions.map(describeIngestAction)).toEqual([
      "ALTER TABLE app.readings ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()",
    ]);
  });

  it("a partition with another default: refused, naming it, whatever the parent has", () => {
    for (const column of [XID, { type: "xid8", default: null }]) {
      const p = planIngestTracking(
        adopted([done(), part("readings_p2", [], { columnDefault: "'0'::xid8" })], { column }),
      );
      expect(p.actions).toEqual([]);
      expect(p.refusal).toMatch(/app\.readings_p2\.ingest_xid has the default '0'::xid8/);
      expect(p.refusal).toContain(
        "ALTER TABLE app.readings_p2 ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()",
      );
    }
  });
});

describe("partitions with an interrupted DETACH CONCURRENTLY", () => {
  const pending = [{ relation: { schema: "app", name: "readings_old" }, hasColumn: false }];

  it("the column still to add: postponed, nothing done, naming the FINALIZE to run", () => {
    const p = planIngestTracking(
      facts({
        relkind: "p",
        partitions: [part("readings_p1", [], { columnDefault: null })],
        detachPending: pending,
      }),
    );
    expect(p.refusal).toBeUndefined();
    expect(p.actions).toEqual([]);
    expect(p.postponed).toContain("ALTER TABLE app.readings DETACH PARTITION app.readings_old FINALIZE");
  });

  it("the column already there: they are left out and the rest goes on", () => {
    const p = planIngestTracking(
      facts({ relkind: "p", column: XID, partitions: [part("readings_p1")], detachPending: pending }),
    );
    expect(p.postponed).toBeUndefined();
    expect(p.actions.map((a) => a.kind)).toEqual([
      "create_parent_index",
      "build_index_concurrently",
      "attach_index",
    ]);
  });

  it("a refusal still wins over waiting", () => {
    const p = planIngestTracking(
      facts({ relkind: "p", column: { type: "bigint", default: null }, detachPending: pending }),
    );
    expect(p.refusal).toMatch(/not xid8/);
    expect(p.postponed).toBeUndefined();
  });
});
