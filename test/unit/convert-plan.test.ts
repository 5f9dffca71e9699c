// The pure planner of `migrate convert`: boundary choice, the preflight verdict, the design and the
// order of the statements that must be in a fixed order (a swap that attached before dropping the
// identity would fail on PostgreSQL 17+; a revert that dropped the parent before copying its rows
// would lose them).
import { describe, expect, it } from "vitest";
import { TablePolicySchema } from "../../shared/config/policy.ts";
import { assess } from "../../shared/convert/assess.ts";
import { boundaryProblem, defaultBoundary } from "../../shared/convert/boundary.ts";
import { design } from "../../shared/convert/design.ts";
import type { ConversionState, TableFacts } from "../../shared/convert/facts.ts";
import { derivedName } from "../../shared/convert/names.ts";
import { prepareSteps } from "../../shared/convert/step-prepare.ts";
import { revertStep } from "../../shared/convert/step-revert.ts";
import { swapStep } from "../../shared/convert/step-swap.ts";
import { CHANGE_TRIGGERS, changeTriggerStatement } from "../../shared/rollups/changes.ts";

const utc = (s: string) => new Date(s);
const policy = (extra: Record<string, unknown> = {}) =>
  TablePolicySchema.parse({ table: "ew.telemetry_points", timeColumn: "ts", premake: 2, ...extra });

function facts(over: Partial<TableFacts> = {}): TableFacts {
  return {
    table: { schema: "ew", name: "telemetry_points" },
    exists: true,
    relkind: "r",
    isPartition: false,
    inheritance: false,
    persistence: "p",
    owner: "postgres",
    comment: null,
    replicaIdentity: "d",
    rowSecurity: false,
    rowEstimate: 1000,
    totalBytes: 1 << 20,
    columns: [
      col("id", "bigint", { identity: "a", identitySequence: "ew.telemetry_points_id_seq" }),
      col("device_id", "text"),
      col("ts", "timestamp with time zone"),
      col("metrics", "jsonb"),
    ],
    constraints: [
      {
        name: "telemetry_points_pkey",
        type: "p",
        columns: ["id"],
        definition: "PRIMARY KEY (id)",
        validated: true,
        noInherit: false,
        indexName: "telemetry_points_pkey",
      },
      {
        name: "telemetry_points_device_id_fkey",
        type: "f",
        columns: ["device_id"],
        definition: "FOREIGN KEY (device_id) REFERENCES ew.devices(id)",
        validated: true,
        noInherit: false,
        indexName: null,
      },
    ],
    indexes: [
      idx("telemetry_points_pkey", ["id"], {
        unique: true,
        primary: true,
        constraintName: "telemetry_points_pkey",
      }),
      idx("telemetry_points_device_ts_idx", ["device_id", "ts"]),
    ],
    incomingForeignKeys: [],
    dependentViews: [],
    triggers: [],
    changeTriggers: [],
    rules: [],
    publications: [],
    ownedSequences: [],
    grants: [],
    minTime: utc("2025-01-01T00:00:00Z"),
    maxTime: utc("2026-11-20T00:00:00Z"),
    rowsAtOrAfterBoundary: 0,
    ...over,
  };
}
function col(name: string, type: string, over: Partial<TableFacts["columns"][number]> = {}) {
  return {
    name,
    type,
    notNull: true,
    identity: "" as const,
    identitySequence: null,
    defaultExpr: null,
    generated: false,
    hasColumnGrants: false,
    ...over,
  };
}
function idx(name: string, columns: string[], over: Partial<TableFacts["indexes"][number]> = {}) {
  return {
    name,
    unique: false,
    primary: false,
    constraintName: null,
    valid: true,
    columns,
    definition: `CREATE INDEX ${name} ON ew.telemetry_points USING btree (${columns.join(", ")})`,
    body: ` USING btree (${columns.join(", ")})`,
    ...over,
  };
}
const noState: ConversionState = {
  record: null,
  boundCheck: "absent",
  builtIndexes: {},
  parentExists: false,
  historyAttached: false,
};
const input = (over: Record<string, unknown> = {}) => ({
  policy: policy(),
  now: utc("2026-11-10T12:00:00Z"),
  dropUnique: [],
  ...over,
});

describe("boundary", () => {
  it("is the next interval boundary, or the one after when less than half an interval is left", () => {
    expect(defaultBoundary(utc("2026-11-10T12:00:00Z"), { interval: "monthly" })).toEqual(
      utc("2026-12-01T00:00:00Z"),
    );
    expect(defaultBoundary(utc("2026-11-21T22:00:00Z"), { interval: "monthly" })).toEqual(
      utc("2027-01-01T00:00:00Z"),
    );
    // Never closer than a day: daily and hourly tables get at least a day of slack.
    expect(defaultBoundary(utc("2026-11-21T09:00:00Z"), { interval: "daily" })).toEqual(
      utc("2026-11-23T00:00:00Z"),
    );
    expect(defaultBoundary(utc("2026-11-21T10:31:00Z"), { interval: "hourly" })).toEqual(
      utc("2026-11-22T11:00:00Z"),
    );
  });
  it("an explicit boundary must start an interval and lie in the future", () => {
    const now = utc("2026-11-21T00:00:00Z");
    expect(boundaryProblem(utc("2027-01-01T00:00:00Z"), now, { interval: "monthly" })).toBeNull();
    expect(boundaryProblem(utc("2027-01-15T00:00:00Z"), now, { interval: "monthly" })).toMatch(
      /not the start/,
    );
    expect(boundaryProblem(utc("2026-11-01T00:00:00Z"), now, { interval: "monthly" })).toMatch(
      /not in the future/,
    );
  });
});

describe("preflight verdict", () => {
  const reasons = (f: TableFacts, i = input()) => assess(f, i, noState).blockers.map((b) => b.reason);

  it("a plain table with a key, an outgoing FK and indexes can be converted", () => {
    const verdict = assess(facts(), input(), noState);
    expect(verdict.blockers).toEqual([]);
    expect(verdict.warnings).toEqual([
      expect.stringMatching(/primary key becomes \(id, ts\): INSERT \.\.\. ON CONFLICT \(id\) fails/),
    ]);
  });
  it("rollup-hourly's change triggers do not block (the swap moves them); any other trigger does", () => {
    const tracked = facts({
      changeTriggers: [{ name: "telemetry_jobs_rollup_update", args: ["ts", "device_id"], enabled: "O" }],
    });
    expect(assess(tracked, input(), noState).blockers).toEqual([]);
    const other = facts({
      changeTriggers: tracked.changeTriggers,
      triggers: [{ kind: "trigger", name: "audit ON ew.telemetry_points" }],
    });
    expect(reasons(other)).toEqual([expect.stringMatching(/^the table has triggers/)]);
  });
  it("names each kind of unsupported object", () => {
    const ref = (kind: string, name: string) => ({ kind, name });
    const blocked = facts({
      incomingForeignKeys: [ref("foreign key", "ew.alerts.alerts_point_fkey")],
      dependentViews: [ref("view", "ew.recent")],
      triggers: [ref("trigger", "t ON ew.telemetry_points")],
      rules: [ref("rule", "r ON ew.telemetry_points")],
      publications: [ref("publication", "pub")],
      rowSecurity: true,
      replicaIdentity: "f",
      persistence: "u",
    });
    const all = assess(blocked, input(), noState).blockers;
    expect(all.map((b) => b.objects.join(","))).toEqual(
      expect.arrayContaining([
        "ew.alerts.alerts_point_fkey",
        "ew.recent",
        "t ON ew.telemetry_points",
        "r ON ew.telemetry_points",
        "pub",
      ]),
    );
    expect(all).toHaveLength(8);
  });
  it("NO INHERIT blocks on CHECK and NOT NULL constraints only (PostgreSQL marks plain tables' keys NO INHERIT too)", () => {
    const base = facts();
    const keysNoInherit = facts({ constraints: base.constraints.map((k) => ({ ...k, noInherit: true })) });
    expect(reasons(keysNoInherit)).toEqual([]);
    const check = {
      name: "v_pos",
      type: "c" as const,
      columns: ["v"],
      definition: "CHECK (v > 0) NO INHERIT",
      validated: true,
      noInherit: true,
      indexName: null,
    };
    expect(reasons(facts({ constraints: [...base.constraints, check] }))).toEqual([
      "NO INHERIT constraints cannot exist on a partitioned table",
    ]);
  });
  it("refuses a nullable or non-timestamp time column, a missing table and a partitioned one", () => {
    expect(
      reasons(
        facts({ columns: [col("id", "bigint"), col("ts", "timestamp with time zone", { notNull: false })] }),
      ),
    ).toEqual(['column "ts" is not NOT NULL']);
    expect(reasons(facts({ columns: [col("id", "bigint"), col("ts", "text")] }))[0]).toMatch(
      /is text, not timestamptz/,
    );
    expect(reasons(facts({ exists: false }))[0]).toMatch(/does not exist/);
    expect(reasons(facts({ relkind: "p" }))[0]).toMatch(/already partitioned/);
  });
  it("a unique constraint without the time column blocks unless named in --drop-unique, which warns instead", () => {
    const f = facts({
      constraints: [
        ...facts().constraints,
        {
          name: "uq_msg",
          type: "u",
          columns: ["device_id", "message_id"],
          definition: "UNIQUE (device_id, message_id)",
          validated: true,
          noInherit: false,
          indexName: "uq_msg",
        },
      ],
    });
    expect(reasons(f)[0]).toMatch(/unique constraints without the time column/);
    const accepted = assess(f, input({ dropUnique: ["uq_msg"] }), noState);
    expect(accepted.blockers).toEqual([]);
    expect(accepted.warnings[0]).toMatch(/uq_msg .* will not be enforced .* ON CONFLICT/);
    expect(reasons(facts(), input({ dropUnique: ["nope"] }))[0]).toMatch(
      /--drop-unique names no unique constraint/,
    );
  });
  it("rows at or after the boundary block, with a boundary that would fit them", () => {
    const b = assess(
      facts({ rowsAtOrAfterBoundary: 3, maxTime: utc("2027-02-10T00:00:00Z") }),
      input(),
      noState,
    ).blockers;
    expect(b[0]!.fix).toMatch(/--boundary 2027-03-01T00:00:00.000Z/);
  });
  it("objects of an interrupted prepare are not the user's: our CHECK and indexes never block", () => {
    const f = facts({
      constraints: [
        ...facts().constraints,
        {
          name: "telemetry_jobs_convert_bound",
          type: "c",
          columns: ["ts"],
          definition: "CHECK (...)",
          validated: false,
          noInherit: false,
          indexName: null,
        },
      ],
      indexes: [
        ...facts().indexes,
        idx("telemetry_points_convert_oldkey", ["id"], { unique: true, valid: false }),
      ],
    });
    expect(reasons(f)).toEqual([]);
  });
});

describe("design", () => {
  it("a key without the time column becomes (key, time); the identity moves to the parent; our indexes are not copied", () => {
    const d = design(facts(), input({ policy: policy({ rollup: {} }) }));
    expect(d.primaryKey).toEqual({
      name: "telemetry_points_pkey",
      columns: ["id"],
      newColumns: ["id", "ts"],
      changes: true,
    });
    expect(d.identity).toEqual({ column: "id", kind: "a", indexed: true });
    expect(d.parentIndexes.map((i) => [i.original, i.temporary, i.constraint])).toEqual([
      ["telemetry_points_pkey", "telemetry_points_pkey_cnv", "p"],
      ["telemetry_points_device_ts_idx", "telemetry_points_device_ts_idx_cnv", null],
      ["telemetry_points_ingest_xid_idx", "telemetry_points_ingest_xid_idx_cnv", null],
    ]);
    expect(d.addIngestColumn).toBe(true);
    expect(d.columns).toEqual(["id", "device_id", "ts", "metrics", "ingest_xid"]);
  });
  it("partitions start at the boundary and reach premake intervals past now; a DEFAULT partition per policy", () => {
    const d = design(facts(), input());
    expect(d.boundary).toBe("2026-12-01T00:00:00.000Z");
    expect(d.partitions.map((p) => p.name)).toEqual(["telemetry_points_p202612", "telemetry_points_p202701"]);
    expect(d.defaultPartition).toBe("telemetry_points_default");
  });
  it("long names stay within 63 bytes and stay distinct when cut", () => {
    const a = derivedName(`${"x".repeat(60)}_a`, "_partitioned");
    const b = derivedName(`${"x".repeat(60)}_b`, "_partitioned");
    expect(a).toHaveLength(63);
    expect(a.endsWith("_partitioned")).toBe(true);
    expect(a).not.toBe(b);
    expect(derivedName("telemetry_points", "_history")).toBe("telemetry_points_history");
  });
  it("constraints keep INCLUDE / NULLS NOT DISTINCT / DEFERRABLE on the parent; a changing key with INCLUDE is refused", () => {
    const withUnique = facts({
      constraints: [
        {
          name: "telemetry_points_pkey",
          type: "p",
          columns: ["id", "ts"],
          definition: "PRIMARY KEY (id, ts) INCLUDE (metrics)",
          validated: true,
          noInherit: false,
          indexName: "telemetry_points_pkey",
        },
        {
          name: "uq",
          type: "u",
          columns: ["device_id", "ts"],
          definition: "UNIQUE NULLS NOT DISTINCT (device_id, ts)",
          validated: true,
          noInherit: false,
          indexName: "uq",
        },
      ],
    });
    const d = design(withUnique, input());
    expect(d.parentIndexes.filter((i) => i.constraint).map((i) => i.constraintDef)).toEqual([
      "PRIMARY KEY (id, ts) INCLUDE (metrics)",
      "UNIQUE NULLS NOT DISTINCT (device_id, ts)",
    ]);
    const changing = facts({
      constraints: [
        {
          name: "telemetry_points_pkey",
          type: "p",
          columns: ["id"],
          definition: "PRIMARY KEY (id) INCLUDE (metrics)",
          validated: true,
          noInherit: false,
          indexName: "telemetry_points_pkey",
        },
      ],
    });
    expect(assess(changing, input(), noState).blockers[0]!.reason).toMatch(/INCLUDE or DEFERRABLE/);
  });
});

describe("statement order", () => {
  const d = design(facts(), input());
  const sqls = (s: { statements: { sql: string }[] }) => s.statements.map((x) => x.sql);
  const at = (list: string[], re: RegExp) => list.findIndex((s) => re.test(s));

  it("swap: lock first, guarded by the recorded phase; identity handed over before ATTACH; ATTACH last", () => {
    const s = swapStep(d);
    const list = sqls(s);
    expect(list[0]).toMatch(/^LOCK TABLE "ew"."telemetry_points" IN ACCESS EXCLUSIVE MODE$/);
    expect(s.statements[1]).toMatchObject({ expectRows: 1 });
    expect(list[1]).toMatch(/SET phase = 'swapped'.*phase = 'prepared'/);
    expect(at(list, /setval/)).toBeLessThan(at(list, /DROP IDENTITY/));
    expect(at(list, /DROP CONSTRAINT "telemetry_points_pkey"/)).toBeLessThan(
      at(list, /PRIMARY KEY USING INDEX "telemetry_points_convert_key"/),
    );
    expect(at(list, /RENAME TO "telemetry_points_history"/)).toBeLessThan(
      at(list, /"telemetry_points_partitioned" RENAME TO "telemetry_points"/),
    );
    expect(list.at(-1)).toMatch(
      /ATTACH PARTITION "ew"."telemetry_points_history" FOR VALUES FROM \(MINVALUE\) TO \('2026-12-01 00:00:00.000\+00'\)$/,
    );
  });
  it("swap: rollup-hourly's change triggers leave the old table and are created on the parent, as they were", () => {
    const found = [
      { name: "telemetry_jobs_rollup_delete", args: ["ts", "device_id"], enabled: "D" as const },
      { name: "telemetry_jobs_rollup_update", args: ["ts", "device_id"], enabled: "O" as const },
    ];
    const list = sqls(swapStep(d, found));
    const renamed = at(list, /"telemetry_points_partitioned" RENAME TO "telemetry_points"/);
    const dropDelete = at(list, /^DROP TRIGGER "telemetry_jobs_rollup_delete" ON "ew"."telemetry_points"$/);
    const dropUpdate = at(list, /^DROP TRIGGER "telemetry_jobs_rollup_update" ON "ew"."telemetry_points"$/);
    // Under the lock, before anything changes: the triggers are still the ones read before it.
    const guard = at(
      list,
      /^SELECT 1 WHERE .* FROM pg_catalog\.pg_trigger t WHERE t\.tgrelid = \(SELECT c\.oid FROM pg_catalog\.pg_class c JOIN pg_catalog\.pg_namespace n ON n\.oid = c\.relnamespace WHERE n\.nspname = 'ew' AND c\.relname = 'telemetry_points'\) AND/,
    );
    expect(guard).toBeGreaterThan(1);
    expect(list[guard]).toContain(
      `= 'telemetry_jobs_rollup_delete/D/t/${Buffer.from("ts\0device_id\0").toString("hex")} telemetry_jobs_rollup_update/O/t/${Buffer.from("ts\0device_id\0").toString("hex")}'`,
    );
    expect(guard).toBeLessThan(dropDelete);
    expect(dropDelete).toBeLessThan(at(list, /RENAME TO "telemetry_points_history"/));
    expect(dropUpdate).toBeLessThan(at(list, /RENAME TO "telemetry_points_history"/));
    const created = list.filter((x) => x.startsWith("CREATE OR REPLACE TRIGGER"));
    // rollup-hourly's own statements (shared/rollups/changes.ts), on the relation given as parts
    expect(created).toEqual(
      found.map((f) =>
        changeTriggerStatement(
          { schema: "ew", name: "telemetry_points" },
          CHANGE_TRIGGERS.find((c) => c.name === f.name)!,
          f.args,
        ),
      ),
    );
    expect(created[1]).toBe(
      `CREATE OR REPLACE TRIGGER "telemetry_jobs_rollup_update" AFTER UPDATE ON "ew"."telemetry_points" REFERENCING OLD TABLE AS "rollup_old_rows" NEW TABLE AS "rollup_new_rows" FOR EACH STATEMENT EXECUTE FUNCTION "telemetry_jobs"."record_rollup_changes"('ts', 'device_id')`,
    );
    expect(at(list, /^CREATE OR REPLACE TRIGGER/)).toBeGreaterThan(renamed);
    expect(
      at(list, /^ALTER TABLE "ew"."telemetry_points" DISABLE TRIGGER "telemetry_jobs_rollup_delete"$/),
    ).toBe(at(list, /^CREATE OR REPLACE TRIGGER "telemetry_jobs_rollup_delete"/) + 1);
    expect(list.filter((x) => /ENABLE|DISABLE/.test(x))).toHaveLength(1);
    expect(list.at(-1)).toMatch(/ATTACH PARTITION/);
    // Without them, no trigger statement at all.
    expect(sqls(swapStep(d)).filter((x) => /TRIGGER/.test(x))).toEqual([]);
  });
  it("revert: the change triggers of the partitioned table are created on the plain table once it has the name", () => {
    const found = [
      { name: "telemetry_jobs_rollup_update", args: ["ts", "device_id"], enabled: "O" as const },
    ];
    const list = sqls(revertStep(d, d.columns, found));
    expect(
      at(
        list,
        /^CREATE OR REPLACE TRIGGER "telemetry_jobs_rollup_update" AFTER UPDATE ON "ew"."telemetry_points" /,
      ),
    ).toBeGreaterThan(at(list, /^ALTER TABLE "ew"."telemetry_points_history" RENAME TO "telemetry_points"$/));
    expect(list.filter((x) => /TRIGGER/.test(x))).toHaveLength(1);
    expect(at(list, /^SELECT 1 WHERE .*pg_trigger.*= 'telemetry_jobs_rollup_update\/O\/t\//)).toBe(
      at(list, /^DROP TABLE "ew"."telemetry_points"$/) - 1,
    );
  });
  it("revert: rows are copied, and the identity and sequences re-homed, before the partitioned table is dropped", () => {
    const list = sqls(revertStep(d));
    const drop = at(list, /^DROP TABLE "ew"."telemetry_points"$/);
    expect(at(list, /DETACH PARTITION/)).toBeLessThan(
      at(list, /^INSERT INTO "ew"."telemetry_points_history"/),
    );
    expect(at(list, /^INSERT INTO/)).toBeLessThan(drop);
    expect(at(list, /ADD GENERATED ALWAYS AS IDENTITY/)).toBeLessThan(drop);
    expect(at(list, /setval/)).toBeLessThan(drop);
    expect(at(list, /PRIMARY KEY USING INDEX "telemetry_points_convert_oldkey"/)).toBeGreaterThan(drop);
  });
  it("prepare skips what is done and rebuilds an interrupted index", () => {
    const ids = (s: ReturnType<typeof prepareSteps>) => s.map((x) => x.id);
    const fresh = prepareSteps(d, {
      hasIngestColumn: false,
      boundCheck: "absent",
      builtIndexes: {},
      parentExists: false,
    });
    // The CHECK (it rejects rows past the boundary until the swap) comes after the slow builds.
    expect(ids(fresh)).toEqual([
      "index:telemetry_points_convert_key",
      "index:telemetry_points_convert_oldkey",
      "parent",
      "check",
      "validate",
      "prepared",
    ]);
    const resumed = prepareSteps(d, {
      hasIngestColumn: false,
      boundCheck: "valid",
      builtIndexes: { telemetry_points_convert_key: "valid", telemetry_points_convert_oldkey: "invalid" },
      parentExists: false,
    });
    expect(ids(resumed)).toEqual(["index:telemetry_points_convert_oldkey", "parent", "prepared"]);
    expect(
      ids(
        prepareSteps(d, {
          hasIngestColumn: false,
          boundCheck: "not-valid",
          builtIndexes: { telemetry_points_convert_key: "valid", telemetry_points_convert_oldkey: "valid" },
          parentExists: true,
        }),
      ),
    ).toEqual(["validate", "prepared"]);
    expect(sqls(resumed[0]!)[0]).toMatch(/^DROP INDEX CONCURRENTLY IF EXISTS/);
  });
});
