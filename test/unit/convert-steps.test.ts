// The step builders of `migrate convert`, one by one, in the style of an operation spec: given a
// design (and what the catalog says is already there), the exact statements, in order. The
// statements are what --dry-run prints and what runs; any change to them shows here.
import { describe, expect, it } from "vitest";
import type { ConversionDesign } from "../../shared/convert/design.ts";
import type { Step } from "../../shared/convert/step.ts";
import { abandonSteps } from "../../shared/convert/step-abandon.ts";
import { finalizeSteps } from "../../shared/convert/step-finalize.ts";
import { parentStep } from "../../shared/convert/step-parent.ts";
import {
  checkStep,
  indexBuildSteps,
  ingestColumnStep,
  prepareSteps,
  validateStep,
} from "../../shared/convert/step-prepare.ts";
import { recordStep } from "../../shared/convert/step-record.ts";
import { revertStep } from "../../shared/convert/step-revert.ts";
import { swapStep } from "../../shared/convert/step-swap.ts";

/** A table ew.points whose key (id) gains the time column, with an identity and a serial column. */
const d: ConversionDesign = {
  version: 2,
  schema: "ew",
  table: "points",
  timeColumn: "ts",
  keyType: "timestamptz",
  boundary: "2026-12-01T00:00:00.000Z",
  names: {
    parent: "points_partitioned",
    history: "points_history",
    newKeyIndex: "points_convert_key",
    oldKeyIndex: "points_convert_oldkey",
    ingestIndex: "points_ingest_xid_idx",
  },
  primaryKey: { name: "points_pkey", columns: ["id"], newColumns: ["id", "ts"], changes: true },
  identity: { column: "id", kind: "a", indexed: true },
  ownedSequences: [{ sequence: "ew.points_n_seq", column: "n" }],
  parentIndexes: [
    {
      original: "points_pkey",
      temporary: "points_pkey_cnv",
      history: "points_pkey_hist",
      body: "",
      unique: true,
      constraint: "p",
      constraintDef: null,
      columns: ["id", "ts"],
      replacesKey: true,
    },
    {
      original: "points_device_ts_idx",
      temporary: "points_device_ts_idx_cnv",
      history: "points_device_ts_idx_hist",
      body: " USING btree (device_id, ts)",
      unique: false,
      constraint: null,
      constraintDef: null,
      columns: ["device_id", "ts"],
      replacesKey: false,
    },
  ],
  keptOnHistory: [
    { name: "points_msg_key", isConstraint: true },
    { name: "points_msg_idx", isConstraint: false },
  ],
  foreignKeys: [
    { name: "points_device_fkey", definition: "FOREIGN KEY (device_id) REFERENCES ew.devices(id)" },
  ],
  grants: [{ grantee: "reader", privilege: "SELECT", grantable: false }],
  owner: "app",
  comment: "raw points",
  partitions: [{ name: "points_p202612", from: "2026-12-01T00:00:00.000Z", to: "2027-01-01T00:00:00.000Z" }],
  defaultPartition: "points_default",
  columns: ["id", "device_id", "ts", "n"],
  addIngestColumn: true,
  buildIngestIndex: false,
};

/** A relation of ew found by its oid, from its schema and name each quoted on its own. */
const oidOf = (name: string) =>
  `(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ew' AND c.relname = '${name}')`;
/** The oid of the sequence behind the identity column id of ew.<name>, from the table's oid. */
const identitySequence = (name: string) =>
  `(SELECT s.oid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid AND d.classid = s.tableoid AND s.relkind = 'S' JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.refclassid = s.tableoid AND d.deptype = 'i' AND d.refobjid = ${oidOf(name)} AND a.attname = 'id')`;
const sqls = (steps: Step[]) => steps.flatMap((s) => s.statements.map((x) => x.sql));
const ids = (steps: Step[]) => steps.map((s) => s.id);

describe("record", () => {
  it("inserts the conversion with its design, or takes over a reverted one; one row or nothing", () => {
    const step = recordStep(d);
    expect(step.statements).toHaveLength(1);
    expect(step.statements[0]?.expectRows).toBe(1);
    // The design goes in whole, as JSON (it holds no single quote to double).
    expect(sqls([step])).toEqual([
      `INSERT INTO telemetry_jobs.conversions (table_name, phase, boundary, plan)
VALUES ('ew.points', 'preparing', '2026-12-01T00:00:00.000Z', '${JSON.stringify(d)}'::jsonb)
ON CONFLICT (table_name) DO UPDATE SET phase = 'preparing', boundary = EXCLUDED.boundary, plan = EXCLUDED.plan,
  started_at = now(), updated_at = now()
WHERE conversions.phase = 'reverted'`,
    ]);
  });
});

describe("prepare", () => {
  it("ingest column: a nullable xid8 column, then its default", () => {
    expect(sqls([ingestColumnStep(d)])).toEqual([
      'ALTER TABLE "ew"."points" ADD COLUMN "ingest_xid" xid8',
      'ALTER TABLE "ew"."points" ALTER COLUMN "ingest_xid" SET DEFAULT pg_current_xact_id()',
    ]);
  });
  it("index builds: a build per missing index; an interrupted one is dropped first", () => {
    expect(sqls(indexBuildSteps(d, { builtIndexes: { points_convert_oldkey: "invalid" } }))).toEqual([
      'CREATE UNIQUE INDEX CONCURRENTLY "points_convert_key" ON "ew"."points" ("id", "ts")',
      'DROP INDEX CONCURRENTLY IF EXISTS "ew"."points_convert_oldkey"',
      'CREATE UNIQUE INDEX CONCURRENTLY "points_convert_oldkey" ON "ew"."points" ("id")',
    ]);
  });
  it("CHECK NOT VALID, then VALIDATE", () => {
    expect(sqls([checkStep(d), validateStep(d)])).toEqual([
      'ALTER TABLE "ew"."points" ADD CONSTRAINT "telemetry_jobs_convert_bound" CHECK ("ts" IS NOT NULL AND "ts" < \'2026-12-01 00:00:00.000+00\') NOT VALID',
      'ALTER TABLE "ew"."points" VALIDATE CONSTRAINT "telemetry_jobs_convert_bound"',
    ]);
  });
});

describe("prepare (whole)", () => {
  it("skips what is there: only the missing pieces, then marks the conversion prepared", () => {
    const steps = prepareSteps(d, {
      hasIngestColumn: false,
      boundCheck: "absent",
      builtIndexes: { points_convert_oldkey: "invalid" },
      parentExists: true,
    });
    expect(ids(steps)).toEqual([
      "ingest-column",
      "index:points_convert_key",
      "index:points_convert_oldkey",
      "check",
      "validate",
      "prepared",
    ]);
    expect(steps.map((s) => s.kind)).toEqual([
      "transaction",
      "concurrently",
      "concurrently",
      "transaction",
      "transaction",
      "transaction",
    ]);
    expect(sqls(steps).at(-1)).toBe(
      "UPDATE telemetry_jobs.conversions SET phase = 'prepared', updated_at = now() WHERE table_name = 'ew.points' AND phase IN ('preparing', 'prepared')",
    );
  });
});

describe("parent", () => {
  it("creates the parent like the table, its keys and indexes under temporary names, then its partitions", () => {
    expect(sqls([parentStep(d)])).toEqual([
      'CREATE TABLE "ew"."points_partitioned" (LIKE "ew"."points" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS) PARTITION BY RANGE ("ts")',
      'ALTER TABLE "ew"."points_partitioned" DROP CONSTRAINT IF EXISTS "telemetry_jobs_convert_bound"',
      'ALTER TABLE "ew"."points_partitioned" ADD CONSTRAINT "points_pkey_cnv" PRIMARY KEY ("id", "ts")',
      'CREATE INDEX "points_device_ts_idx_cnv" ON "ew"."points_partitioned" USING btree (device_id, ts)',
      'ALTER TABLE "ew"."points_partitioned" ADD CONSTRAINT "points_device_fkey" FOREIGN KEY (device_id) REFERENCES ew.devices(id)',
      'COMMENT ON TABLE "ew"."points_partitioned" IS \'raw points\'',
      'ALTER TABLE "ew"."points_partitioned" OWNER TO "app"',
      'GRANT SELECT ON "ew"."points_partitioned" TO reader',
      'CREATE TABLE "ew"."points_p202612" PARTITION OF "ew"."points_partitioned" FOR VALUES FROM (\'2026-12-01 00:00:00.000+00\') TO (\'2027-01-01 00:00:00.000+00\')',
      'CREATE TABLE "ew"."points_default" PARTITION OF "ew"."points_partitioned" DEFAULT',
      'COMMENT ON TABLE "ew"."points_default" IS \'telemetry-jobs: DEFAULT partition\'',
    ]);
  });
});

describe("swap", () => {
  it("under the lock: phase guard, identity, sequences, triggers, index names, table names, ATTACH", () => {
    const step = swapStep(d, [
      { name: "telemetry_jobs_rollup_update", args: ["ts", "device_id"], enabled: "D" },
    ]);
    expect(sqls([step])).toEqual([
      'LOCK TABLE "ew"."points" IN ACCESS EXCLUSIVE MODE',
      "UPDATE telemetry_jobs.conversions SET phase = 'swapped', updated_at = now() WHERE table_name = 'ew.points' AND phase = 'prepared'",
      `SELECT setval(seq.target, greatest(last.v, 1), last.v >= 1) FROM (SELECT ${identitySequence("points_partitioned")} AS target, ${identitySequence("points")} AS source) AS seq CROSS JOIN LATERAL (SELECT greatest(coalesce(pg_sequence_last_value(seq.source), 0), (SELECT coalesce(max("id"), 0) FROM "ew"."points")) AS v) AS last WHERE seq.target IS NOT NULL AND seq.source IS NOT NULL`,
      'ALTER TABLE "ew"."points" ALTER COLUMN "id" DROP IDENTITY',
      'ALTER SEQUENCE ew.points_n_seq OWNED BY "ew"."points_partitioned"."n"',
      `SELECT 1 WHERE (SELECT coalesce(string_agg(t.tgname::text || '/' || t.tgenabled::text || '/' || CASE WHEN t.tgfoid = to_regprocedure('"telemetry_jobs"."record_rollup_changes"()') THEN 't' ELSE 'f' END || '/' || encode(t.tgargs, 'hex'), ' ' ORDER BY t.tgname::text COLLATE "C"), '') FROM pg_catalog.pg_trigger t WHERE t.tgrelid = ${oidOf("points")} AND t.tgname IN ('telemetry_jobs_rollup_delete', 'telemetry_jobs_rollup_update')) = 'telemetry_jobs_rollup_update/D/t/7473006465766963655f696400'`,
      'DROP TRIGGER "telemetry_jobs_rollup_update" ON "ew"."points"',
      'ALTER TABLE "ew"."points" DROP CONSTRAINT "points_pkey"',
      'ALTER TABLE "ew"."points" ADD CONSTRAINT "points_pkey_hist" PRIMARY KEY USING INDEX "points_convert_key"',
      'ALTER INDEX "ew"."points_pkey_cnv" RENAME TO "points_pkey"',
      'ALTER INDEX "ew"."points_device_ts_idx" RENAME TO "points_device_ts_idx_hist"',
      'ALTER INDEX "ew"."points_device_ts_idx_cnv" RENAME TO "points_device_ts_idx"',
      'ALTER TABLE "ew"."points" RENAME TO "points_history"',
      'ALTER TABLE "ew"."points_partitioned" RENAME TO "points"',
      'CREATE OR REPLACE TRIGGER "telemetry_jobs_rollup_update" AFTER UPDATE ON "ew"."points" REFERENCING OLD TABLE AS "rollup_old_rows" NEW TABLE AS "rollup_new_rows" FOR EACH STATEMENT EXECUTE FUNCTION "telemetry_jobs"."record_rollup_changes"(\'ts\', \'device_id\')',
      'ALTER TABLE "ew"."points" DISABLE TRIGGER "telemetry_jobs_rollup_update"',
      'COMMENT ON TABLE "ew"."points_history" IS \'telemetry-jobs convert: historical partition of ew.points (rows before 2026-12-01T00:00:00.000Z); retention drops it whole once 2026-12-01T00:00:00.000Z is past the cutoff\'',
      'ALTER TABLE "ew"."points" ATTACH PARTITION "ew"."points_history" FOR VALUES FROM (MINVALUE) TO (\'2026-12-01 00:00:00.000+00\')',
    ]);
    // The identity hand-over finds both sequences or fails the step.
    expect(step.statements[2]?.expectRows).toBe(1);
  });
});

describe("revert", () => {
  it("detach, copy back, identity and sequences back, drop the parent, names back", () => {
    expect(sqls([revertStep(d, ["id", "ts"])])).toEqual([
      'LOCK TABLE "ew"."points" IN ACCESS EXCLUSIVE MODE',
      "UPDATE telemetry_jobs.conversions SET phase = 'reverted', updated_at = now() WHERE table_name = 'ew.points' AND phase = 'swapped'",
      'ALTER TABLE "ew"."points" DETACH PARTITION "ew"."points_history"',
      'ALTER TABLE "ew"."points_history" DROP CONSTRAINT "telemetry_jobs_convert_bound"',
      'INSERT INTO "ew"."points_history" ("id", "ts") SELECT "id", "ts" FROM "ew"."points"',
      'ALTER TABLE "ew"."points_history" ALTER COLUMN "id" ADD GENERATED ALWAYS AS IDENTITY',
      `SELECT setval(seq.target, greatest(last.v, 1), last.v >= 1) FROM (SELECT ${identitySequence("points_history")} AS target, ${identitySequence("points")} AS source) AS seq CROSS JOIN LATERAL (SELECT greatest(coalesce(pg_sequence_last_value(seq.source), 0), (SELECT coalesce(max("id"), 0) FROM "ew"."points_history")) AS v) AS last WHERE seq.target IS NOT NULL AND seq.source IS NOT NULL`,
      'ALTER SEQUENCE ew.points_n_seq OWNED BY "ew"."points_history"."n"',
      `SELECT 1 WHERE (SELECT coalesce(string_agg(t.tgname::text || '/' || t.tgenabled::text || '/' || CASE WHEN t.tgfoid = to_regprocedure('"telemetry_jobs"."record_rollup_changes"()') THEN 't' ELSE 'f' END || '/' || encode(t.tgargs, 'hex'), ' ' ORDER BY t.tgname::text COLLATE "C"), '') FROM pg_catalog.pg_trigger t WHERE t.tgrelid = ${oidOf("points")} AND t.tgname IN ('telemetry_jobs_rollup_delete', 'telemetry_jobs_rollup_update')) = ''`,
      'DROP TABLE "ew"."points"',
      'ALTER TABLE "ew"."points_history" DROP CONSTRAINT "points_pkey_hist"',
      'ALTER TABLE "ew"."points_history" ADD CONSTRAINT "points_pkey" PRIMARY KEY USING INDEX "points_convert_oldkey"',
      'ALTER INDEX "ew"."points_device_ts_idx_hist" RENAME TO "points_device_ts_idx"',
      'ALTER TABLE "ew"."points_history" RENAME TO "points"',
      'COMMENT ON TABLE "ew"."points" IS \'raw points\'',
    ]);
  });
});

describe("finalize", () => {
  it("drops what is still there of what revert needed, then marks the conversion finalized", () => {
    const steps = finalizeSteps(d, new Set(["points_msg_key", "points_msg_idx", "points_convert_oldkey"]));
    expect(steps.map((s) => s.kind)).toEqual(["transaction", "concurrently", "concurrently", "transaction"]);
    expect(sqls(steps)).toEqual([
      'ALTER TABLE "ew"."points_history" DROP CONSTRAINT IF EXISTS "points_msg_key"',
      'DROP INDEX CONCURRENTLY IF EXISTS "ew"."points_msg_idx"',
      'DROP INDEX CONCURRENTLY IF EXISTS "ew"."points_convert_oldkey"',
      "UPDATE telemetry_jobs.conversions SET phase = 'finalized', updated_at = now() WHERE table_name = 'ew.points' AND phase IN ('swapped', 'finalized')",
    ]);
    expect(ids(finalizeSteps(d, new Set()))).toEqual(["finalized"]);
  });
});

describe("abandon (revert before the swap)", () => {
  it("drops the unused parent, the indexes prepare built and the CHECK; the ingest column stays", () => {
    const steps = abandonSteps(d, {
      hasIngestColumn: true,
      boundCheck: "valid",
      builtIndexes: { points_convert_key: "valid" },
      parentExists: true,
    });
    expect(sqls(steps)).toEqual([
      'DROP TABLE "ew"."points_partitioned"',
      'DROP INDEX CONCURRENTLY IF EXISTS "ew"."points_convert_key"',
      'ALTER TABLE "ew"."points" DROP CONSTRAINT IF EXISTS "telemetry_jobs_convert_bound"',
      "UPDATE telemetry_jobs.conversions SET phase = 'reverted', updated_at = now() WHERE table_name = 'ew.points' AND phase IN ('preparing', 'prepared')",
    ]);
  });
});
